"""The bill's Slack message, the thread reply for each action on it, and the reject modal.

Pure functions of a bill loaded with its customer (and CSM) and its actions with their stakeholders.
`team` maps each role to its linked accounts, so that a step open to a whole role can @-mention the
people who may take it; without it, the role is named instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    HeaderBlock,
    InputBlock,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot import permissions
from bot.approval import Progress, Step

# `escape` is defined in bot.blocks; builders that import it from this module keep working.
from bot.blocks import (
    HEADER_MAX,
    SECTION_TEXT_MAX,
    actor_mention,
    clip,
    context,
    escape,
    fields,
    mention,
    message_blocks,
    section,
    view_blocks,
)
from bot.errors import AlreadyDone
from bot.formatting import (
    ACTION_WORDS,
    STATUS_WORDS,
    bill_amount,
    bill_period,
    calls,
    credit_lines,
    invoice_line,
    invoice_sent,
    money,
    roles_label,
    timestamp,
    unit_cost,
)
from bot.parsing import REASON_MAX_LENGTH
from bot.permissions import Power
from bot.slack_ids import ActionId, BlockId, CallbackId, InputId, bill_value, undo_value
from bot.workflow import latest_change, sending, undo_target
from db.models import ActionType, Bill, BillAction, BillStatus, Role, User

Team = Mapping[Role, Sequence[User]]

# A role with more linked people than this is named rather than having everyone @-mentioned.
MAX_MENTIONS = 5
# The message and notifications show the start of a long reason; the thread reply shows all of it.
PREVIEW_REASON_MAX = 300


# --- text helpers ----------------------------------------------------------------------------------


def _title(bill: Bill) -> str:
    """"Bill #12 · Acme · March 2026", within a header's 150 characters."""
    head, tail = f"Bill #{bill.id} · ", f" · {bill_period(bill).label}"
    return head + clip(bill.customer.name, HEADER_MAX - len(head) - len(tail)) + tail


def _people(roles: frozenset[Role], team: Team | None, but: User | None = None) -> str:
    """The linked people holding `roles` (but `but`) as @-mentions with the role, or the role alone."""
    label = roles_label(roles)
    people = sorted(
        (
            user
            for role in Role
            if role in roles
            for user in (team or {}).get(role, ())
            if user.slack_user_id and (but is None or user.id != but.id)
        ),
        key=lambda user: user.name,
    )
    if not people or len(people) > MAX_MENTIONS:
        return label
    return f"{', '.join(mention(user) for user in people)} ({label})"


def step_people(step: Step, state: Progress, team: Team | None = None) -> str:
    """Who may take the step: the person it names (and who stands in for them), else the people of its roles."""
    if step.person is not None:
        named = f"{mention(step.person)} ({step.person.role.label})"
        covering = step.stand_in(state.today)
        if covering is None:
            return named
        stand_in = (
            mention(covering.delegate)
            if covering.delegate
            else _people(frozenset({step.person.role}), team, but=step.person)
        )
        return f"{stand_in} for {named}" if covering.until is None else f"{named} or {stand_in} for them"
    if step.missing is not None:
        return f"{escape(step.missing)} (who has no account)"
    people = _people(step.roles, team)
    return f"{step.approvers} people: {people}" if step.approvers > 1 else people


def next_step(bill: Bill, state: Progress, team: Team | None = None) -> str:
    """What happens next and who does it: "Waiting for <@U1> to approve", "Ready to send — …"."""
    if bill.status is BillStatus.DRAFT:
        step = state.waiting_for
        assert step is not None  # a DRAFT always lacks its last approval
        progress = f" — step {step.number} of {len(state.steps)}" if state.numbered else ""
        if step.approvers > 1:
            progress += f", {len(step.approvals)} of {step.approvers} approvals given"
        return f"Waiting for {step_people(step, state, team)} to approve{progress}"
    if bill.status is BillStatus.FINAL:
        return f"Ready to send — {_people(permissions.roles(Power.SEND), team)}"
    if bill.status is BillStatus.WRITEOFF:
        latest = latest_change(bill)
        undone = ACTION_WORDS[latest.action].noun if latest is not None else "rejection"
        return f"Written off — nothing more to do unless the {undone} is undone"
    return "Sent to the customer — the invoice can be sent again or credited"


def _latest(bill: Bill, kind: ActionType) -> BillAction | None:
    return next((action for action in reversed(bill.actions) if action.action is kind), None)


# --- the bill message ------------------------------------------------------------------------------


def _step_line(step: Step, state: Progress, team: Team | None) -> str:
    """One step: who took it or may take it, and why the bill needs it."""
    number = f"{step.number}. " if state.numbered else ""
    reason = f" — {escape(step.reason)}"
    if step.approvals:
        given = ", ".join(
            f"{actor_mention(approval)}{_role(approval.stakeholder)} at {timestamp(approval.created_at)}"
            for approval in step.approvals
        )
        if step.done:
            return f"{number}:white_check_mark: approved by {given}{reason}"
        missing = step.approvers - len(step.approvals)
        return f"{number}:hourglass_flowing_sand: approved by {given}; waiting for {missing} more from {step_people(step, state, team)}{reason}"
    if state.waiting_for is step:
        return f"{number}:hourglass_flowing_sand: waiting for {step_people(step, state, team)}{reason}"
    return f"{number}:white_circle: then {step_people(step, state, team)}{reason}"


def _role(user: User | None) -> str:
    return f" ({user.role.label})" if user is not None else ""


def _approvals(bill: Bill, state: Progress, team: Team | None) -> str:
    if state.auto_approval is not None and bill.status is not BillStatus.DRAFT:
        return f"*Approvals:* :white_check_mark: {escape(state.auto_approval.comment or 'approved automatically')}"
    kind = f"{len(state.steps)} steps, in order" if state.numbered else "One approval"
    lines = [f"*Approvals:* {kind}"]
    lines += [_step_line(step, state, team) for step in state.steps]
    lines += [f"_{escape(note)}_" for note in state.notes()]
    return "\n".join(lines)


def _outcome(bill: Bill) -> str | None:
    """How a bill that left DRAFT got where it is, for WRITEOFF and SENT."""
    latest = latest_change(bill)
    if bill.status is BillStatus.WRITEOFF and latest is not None and latest.action is ActionType.RECOMPUTE:
        return f"*Written off* by {actor_mention(latest)} at {timestamp(latest.created_at)}: {escape(latest.comment or '')}"
    if bill.status is BillStatus.WRITEOFF:
        rejection = _latest(bill, ActionType.REJECT)
        if rejection is not None:
            reason = f": {escape(clip(rejection.comment, PREVIEW_REASON_MAX))}" if rejection.comment else ""
            return (
                f"*Rejected* by {mention(rejection.stakeholder)} at {timestamp(rejection.created_at)}"
                f"{reason}"
            )
    if bill.status is BillStatus.SENT:
        sending = _latest(bill, ActionType.SEND)
        if sending is not None:
            lines = [f"*Sent* by {mention(sending.stakeholder)} at {timestamp(sending.created_at)}"]
            if bill.invoice_number:
                lines.append(f"*Invoice* {escape(invoice_line(bill))}")
            lines += [f"*Credit note* {escape(line)}" for line in credit_lines(bill)]
            return clip("\n".join(lines), 3000)  # a section's text limit, however many credit notes
    return None


def _button(text: str, action_id: ActionId, value: str, style: str | None = None, **extra) -> ButtonElement:
    return ButtonElement(text=text, action_id=action_id.value, value=value, style=style, **extra)


def shown_value(bill: Bill) -> str:
    """The value of the bill's buttons: the bill, and the version of it they are shown with."""
    latest = latest_change(bill)
    return bill_value(bill.id, latest.id if latest is not None else None)


def bill_buttons(bill: Bill) -> list[ButtonElement]:
    """Every action someone could take now; each click is checked again against who clicked."""
    value = shown_value(bill)
    buttons = []
    if bill.status is BillStatus.DRAFT:
        buttons += [
            _button("Approve", ActionId.APPROVE, value, "primary"),
            _button("Reject", ActionId.REJECT, value, "danger"),
        ]
    if bill.status is BillStatus.FINAL and bill.sending_started_at is not None:
        buttons += uncertain_send_buttons(bill)
    elif bill.status is BillStatus.FINAL:
        confirm = _confirm(
            "Send this bill?",
            f"Bill #{bill.id} for {bill_amount(bill)} will be emailed to {bill.customer.billing_email}."
            " A sent bill cannot be undone.",
            "Send",
        )
        buttons.append(_button("Send", ActionId.SEND, value, "primary", confirm=confirm))
    target = undo_target(bill)
    if target is not None:
        buttons.append(_button(ACTION_WORDS[target.action].undo_label, ActionId.UNDO, undo_value(bill.id, target.id)))
    if invoice_sent(bill):
        buttons.append(pdf_button(bill))
    return buttons


def pdf_button(bill: Bill) -> ButtonElement:
    """Uploads the bill's invoice as a PDF to the direct messages of whoever clicks it."""
    return _button("Invoice PDF", ActionId.PDF, bill_value(bill.id))


def uncertain_send_buttons(bill: Bill) -> list[ButtonElement]:
    """For a bill whose earlier send is not confirmed: Send again, and Mark as sent (the customer has it)."""
    return [_send_again_button(bill), _mark_sent_button(bill)]


def _send_again_button(bill: Bill) -> ButtonElement:
    confirm = _confirm(
        "Send this bill again?",
        f"An earlier email of bill #{bill.id} may already have reached the customer. Send it again only once you"
        f" know they do not have it: {bill_amount(bill)} is emailed to {bill.customer.billing_email}"
        " once more.",
        "Send again",
    )
    return _button("Send again", ActionId.SEND_AGAIN, shown_value(bill), "danger", confirm=confirm)


def _mark_sent_button(bill: Bill) -> ButtonElement:
    confirm = _confirm(
        "Mark this bill as sent?",
        f"Bill #{bill.id} is recorded as sent to {bill.customer.billing_email}. No email will be sent: do this"
        " only once you know the customer received the earlier email.",
        "Mark as sent",
    )
    return _button("Mark as sent", ActionId.MARK_SENT, shown_value(bill), confirm=confirm)


def _confirm(title: str, text: str, confirm: str) -> ConfirmObject:
    """The dialog Slack shows before a click goes through; its text is clipped to Slack's 300 characters."""
    return ConfirmObject(title=title, text=PlainTextObject(text=clip(text, 300)), confirm=confirm, deny="Cancel")


def sending_text(bill: Bill) -> str | None:
    """A warning about the bill's email in flight or not confirmed, and what to do about it."""
    current = sending(bill)
    if current is None:
        return None
    if not current.uncertain:
        return f":hourglass_flowing_sand: {escape(current.summary)}"
    return f":warning: {escape(current.summary)} {escape(current.how_to_send_again)}"


def bill_message(bill: Bill, state: Progress, team: Team | None = None) -> tuple[str, list[dict]]:
    """The bill's message: figures, status, the approvals it needs and from whom, and its buttons."""
    customer = bill.customer
    period = bill_period(bill).label
    figures = [
        f"*Customer*\n{escape(customer.name)}",
        f"*Period*\n{period}",
        f"*API usage*\n{calls(bill.api_usage)} calls (limit {calls(bill.monthly_api_limit)})",
        f"*Overage*\n{calls(bill.overage_units)} calls",
        f"*Unit cost*\n{unit_cost(bill.overage_unit_cost, bill.currency)} per call",
        f"*Amount*\n{bill_amount(bill)}",
        f"*Status*\n{STATUS_WORDS[bill.status].emoji} {bill.status.value}",
    ]
    blocks: list[Block] = [
        HeaderBlock(text=_title(bill)),
        fields(figures),
        section(_approvals(bill, state, team)),
    ]
    for line in (_outcome(bill), sending_text(bill)):
        if line:
            blocks.append(section(line))
    upcoming = next_step(bill, state, team)
    blocks.append(context(upcoming))
    buttons = bill_buttons(bill)
    if buttons:
        blocks.append(ActionsBlock(block_id=BlockId.BILL_ACTIONS.value, elements=buttons))
    text = (
        f"Bill #{bill.id} · {escape(customer.name)} · {period}: {bill_amount(bill)} "
        f"for {calls(bill.overage_units)} calls over the limit · {bill.status.value}. {upcoming}"
    )
    return text, message_blocks(blocks)


# --- the thread reply for one action ---------------------------------------------------------------


def _headline(action: BillAction, bill: Bill) -> str:
    who = actor_mention(action)
    words = ACTION_WORDS[action.action]
    if action.action is ActionType.CREDIT and action.credit_note is not None:
        note = action.credit_note
        return (
            f"{words.emoji} {who} issued credit note {note.number} for {money(note.amount, note.currency)}"
            f" against invoice {bill.invoice_number} (bill #{bill.id})"
        )
    if action.action in (ActionType.RECOMPUTE, ActionType.NOTE):
        line = f"{words.emoji} {who[:1].upper() + who[1:]} {words.headline} bill #{bill.id}"
        line += f": {escape(action.comment or '')}"
        if action.action is ActionType.RECOMPUTE and action.amount_before != action.amount_after:
            line += ". Approvals given before no longer count"
        return line
    if action.action is ActionType.UNDO:
        undone = next((earlier for earlier in bill.actions if earlier.id == action.undone_action_id), None)
        what = f"{actor_mention(undone)}'s {ACTION_WORDS[undone.action].noun}" if undone else "an action"
        if undone is not None and undone.action is ActionType.RECOMPUTE:
            what = f"the {ACTION_WORDS[undone.action].noun} of {timestamp(undone.created_at)}"
        return f"{words.emoji} {who} {words.headline} {what} on bill #{bill.id}"
    line = f"{words.emoji} {who} {words.headline} bill #{bill.id}"
    if action.action in (ActionType.APPROVE, ActionType.EDIT, ActionType.SEND, ActionType.RESEND) and action.comment:
        line += f" ({escape(action.comment)})"
    if action.action is ActionType.REJECT:
        line += " and wrote it off"
    if action.action is ActionType.EDIT:
        line += ". Approvals given before the edit no longer count"
    return line


def action_reply(
    action: BillAction, bill: Bill, state: Progress, team: Team | None = None
) -> tuple[str, list[dict]]:
    """The thread reply for one action: who did what, their reason, the status change, and what is next."""
    headline = _headline(action, bill)
    before = action.status_before.value if action.status_before else "—"
    change = f"Status: {before} → {action.status_after.value}"
    upcoming = next_step(bill, state, team)
    blocks: list[Block] = [section(clip(headline, SECTION_TEXT_MAX))]
    reason = action.comment if action.action in (ActionType.REJECT, ActionType.UNDO) else None
    if action.action is ActionType.CREDIT and action.credit_note is not None:
        reason = action.credit_note.reason
    if reason:
        # Plain text shows the reason exactly as typed: no markup, no mentions.
        blocks.append(SectionBlock(text=PlainTextObject(text=f"Reason: {reason}", emoji=False)))
    blocks.append(context(change))
    blocks.append(section(upcoming))
    text = headline
    if reason:
        text += f": “{escape(clip(reason, PREVIEW_REASON_MAX))}”"
    text += f". {change}. {upcoming}"
    return text, message_blocks(blocks)


# --- refusals ----------------------------------------------------------------------------------------


def already_done_text(refusal: AlreadyDone) -> str:
    """The refusal's sentence, escaped, with the person who got there first as an @-mention when they are linked."""
    message = escape(str(refusal))
    if refusal.slack_user_id and refusal.user_name:
        message = message.replace(f" by {escape(refusal.user_name)} ", f" by <@{refusal.slack_user_id}> ", 1)
    return message


# --- the reject modal --------------------------------------------------------------------------------


def reject_modal(bill: Bill) -> dict:
    """A modal asking why the bill is rejected; its private_metadata names the bill and the version shown."""
    summary = (
        f"*Bill #{bill.id}* · {escape(bill.customer.name)} · {bill_period(bill).label} · "
        f"{bill_amount(bill)}\nRejecting writes the overage off. The reason is posted in the bill's thread."
    )
    blocks = [
        section(summary),
        InputBlock(
            block_id=BlockId.REJECT_REASON.value,
            label="Reason",
            element=PlainTextInputElement(
                action_id=InputId.REJECT_REASON.value,
                multiline=True,
                max_length=REASON_MAX_LENGTH,
                placeholder="Why is this bill written off?",
            ),
            optional=False,
        ),
    ]
    view = View(
        type="modal",
        callback_id=CallbackId.REJECT_MODAL.value,
        title="Reject bill",
        submit="Reject",
        close="Cancel",
        private_metadata=shown_value(bill),
        blocks=view_blocks(blocks),
    )
    return view.to_dict()
