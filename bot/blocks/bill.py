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
    ContextBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

# `escape` is defined in bot.blocks; builders that import it from this module keep working.
from bot.blocks import HEADER_MAX, actor, clip, escape, mention, message_blocks, view_blocks
from bot.errors import AlreadyDone
from bot.formatting import bill_amount, bill_period, calls, credit_lines, invoice_line, money, timestamp, unit_cost
from bot.slack_ids import ActionId, BlockId, CallbackId, InputId, bill_value, undo_value
from bot.workflow import REASON_MAX_LENGTH, ApprovalState, ApprovalStep, latest_change, sending, undo_target
from db.models import ActionType, Bill, BillAction, BillStatus, Role, User

Team = Mapping[Role, Sequence[User]]

# A role with more linked people than this is named rather than having everyone @-mentioned.
MAX_MENTIONS = 5
# The message and notifications show the start of a long reason; the thread reply shows all of it.
PREVIEW_REASON_MAX = 300

STATUS_EMOJI = {
    BillStatus.DRAFT: ":hourglass_flowing_sand:",
    BillStatus.FINAL: ":white_check_mark:",
    BillStatus.WRITEOFF: ":no_entry_sign:",
    BillStatus.SENT: ":email:",
}
ACTION_EMOJI = {
    ActionType.DRAFT: ":new:",
    ActionType.APPROVE: ":white_check_mark:",
    ActionType.REJECT: ":no_entry_sign:",
    ActionType.EDIT: ":pencil2:",
    ActionType.SEND: ":email:",
    ActionType.UNDO: ":leftwards_arrow_with_hook:",
    ActionType.RECOMPUTE: ":arrows_counterclockwise:",
    ActionType.NOTE: ":memo:",
    ActionType.RESEND: ":email:",
    ActionType.CREDIT: ":receipt:",
}
VERB = {
    ActionType.DRAFT: "created",
    ActionType.APPROVE: "approved",
    ActionType.REJECT: "rejected",
    ActionType.EDIT: "edited",
    ActionType.SEND: "sent",
    ActionType.UNDO: "undid",
    ActionType.RECOMPUTE: "recomputed",
    ActionType.NOTE: "noted a usage correction on",
    ActionType.RESEND: "sent again",
    ActionType.CREDIT: "credited",
}
UNDO_LABEL = {
    ActionType.APPROVE: "Undo approval",
    ActionType.REJECT: "Undo rejection",
    ActionType.EDIT: "Undo edit",
    ActionType.RECOMPUTE: "Undo usage correction",
}
UNDONE_NOUN = {
    ActionType.APPROVE: "approval",
    ActionType.REJECT: "rejection",
    ActionType.EDIT: "edit",
    ActionType.RECOMPUTE: "usage correction",
}


# --- text helpers ----------------------------------------------------------------------------------




def _title(bill: Bill) -> str:
    """"Bill #12 · Acme · March 2026", within a header's 150 characters."""
    head, tail = f"Bill #{bill.id} · ", f" · {bill_period(bill).label}"
    return head + clip(bill.customer.name, HEADER_MAX - len(head) - len(tail)) + tail


def _roles_label(roles: frozenset[Role]) -> str:
    return " or ".join(role.label for role in Role if role in roles)


def _people(roles: frozenset[Role], team: Team | None) -> str:
    """The linked people holding `roles` as @-mentions with the role, or the role alone."""
    label = _roles_label(roles)
    people = sorted(
        (user for role in Role if role in roles for user in (team or {}).get(role, ()) if user.slack_user_id),
        key=lambda user: user.name,
    )
    if not people or len(people) > MAX_MENTIONS:
        return label
    return f"{', '.join(mention(user) for user in people)} ({label})"


def step_people(step: ApprovalStep, team: Team | None = None) -> str:
    """Who may take the step: the customer's CSM by name, else the people of its roles."""
    if step.user is not None:
        return f"{mention(step.user)} ({Role.CUSTOMER_SUCCESS.label})"
    return _people(step.roles, team)


def next_step(bill: Bill, state: ApprovalState, team: Team | None = None) -> str:
    """What happens next and who does it: "Waiting for <@U1> (Customer Success)", "Ready to send — …"."""
    if bill.status is BillStatus.DRAFT:
        step = state.waiting_for
        assert step is not None  # a DRAFT always lacks its last approval
        progress = f" — step {step.number} of {len(state.steps)}" if state.two_step else ""
        return f"Waiting for {step_people(step, team)} to approve{progress}"
    if bill.status is BillStatus.FINAL:
        return f"Ready to send — {_people(frozenset({Role.FINANCE}), team)}"
    if bill.status is BillStatus.WRITEOFF:
        latest = latest_change(bill)
        undone = UNDONE_NOUN.get(latest.action, "rejection") if latest is not None else "rejection"
        return f"Written off — nothing more to do unless the {undone} is undone"
    return "Sent to the customer — the invoice can be sent again or credited"


def _latest(bill: Bill, kind: ActionType) -> BillAction | None:
    return next((action for action in reversed(bill.actions) if action.action is kind), None)


# --- the bill message ------------------------------------------------------------------------------


def _step_line(step: ApprovalStep, state: ApprovalState, team: Team | None) -> str:
    who = step_people(step, team)
    number = f"{step.number}. " if state.two_step else ""
    if step.done:
        by, at = step.approved_by, step.approved_at
        assert at is not None
        role = f" ({by.role.label})" if by is not None else ""
        return f"{number}:white_check_mark: approved by {mention(by)}{role} at {timestamp(at)}"
    if state.waiting_for is step:
        return f"{number}:hourglass_flowing_sand: waiting for {who}"
    return f"{number}:white_circle: then {who}"


def _approvals(bill: Bill, state: ApprovalState, team: Team | None) -> str:
    kind = "Two approvals, in order" if state.two_step else "One approval"
    lines = [f"*Approvals:* {kind}"]
    lines += [_step_line(step, state, team) for step in state.steps]
    return "\n".join(lines)


def _outcome(bill: Bill) -> str | None:
    """How a bill that left DRAFT got where it is, for WRITEOFF and SENT."""
    latest = latest_change(bill)
    if bill.status is BillStatus.WRITEOFF and latest is not None and latest.action is ActionType.RECOMPUTE:
        return f"*Written off* by {actor(latest)} at {timestamp(latest.created_at)}: {escape(latest.comment or '')}"
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
        buttons.append(_button(UNDO_LABEL[target.action], ActionId.UNDO, undo_value(bill.id, target.id)))
    if bill.invoice_number is not None:
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


def bill_message(bill: Bill, state: ApprovalState, team: Team | None = None) -> tuple[str, list[dict]]:
    """The bill's message: figures, status, the approvals it needs and from whom, and its buttons."""
    customer = bill.customer
    period = bill_period(bill).label
    fields = [
        f"*Customer*\n{escape(customer.name)}",
        f"*Period*\n{period}",
        f"*API usage*\n{calls(bill.api_usage)} calls (limit {calls(bill.monthly_api_limit)})",
        f"*Overage*\n{calls(bill.overage_units)} calls",
        f"*Unit cost*\n{unit_cost(bill.overage_unit_cost, bill.currency)} per call",
        f"*Amount*\n{bill_amount(bill)}",
        f"*Status*\n{STATUS_EMOJI[bill.status]} {bill.status.value}",
    ]
    blocks: list[Block] = [
        HeaderBlock(text=_title(bill)),
        SectionBlock(fields=[MarkdownTextObject(text=field) for field in fields]),
        SectionBlock(text=MarkdownTextObject(text=_approvals(bill, state, team))),
    ]
    for line in (_outcome(bill), sending_text(bill)):
        if line:
            blocks.append(SectionBlock(text=MarkdownTextObject(text=line)))
    upcoming = next_step(bill, state, team)
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=upcoming)]))
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
    who = actor(action)
    emoji = ACTION_EMOJI[action.action]
    if action.action is ActionType.CREDIT and action.credit_note is not None:
        note = action.credit_note
        return (
            f"{emoji} {who} issued credit note {note.number} for {money(note.amount, note.currency)}"
            f" against invoice {bill.invoice_number} (bill #{bill.id})"
        )
    if action.action in (ActionType.RECOMPUTE, ActionType.NOTE):
        line = f"{emoji} {who.capitalize() if who[0].islower() else who} {VERB[action.action]} bill #{bill.id}"
        line += f": {escape(action.comment or '')}"
        if action.action is ActionType.RECOMPUTE and action.amount_before != action.amount_after:
            line += ". Approvals given before no longer count"
        return line
    if action.action is ActionType.UNDO:
        undone = next((earlier for earlier in bill.actions if earlier.id == action.undone_action_id), None)
        what = f"{actor(undone)}'s {UNDONE_NOUN[undone.action]}" if undone else "an action"
        if undone is not None and undone.action is ActionType.RECOMPUTE:
            what = f"the {UNDONE_NOUN[undone.action]} of {timestamp(undone.created_at)}"
        return f"{emoji} {who} undid {what} on bill #{bill.id}"
    line = f"{emoji} {who} {VERB[action.action]} bill #{bill.id}"
    if action.action in (ActionType.APPROVE, ActionType.EDIT, ActionType.SEND, ActionType.RESEND) and action.comment:
        line += f" ({escape(action.comment)})"
    if action.action is ActionType.REJECT:
        line += " and wrote it off"
    if action.action is ActionType.EDIT:
        line += ". Approvals given before the edit no longer count"
    return line


def action_reply(
    action: BillAction, bill: Bill, state: ApprovalState, team: Team | None = None
) -> tuple[str, list[dict]]:
    """The thread reply for one action: who did what, their reason, the status change, and what is next."""
    headline = _headline(action, bill)
    before = action.status_before.value if action.status_before else "—"
    change = f"Status: {before} → {action.status_after.value}"
    upcoming = next_step(bill, state, team)
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=clip(headline, 3000)))]
    reason = action.comment if action.action in (ActionType.REJECT, ActionType.UNDO) else None
    if action.action is ActionType.CREDIT and action.credit_note is not None:
        reason = action.credit_note.reason
    if reason:
        # Plain text shows the reason exactly as typed: no markup, no mentions.
        blocks.append(SectionBlock(text=PlainTextObject(text=f"Reason: {reason}", emoji=False)))
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=change)]))
    blocks.append(SectionBlock(text=MarkdownTextObject(text=upcoming)))
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
        SectionBlock(text=MarkdownTextObject(text=summary)),
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
