"""Block Kit for the answers of `/bill`: help, whoami, a list of bills, one bill with its history."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    DividerBlock,
    HeaderBlock,
    PlainTextObject,
    SectionBlock,
)

from bot import approval
from bot.blocks import (
    HEADER_MAX,
    MAX_MESSAGE_BLOCKS,
    SECTION_TEXT_MAX,
    clip,
    context,
    escape,
    fields,
    message_blocks,
    packed,
    section,
)
from bot.blocks.bill import pdf_button, sending_text
from bot.formatting import (
    action_line,
    approval_lines,
    bill_amount,
    bill_period,
    calls,
    credit_lines,
    invoice_line,
    invoice_sent,
    unit_cost,
)
from bot.money import add_up, format_totals
from bot.periods import Period
from bot.workflow import history
from db.models import Bill, BillStatus, User

HOW_TO_LINK = (
    "Ask an operator for a one-time code (they run `billprocess users invite YOUR_NAME`), then type "
    "`/bill link CODE`. A code works once and expires after 24 hours."
)
MAX_LISTED_BILLS = 100
CUSTOMER_NAME_WIDTH = 40
CODE_FENCE = "```"


@dataclass(frozen=True)
class HelpEntry:
    """One line of help: how to type a subcommand, and what it does."""

    usage: str
    description: str


# --- small pieces ------------------------------------------------------------------------------------


def _escaped_within(text: str, limit: int) -> str:
    """`text` escaped, shortened with an ellipsis when the escaped form would exceed `limit` characters."""
    escaped = escape(text)
    while len(escaped) > limit:
        text = text[: len(text) - (len(escaped) - limit) - 1]
        escaped = escape(text) + "…"
    return escaped


def _header(text: str) -> HeaderBlock:
    # Plain text without emoji conversion: list titles quote what the person typed.
    return HeaderBlock(text=PlainTextObject(text=clip(text, HEADER_MAX)))


# --- help and whoami ---------------------------------------------------------------------------------


def help_blocks(entries: Sequence[HelpEntry], *, user: User | None) -> list[dict]:
    """What the caller may do with `/bill`; an unlinked caller is also told how to get a code."""
    if user is None:
        intro = "Your Slack user is not linked to a BillProcess account yet. " + HOW_TO_LINK
    else:
        intro = f"You are *{escape(user.name)}* ({user.role.label}). Here is what you can do:"
    lines = [f"`{entry.usage}` — {entry.description}" for entry in entries]
    return message_blocks([_header("/bill help"), section(intro), *map(section, packed(lines))])


def whoami_blocks(user: User | None) -> list[dict]:
    """The account the caller acts as, or how to link one."""
    if user is None:
        return message_blocks([section("You are not linked to a BillProcess account. " + HOW_TO_LINK)])
    account = fields(
        [
            f"*Account*\n{escape(user.name)}",
            f"*Role*\n{user.role.label}",
            f"*Email*\n{escape(user.email) if user.email else '—'}",
        ],
        above="You act in BillProcess as:",
    )
    return message_blocks(
        [
            account,
            context("Not you? `/bill unlink` removes the link."),
        ]
    )


# --- a list of bills ---------------------------------------------------------------------------------


def list_title(status: BillStatus | None, period: Period | None) -> str:
    parts = [period.label if period else "all months"]
    if status is not None:
        parts.append(status.value)
    return "Bills: " + ", ".join(parts)


def bill_list_line(bill: Bill) -> str:
    """One bill in a list: number, month, customer, status and amount."""
    customer = escape(clip(bill.customer.name, CUSTOMER_NAME_WIDTH))
    return (
        f"`#{bill.id}`  {bill_period(bill)}  *{customer}*  {bill.status.value}"
        f"  {calls(bill.overage_units)} calls over  *{bill_amount(bill)}*"
    )


def bill_list_summary(bills: Sequence[Bill]) -> str:
    """How many bills, their total, and how many there are of each status when they differ."""
    totals = add_up((bill.currency, bill.overage_amount) for bill in bills)
    noun = "bill" if len(bills) == 1 else "bills"
    counts = Counter(bill.status for bill in bills)
    summary = f"{len(bills)} {noun}, total {format_totals(totals, none='0')}"
    if len(counts) > 1:
        summary += " (" + ", ".join(f"{counts[s]} {s.value}" for s in BillStatus if counts[s]) + ")"
    return summary


def bill_list_blocks(
    bills: Sequence[Bill],
    *,
    status: BillStatus | None = None,
    period: Period | None = None,
    limit: int = MAX_LISTED_BILLS,
) -> list[dict]:
    """The bills, newest month first; past `limit` the rest are counted, not listed."""
    title = list_title(status, period)
    if not bills:
        return message_blocks([_header(title), section("No bills match.")])
    ordered = sorted(bills, key=lambda bill: (-bill.year, -bill.month, bill.id))
    shown = ordered[:limit]
    blocks: list[Block] = [_header(title), context(bill_list_summary(bills))]
    blocks += [section(text) for text in packed(bill_list_line(bill) for bill in shown)]
    if len(ordered) > len(shown):
        blocks.append(
            context(
                f"…and {len(ordered) - len(shown)} more, narrow with a month or status"
                f" (e.g. `/bill list DRAFT {bill_period(ordered[0])}`)"
            )
        )
    return message_blocks(blocks)


# --- one bill with its history -----------------------------------------------------------------------


def approval_text(bill: Bill) -> str:
    """The approvals the bill needs, each step with its reason, and how far it got."""
    lines = [escape(line) for line in approval_lines(approval.progress(bill))]
    if bill.status is BillStatus.WRITEOFF:
        lines.append("Rejected: the overage is written off.")
    if bill.status is BillStatus.SENT:
        lines.append(f"Sent to {escape(bill.customer.billing_email)}.")
    return "\n".join(["*Approvals*", *lines])


def bill_fields(bill: Bill) -> SectionBlock:
    customer = bill.customer
    values = [
        ("Customer", escape(customer.name)),
        ("Period", bill_period(bill).label),
        ("Status", bill.status.value),
        ("Amount", bill_amount(bill)),
        ("API usage", f"{calls(bill.api_usage)} calls (limit {calls(bill.monthly_api_limit)})"),
        ("Overage", f"{calls(bill.overage_units)} calls × {unit_cost(bill.overage_unit_cost, bill.currency)}"),
        ("CSM", escape(customer.csm.name) if customer.csm else "—"),
        ("Billing email", escape(customer.billing_email)),
        ("Invoice", escape(invoice_line(bill))),
    ]
    return fields(f"*{label}*\n{value}" for label, value in values)


def history_texts(bill: Bill) -> list[str]:
    """The bill's whole history, oldest first, as code-formatted texts that each fit one section."""
    room = SECTION_TEXT_MAX - 2 * (len(CODE_FENCE) + 1)
    lines = [_escaped_within(action_line(action), room) for action in history(bill)]
    return [f"{CODE_FENCE}\n{text}\n{CODE_FENCE}" for text in packed(lines, limit=room)]


def bill_detail_blocks(bill: Bill) -> list[dict]:
    """A bill's figures, its approval progress and every action taken on it."""
    blocks: list[Block] = [
        _header(f"Bill #{bill.id}: {bill.customer.name}, {bill_period(bill).label}"),
        bill_fields(bill),
        section(approval_text(bill)),
    ]
    warning = sending_text(bill)
    if warning:
        blocks.append(section(warning))
    credits = credit_lines(bill)
    if credits:
        blocks.append(section(clip("*Credit notes*\n" + "\n".join(escape(line) for line in credits), SECTION_TEXT_MAX)))
    if invoice_sent(bill):
        blocks.append(ActionsBlock(elements=[pdf_button(bill)]))
    blocks += [DividerBlock(), section("*History*")]
    texts = history_texts(bill)
    room = MAX_MESSAGE_BLOCKS - len(blocks)
    if len(texts) > room:
        # Only a bill with thousands of actions gets here; its thread still holds all of them.
        texts = texts[len(texts) - room + 1 :]
        blocks.append(context("Earlier actions are not shown here; the bill's thread has all of them."))
    blocks += [section(text) for text in texts]
    return message_blocks(blocks)


def generation_text(summary: Sequence[str], *, created: int, unposted: int, finished: bool, channel: str) -> str:
    """The month's generation summary in the bills channel, with how far posting its bills has come."""
    lines = [f"*{escape(summary[0])}*", *(escape(line) for line in summary[1:])]
    posted = created - unposted
    noun = "bill" if created == 1 else "bills"
    if not created:
        pass
    elif not finished:
        lines.append(f":hourglass_flowing_sand: Posted {posted} of {created} {noun}…")
    elif unposted:
        lines.append(
            f":warning: Posted {posted} of {created} {noun}; {unposted} could not be posted."
            " Finance sees them in the App Home and in `billprocess outbox`."
        )
    else:
        lines.append(f":white_check_mark: All {created} {noun} are posted in <#{channel}>.")
    return "\n".join(lines)
