"""The `/bill` slash command: one listener that acknowledges, then runs the subcommand typed; a subcommand
that changes something is recorded as a job instead (command_job), before its acknowledgement.

Each subcommand is a function of a `CommandRequest`; `SUBCOMMANDS` says how it is typed and what it
needs, so that `/bill help` lists what the caller may use (bot/permissions.py decides; the services
refuse). Malformed input raises `InvalidInput` with the subcommand's usage line; domain errors are
raised as they are and reach the caller through handlers/errors.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from decimal import Decimal

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot import absences, approval, billing, linking, outbox, permissions, workflow
from bot.blocks.commands import (
    HelpEntry,
    bill_detail_blocks,
    bill_list_blocks,
    bill_list_summary,
    help_blocks,
    list_title,
    whoami_blocks,
)
from bot.blocks import escape
from bot.accounts import get_user
from bot.bills import get_bill, list_bills, parse_bill_id, parse_status
from bot.errors import BillProcessError, Conflict, InvalidInput, NotFound
from bot.formatting import ACTION_WORDS, actor_name, bill_amount, money, unit_cost
from bot.parsing import parse_unit_cost
from bot.periods import Period
from bot.permissions import Power
from bot.text import SHOWN_MAX, clip, storable
from db.models import ActionType, BillStatus
from handlers.customers import customer, customers, export, usage
from handlers.errors import refuse
from handlers.identity import current_user
from handlers.jobs import Job, JobType
from handlers.requests import CommandRequest

# An unknown subcommand is named back only when it is a short word of letters: anything with digits or
# dashes could be a link code typed without `link`, and a code is never shown again.
_ECHOABLE = re.compile(r"[a-z]{1,12}")
_MONTH_LIKE = re.compile(r"[0-9]")
@dataclass(frozen=True)
class Subcommand:
    run: Callable[[CommandRequest], None]
    power: Power | None  # what it needs, to be listed in help (the service refuses); None: nothing
    usage: str
    description: str
    unlinked: bool = False  # a Slack user without an account may use it too

    def allows(self, request: CommandRequest) -> bool:
        if request.user is None:
            return self.unlinked
        return self.power is None or permissions.allowed(request.user, self.power)


# --- the listener ------------------------------------------------------------------------------------


def register(app: App) -> None:
    app.command("/bill")(bill_command)


def typed(text: str) -> str:
    """The command text as the person typed it: Slack sends &, < and > as HTML entities."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


@dataclass(frozen=True)
class RecordedCommand:
    """A `/bill` command as it is stored with its job, to run after the acknowledgement."""

    slack_user_id: str
    text: str
    channel_id: str
    response_url: str | None

    @property
    def words(self) -> list[str]:
        return typed(self.text).strip().split(None, 1)

    @property
    def subcommand(self) -> str:
        return self.words[0].lower() if self.words else "help"

    @property
    def bill_id(self) -> int | None:
        """The bill a changing subcommand names, when it names one (jobs on one bill run in order)."""
        words = self.words
        try:
            return parse_bill_id(words[1].split()[0]) if len(words) > 1 else None
        except InvalidInput:
            return None

    def request(self, services, client, respond, user) -> CommandRequest:
        words = self.words
        return CommandRequest(
            services=services,
            client=client,
            respond=respond,
            slack_user_id=self.slack_user_id,
            channel_id=self.channel_id,
            subcommand=self.subcommand,
            args=words[1].split() if len(words) > 1 else [],
            text=words[1] if len(words) > 1 else "",
            user=user,
        )


def _recorded(command: dict) -> RecordedCommand:
    """The command as typed; InvalidInput when its text could not be stored (a NUL, a broken character)."""
    text = command.get("text") or ""
    storable(typed(text), "Your command")
    return RecordedCommand(command["user_id"], text, command.get("channel_id", ""), command.get("response_url"))


def command_job(body: dict) -> Job | None:
    """The job a `/bill` command that changes something records (handlers/jobs.py records it before the
    acknowledgement: a command Slack shows as accepted is never lost); None for every other request."""
    if body.get("command") != "/bill":
        return None
    try:
        recorded = _recorded(body)
    except InvalidInput:
        return None  # refused by bill_command
    if recorded.subcommand not in CHANGING:
        return None
    return Job(JobType.COMMAND, recorded.slack_user_id, recorded.bill_id, asdict(recorded))


def bill_command(ack: Ack, command: dict, respond: Respond, client: WebClient, context) -> None:
    """Every `/bill` command but those recorded as jobs: acknowledged, then answered."""
    ack()
    recorded = _recorded(command)
    assert recorded.subcommand not in CHANGING, "recorded as a job by handlers/jobs.py, never run here"
    services = context["services"]
    dispatch(recorded.request(services, client, respond, current_user(services, client, recorded.slack_user_id)))


def run_command(services, job_id: int, recorded: RecordedCommand) -> None:
    """Run a recorded command (in a delivery worker); its answers go through the outbox."""

    def respond(text: str, blocks: list[dict] | None = None, **_) -> None:
        services.queue(lambda session: outbox.respond(session, recorded.slack_user_id, recorded.response_url,
                                                      text, blocks))

    try:
        user = current_user(services, services.client, recorded.slack_user_id)
        dispatch(recorded.request(services, services.client, respond, user))
    except BillProcessError as error:
        refuse(services, job_id, recorded.slack_user_id, recorded.response_url, error)


def dispatch(request: CommandRequest) -> None:
    """Run the subcommand typed; the services it calls refuse what the caller's role may not do."""
    subcommand = SUBCOMMANDS.get(request.subcommand)
    if subcommand is None:
        raise unknown_subcommand(request)
    if not subcommand.unlinked:
        request.account()
    subcommand.run(request)


def unknown_subcommand(request: CommandRequest) -> InvalidInput:
    if _ECHOABLE.fullmatch(request.subcommand):
        refusal = f"`{request.subcommand}` is not a `/bill` subcommand."
    else:
        refusal = "Unknown subcommand."
    names = ", ".join(name for name, sub in SUBCOMMANDS.items() if sub.allows(request))
    return InvalidInput(
        f"{refusal} Usage: `/bill <subcommand>`, where you can use: {names}."
        " `/bill help` says what each does."
    )


# --- reading arguments: every mistake names the subcommand's usage -----------------------------------


def invalid(request: CommandRequest, message: str) -> InvalidInput:
    """A refusal of malformed input, with the usage line of the subcommand."""
    return InvalidInput(f"{message} Usage: `{SUBCOMMANDS[request.subcommand].usage}`")


def echoed(text: str) -> str:
    """What was typed, repeated in a refusal as code and cut short when long (the error handler escapes it)."""
    return f"`{clip(text, SHOWN_MAX)}`"


def arguments(request: CommandRequest, *names: str, optional: int = 0) -> list[str | None]:
    """The positional arguments `names` (the last `optional` of them may be left out), or a refusal."""
    given, required = request.args, len(names) - optional
    if len(given) < required:
        missing = names[len(given)]
        raise invalid(request, f"`/bill {request.subcommand}` needs {missing}.")
    if len(given) > len(names):
        extra = " ".join(given[len(names) :])
        raise invalid(request, f"`/bill {request.subcommand}` does not take {echoed(extra)}.")
    return [*given, *([None] * (len(names) - len(given)))]


def bill_id_argument(request: CommandRequest, text: str) -> int:
    try:
        return parse_bill_id(text)
    except InvalidInput:
        raise invalid(request, f"{echoed(text)} is not a bill number.") from None


def month_argument(request: CommandRequest, text: str) -> Period:
    try:
        return Period.parse(text)
    except InvalidInput:
        example = Period.previous(request.services.settings.zone)
        raise invalid(request, f"{echoed(text)} is not a month; write it as YYYY-MM, e.g. {example}.") from None


def status_argument(request: CommandRequest, text: str) -> BillStatus:
    try:
        return parse_status(text)
    except InvalidInput:
        statuses = ", ".join(status.value for status in BillStatus)
        raise invalid(request, f"{echoed(text)} is neither a status ({statuses}) nor a month (YYYY-MM).") from None


def email_argument(text: str) -> str:
    """An email address as typed; Slack sends one as a link, <mailto:a@b.example|a@b.example>."""
    address = typed(text)
    if address.startswith("<mailto:") and address.endswith(">"):
        address = address[len("<mailto:") : -1].partition("|")[0]
    return address


def unit_cost_argument(request: CommandRequest, text: str) -> Decimal:
    try:
        return parse_unit_cost(text)
    except InvalidInput as error:
        problem = str(error)  # says what is wrong: not a number, negative, too many places
        raise invalid(request, problem[:1].upper() + problem[1:] + ".") from None


# --- the subcommands ---------------------------------------------------------------------------------


def help_(request: CommandRequest) -> None:
    arguments(request)
    if request.user is None:
        shown = list(HELP_FOR_UNLINKED)
    else:
        shown = [name for name, sub in SUBCOMMANDS.items() if sub.allows(request) and name not in ONLY_FOR_UNLINKED]
    entries = [HelpEntry(SUBCOMMANDS[name].usage, SUBCOMMANDS[name].description) for name in shown]
    request.reply("What you can do with /bill", help_blocks(entries, user=request.user))


def link(request: CommandRequest) -> None:
    # The code may be typed with spaces; it is never echoed back or logged.
    if not request.text.strip():
        raise invalid(request, "Type the one-time code an operator gave you after `link`.")
    if request.user is not None:
        raise Conflict(f"You are already linked to {request.user.name}. Use `/bill unlink` first.")
    with request.services.sessions() as session:
        user = linking.link_with_code(session=session, slack_user_id=request.slack_user_id, code=request.text)
    request.reply(
        f":link: You are now linked to *{escape(user.name)}* ({user.role.label})."
        " Type `/bill help` to see what you can do."
    )
    request.services.queue(lambda session: outbox.refresh_home(session, request.slack_user_id))


def unlink(request: CommandRequest) -> None:
    arguments(request)
    with request.services.sessions() as session:
        user = linking.unlink_slack_user(session=session, slack_user_id=request.slack_user_id)
    request.reply(f"Your Slack user is no longer linked to *{escape(user.name)}*.")
    request.services.queue(lambda session: outbox.refresh_home(session, request.slack_user_id))


def whoami(request: CommandRequest) -> None:
    arguments(request)
    user = request.user
    text = f"You are {user.name} ({user.role.label})" if user else "You are not linked to an account"
    request.reply(text, whoami_blocks(user))


def generate(request: CommandRequest) -> None:
    actor = request.account()
    (month,) = arguments(request, "a month", optional=1)
    settings = request.services.settings
    period = month_argument(request, month) if month else Period.previous(settings.zone)
    with request.services.sessions() as session:
        summary = billing.generate_month(
            session=session, period=period, actor=actor, today=settings.today()
        )
    lines = summary.lines()
    if summary.created:
        where = f"<#{settings.bills_channel}>" if settings.bills_channel else "the bills channel"
        lines.append(f"The bills are being posted to {where}; the summary there shows how far it has come.")
    request.reply("\n".join(lines))


def list_(request: CommandRequest) -> None:
    status, period = list_filters(request)
    with request.services.sessions() as session:
        bills = list_bills(session=session, status=status, period=period)
        blocks = bill_list_blocks(bills, status=status, period=period)
    summary = bill_list_summary(bills) if bills else "no bills"
    request.reply(f"{list_title(status, period)}: {summary}", blocks)


def list_filters(request: CommandRequest) -> tuple[BillStatus | None, Period | None]:
    """A status and a month, each optional, in either order."""
    first, second = arguments(request, "a status", "a month", optional=2)
    status: BillStatus | None = None
    period: Period | None = None
    for word in filter(None, (first, second)):
        if _MONTH_LIKE.match(word):
            if period is not None:
                raise invalid(request, "Give at most one month.")
            period = month_argument(request, word)
        else:
            if status is not None:
                raise invalid(request, "Give at most one status.")
            status = status_argument(request, word)
    return status, period


def show(request: CommandRequest) -> None:
    (bill_text,) = arguments(request, "a bill number")
    bill_id = bill_id_argument(request, bill_text)
    with request.services.sessions() as session:
        bill = get_bill(session=session, bill_id=bill_id)
        blocks = bill_detail_blocks(bill)
        summary = f"Bill #{bill.id}: {bill.customer.name}, {bill.status.value}, {bill_amount(bill)}"
    request.reply(summary, blocks)


def edit(request: CommandRequest) -> None:
    bill_text, cost_text = arguments(request, "a bill number", "the new unit cost")
    bill_id = bill_id_argument(request, bill_text)
    cost = unit_cost_argument(request, cost_text)
    with request.services.sessions() as session:
        bill = workflow.edit(session=session, bill_id=bill_id, actor=request.account(), unit_cost=cost)
    request.reply(
        f"Bill #{bill.id} ({escape(bill.customer.name)}): unit cost now {unit_cost(bill.overage_unit_cost, bill.currency)},"
        f" amount {bill_amount(bill)}. Its approvals start over."
    )


def send(request: CommandRequest) -> None:
    bill_text, word = arguments(request, "a bill number", "again or delivered", optional=1)
    bill_id = bill_id_argument(request, bill_text)
    how = (word or "").lower()
    if how not in ("", "again", "delivered"):
        raise invalid(request, f"`/bill send` does not take `{escape(word)}`.")
    with request.services.sessions() as session:
        if how == "delivered":
            bill = workflow.mark_delivered(session=session, bill_id=bill_id, actor=request.account())
        else:
            bill = workflow.send(
                session=session,
                bill_id=bill_id,
                actor=request.account(),
                deliver=request.services.mailer.send_bill,
                again=how == "again",
                invoicing=request.services.invoicing,
            )
    email = escape(bill.customer.billing_email)
    if how == "delivered":
        request.reply(f":envelope: Bill #{bill.id} is recorded as sent to {email}; no email was sent.")
    else:
        request.reply(f":envelope: Bill #{bill.id} was sent to {email}.")


def undo(request: CommandRequest) -> None:
    if not request.args:
        raise invalid(request, f"`/bill {request.subcommand}` needs a bill number.")
    bill_id = bill_id_argument(request, request.args[0])
    words = request.text.split(None, 1)
    reason = words[1] if len(words) > 1 else None
    with request.services.sessions() as session:
        bill = workflow.undo(session=session, bill_id=bill_id, actor=request.account(), reason=reason)
        undone = next(action for action in bill.actions if action.id == bill.actions[-1].undone_action_id)
        who = actor_name(undone)
    request.reply(
        f"{ACTION_WORDS[ActionType.UNDO].emoji} Undid {escape(who)}'s {ACTION_WORDS[undone.action].noun}"
        f" of bill #{bill.id};"
        f" it is {bill.status.value} now."
    )


_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")


def away(request: CommandRequest) -> None:
    # Slack sends "@Dave Smith" as typed (the command is not escaped): the delegate is all that follows the day.
    words = request.text.split(None, 2)
    if len(words) < 2:
        arguments(request, "`until`", "the last day you are away")  # refuses, naming what is missing
    word, day = words[:2]
    named = words[2].strip() if len(words) > 2 else None
    if word.lower() != "until":
        raise invalid(request, f"Say until when you are away, e.g. `/bill away until {request.services.settings.today()}`.")
    try:
        until = absences.parse_day(day)
    except InvalidInput as error:
        raise invalid(request, f"{error}.") from None
    actor = request.account()
    with request.services.sessions() as session:
        delegate_id = delegate_argument(request, session, named).id if named else None
    today = request.services.settings.today()
    with request.services.sessions() as session:
        user = absences.set_away(session=session, user_id=actor.id, until=until, delegate_id=delegate_id, today=today)
        stand_in = approval.absence(user, today).stand_in
    request.reply(
        f":palm_tree: You are away until {until:%Y-%m-%d}: {escape(stand_in)} approves the steps that name you"
        " meanwhile. `/bill back` ends it sooner."
    )


def delegate_argument(request: CommandRequest, session, text: str):
    """The account named as delegate: an @-mention of a linked Slack user, or an account name."""
    mention = _MENTION.fullmatch(text)
    if mention:
        user = linking.user_for_slack(session=session, slack_user_id=mention[1])
        if user is None:
            raise invalid(request, "The person you named is not linked to a BillProcess account.")
        return user
    try:
        return get_user(session=session, name=text.removeprefix("@"))
    except NotFound:
        raise invalid(
            request, f"{echoed(text)} is not a BillProcess account; name the delegate by their account name"
            " (`/bill whoami` shows yours) or as an @-mention."
        ) from None


def back(request: CommandRequest) -> None:
    arguments(request)
    actor = request.account()
    with request.services.sessions() as session:
        absences.set_back(session=session, user_id=actor.id, today=request.services.settings.today())
    request.reply(":wave: Welcome back: the steps that name you wait for you again.")


def resend(request: CommandRequest) -> None:
    bill_text, address = arguments(request, "a bill number", "an email address", optional=1)
    bill_id = bill_id_argument(request, bill_text)
    with request.services.sessions() as session:
        bill = workflow.resend(
            session=session,
            bill_id=bill_id,
            actor=request.account(),
            deliver=request.services.mailer.resend_bill,
            to=email_argument(address) if address else None,
        )
        where = bill.actions[-1].comment or ""
    request.reply(f":email: Bill #{bill.id}: {escape(where)}.")


def credit(request: CommandRequest) -> None:
    words = request.text.split(None, 2)
    if len(words) < 3:
        missing = ("a bill number", "an amount", "a reason")[len(words)]
        raise invalid(request, f"`/bill credit` needs {missing}.")
    bill_id = bill_id_argument(request, words[0])
    with request.services.sessions() as session:
        credited = workflow.credit(
            session=session,
            bill_id=bill_id,
            actor=request.account(),
            amount=words[1],
            reason=typed(words[2]),
            deliver=request.services.mailer.send_credit_note,
            invoicing=request.services.invoicing,
        )
    note, bill = credited.note, credited.bill
    issued = (
        f":receipt: Credit note {note.number} for {money(note.amount, note.currency)} issued against invoice"
        f" {bill.invoice_number} (bill #{bill.id})"
    )
    if credited.email_error:
        request.reply(
            f"{issued}, but emailing it failed: {escape(credited.email_error)}."
            f" `/bill resend {bill.id}` emails the invoice with its credit notes."
        )
    else:
        request.reply(f"{issued} and emailed to {escape(bill.customer.billing_email)}.")


SUBCOMMANDS: dict[str, Subcommand] = {
    "help": Subcommand(help_, None, "/bill help", "what you can do with /bill", unlinked=True),
    "link": Subcommand(link, None, "/bill link CODE", "link your Slack user with a one-time code", unlinked=True),
    "unlink": Subcommand(unlink, None, "/bill unlink", "remove the link between your Slack user and your account"),
    "whoami": Subcommand(whoami, None, "/bill whoami", "the account, role and email you act as", unlinked=True),
    "generate": Subcommand(
        generate, Power.GENERATE, "/bill generate [YYYY-MM]", "create a month's bills (default: last month) and post them"
    ),
    "list": Subcommand(list_, None, "/bill list [status] [YYYY-MM]", "list bills, by status and month"),
    "show": Subcommand(show, None, "/bill show <id>", "a bill's details and full history"),
    "edit": Subcommand(edit, Power.EDIT, "/bill edit <id> <unit cost>", "change a DRAFT bill's unit cost"),
    "send": Subcommand(
        send, Power.SEND, "/bill send <id> [again|delivered]",
        "email an approved (FINAL) bill to the customer; after a send that was not confirmed, `again` emails it"
        " once more and `delivered` records it as sent without emailing it",
    ),
    "undo": Subcommand(
        undo, None, "/bill undo <id> [reason]", "undo a bill's latest approval, rejection, edit or usage correction"
    ),
    "resend": Subcommand(
        resend, Power.RESEND, "/bill resend <id> [email]",
        "email a SENT bill's invoice again, with the same number, to its billing email or the address given",
    ),
    "credit": Subcommand(
        credit, Power.CREDIT, "/bill credit <id> <amount> <reason>",
        "issue a credit note against a SENT bill's invoice and email it to the customer",
    ),
    "away": Subcommand(
        away, None, "/bill away until YYYY-MM-DD [@delegate]",
        "while you are away, your delegate (or anyone in your role) approves the steps that name you",
    ),
    "back": Subcommand(back, None, "/bill back", "end your absence: the steps that name you wait for you again"),
    "customers": Subcommand(customers, None, "/bill customers", "every customer and its contract"),
    "customer": Subcommand(customer, None, "/bill customer <name>", "a customer's terms, usage, bills and chart"),
    "usage": Subcommand(usage, None, "/bill usage <customer> [year]", "a customer's monthly API usage"),
    "export": Subcommand(export, Power.EXPORT, "/bill export [YYYY-MM]", "a month's bills as a CSV file"),
}
# Subcommands that change bills: recorded before their acknowledgement and run by the delivery workers.
CHANGING = frozenset({"generate", "edit", "send", "undo", "resend", "credit", "away", "back"})
# An unlinked caller is shown only how to link; a linked one is not offered linking again.
HELP_FOR_UNLINKED = ("help", "link")
ONLY_FOR_UNLINKED = ("link",)
