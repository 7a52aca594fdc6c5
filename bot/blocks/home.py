"""Block Kit for the App Home tab: per role, within the 100 blocks a view may have."""

from __future__ import annotations

from typing import TYPE_CHECKING

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
)

from bot.blocks import (
    actor_mention,
    clip,
    context,
    escape,
    fields,
    header,
    message_blocks,
    section,
)
from bot.blocks.bill import sending_text, shown_value, uncertain_send_buttons
from bot.formatting import (
    OUTBOX_WHAT,
    STATUS_WORDS,
    bill_amount,
    bill_period,
    calls,
    unit_cost,
)
from bot.money import add_totals, format_totals
from bot.slack_ids import ActionId
from db.models import ActionType, Bill, User

if TYPE_CHECKING:
    from bot.home import ApproverHome, FinanceHome, ListedBill

def _bills(count: int) -> str:
    return f"{count} bill" if count == 1 else f"{count} bills"


def _who(user: User) -> ContextBlock:
    return context(f"You are *{escape(user.name)}* ({user.role.label}) · `/bill help` lists what you can do.")


def bill_summary(bill: Bill) -> str:
    """Two mrkdwn lines: which bill, and how its amount comes about."""
    return (
        f"*Bill #{bill.id} · {escape(bill.customer.name)}* — {bill_period(bill).label}\n"
        f"{calls(bill.api_usage)} calls, limit {calls(bill.monthly_api_limit)}: "
        f"{calls(bill.overage_units)} over × {unit_cost(bill.overage_unit_cost, bill.currency)} = *{bill_amount(bill)}*"
    )


def _progress(listed: ListedBill) -> str:
    """Which approval the bill waits for and which it has, as the approver reads it."""
    state = listed.state
    step = state.waiting_for
    if step is None:
        return ""
    where = f"Step {step.number} of {len(state.steps)}" if state.numbered else "Needs one approval"
    parts = [f"{where}: {escape(step.label)}"]
    parts += [
        f"step {done.number} approved by {', '.join(actor_mention(given) for given in done.approvals)}"
        for done in state.done_steps
    ]
    parts += [escape(note) for note in state.notes()]
    return " · ".join(parts)


def _approved_by(listed: ListedBill) -> str:
    state = listed.state
    given = [approval for step in state.done_steps for approval in step.approvals]
    if state.auto_approval is not None:
        given.append(state.auto_approval)
    by = f"Approved by {', '.join(actor_mention(approval) for approval in given)} · " if given else ""
    return f"{by}to {escape(listed.bill.customer.billing_email)}"


def _more(shown: int, total: int, hint: str) -> list[Block]:
    if total <= shown:
        return []
    return [context(f"…and {total - shown} more. {hint}")]


def unlinked_home() -> list[Block]:
    return [
        HeaderBlock(text="Welcome to BillProcess"),
        section(
            "BillProcess handles the monthly API-overage bills: Finance generates them, the people each bill's"
            " approval steps name approve them, and Finance sends them to the customers.\n\n"
            "*Your Slack user is not linked to a BillProcess account yet.* To link it:"
        ),
        section(
            "1. Ask an operator for a one-time code. They create it with `billprocess users invite NAME`, "
            "where NAME is your account.\n"
            "2. Type `/bill link CODE` in any channel or direct message. The code works once, within 24 hours."
        ),
        context("Never type a password into Slack: linking only ever needs the one-time code."),
    ]


def finance_home(home: FinanceHome) -> list[Block]:
    blocks: list[Block] = [HeaderBlock(text="BillProcess — Finance"), _who(home.user), DividerBlock()]
    if home.period is None:
        blocks.append(
            section(
                f"No bills have been generated yet. `/bill generate {home.next_period}` creates the bills "
                f"for {home.next_period.label}."
            )
        )
    else:
        count = sum(total.count for total in home.totals)
        amount = format_totals(add_totals(total.totals for total in home.totals), none="nothing")
        blocks += [
            HeaderBlock(text=f"Bills for {home.period.label}"),
            fields(
                f"*{total.status.value}* — {STATUS_WORDS[total.status].meaning}\n"
                f"{_bills(total.count)}" + (f" · {format_totals(total.totals)}" if total.count else "")
                for total in home.totals
            ),
            context(f"{_bills(count)} in all, {amount} · `/bill list {home.period}` lists them."),
        ]
    if home.sending:
        blocks += [DividerBlock(), HeaderBlock(text="Sending not confirmed")]
        for bill in home.sending:
            blocks += [
                section(f"{bill_summary(bill)}\n{sending_text(bill)}"),
                ActionsBlock(elements=uncertain_send_buttons(bill)),
            ]
        blocks += _more(len(home.sending), home.sending_count, "`/bill list FINAL` lists them all.")
    if home.approvals.waiting_count:
        waiting = home.approvals
        blocks += [DividerBlock(), HeaderBlock(text=f"Waiting for your approval: {_bills(waiting.waiting_count)}")]
        for listed in waiting.waiting:
            blocks += _waiting_bill(listed)
        blocks += _more(len(waiting.waiting), waiting.waiting_count, "`/bill list DRAFT` lists every draft.")
    blocks += [DividerBlock(), HeaderBlock(text="Approved, waiting to be sent")]
    if not home.to_send:
        blocks.append(section("No approved bills are waiting to be sent."))
    for listed in home.to_send:
        bill = listed.bill
        send = None
        if ActionType.SEND in listed.actions:
            send = ButtonElement(
                text="Send",
                action_id=ActionId.SEND.value,
                value=shown_value(bill),
                style="primary",
                confirm=ConfirmObject(
                    title=f"Send bill #{bill.id}?",
                    text=f"{bill_amount(bill)} is emailed to"
                    f" {escape(clip(bill.customer.billing_email, 180))}. A sent bill cannot be undone.",
                    confirm="Send",
                    deny="Cancel",
                ),
            )
        blocks.append(section(f"{bill_summary(bill)}\n{_approved_by(listed)}", accessory=send))
    blocks += _more(len(home.to_send), home.to_send_count, "`/bill list FINAL` lists them all.")
    if home.failed_count:
        blocks += [DividerBlock(), HeaderBlock(text=f":warning: Slack messages not delivered: {home.failed_count}")]
        lines = [f"• {OUTBOX_WHAT[row.kind]}" + (f" of bill #{row.bill_id}" if row.bill_id else "")
                 + f": `{escape(clip(row.last_error or 'failed', 200))}`" for row in home.failed]
        blocks.append(section("\n".join(lines)))
        blocks.append(context("An operator lists them with `billprocess outbox` and sends them again with"
                              " `billprocess outbox retry` once the cause is fixed."))
    return blocks


def approver_home(home: ApproverHome) -> list[Block]:
    blocks: list[Block] = [HeaderBlock(text=f"BillProcess — {home.user.role.label}"), _who(home.user), DividerBlock()]
    if not home.waiting_count:
        blocks.append(section("No bills are waiting for your approval. :white_check_mark:"))
        return blocks
    blocks.append(HeaderBlock(text=f"Waiting for you: {_bills(home.waiting_count)}"))
    for listed in home.waiting:
        blocks += _waiting_bill(listed)
    blocks += _more(len(home.waiting), home.waiting_count, "`/bill list DRAFT` lists every bill still in draft.")
    return blocks


def _waiting_bill(listed: ListedBill) -> list[Block]:
    """A bill waiting for the reader's approval, with the buttons they may use on it."""
    bill = listed.bill
    blocks: list[Block] = [section(f"{bill_summary(bill)}\n{_progress(listed)}")]
    buttons = [
        ButtonElement(text=label, action_id=action_id.value, value=shown_value(bill), style=style)
        for action, label, action_id, style in (
            (ActionType.APPROVE, "Approve", ActionId.APPROVE, "primary"),
            (ActionType.REJECT, "Reject", ActionId.REJECT, "danger"),
        )
        if action in listed.actions
    ]
    if buttons:
        blocks.append(ActionsBlock(elements=buttons))
    return blocks


# Each waiting bill takes two blocks; a message may have 50.
MAX_REMINDED_BILLS = 20


def reminder_message(home: ApproverHome, *, after_days: int) -> tuple[str, list[dict]]:
    """The approver's reminder DM: the bills waiting on them for more than `after_days` days, with buttons."""
    days = "day" if after_days == 1 else "days"
    head = f"{_bills(home.waiting_count)} waiting for your approval for more than {after_days} {days}"
    blocks: list[Block] = [header(f":bell: {head}")]
    for listed in home.waiting[:MAX_REMINDED_BILLS]:
        blocks += _waiting_bill(listed)
    blocks += _more(min(len(home.waiting), MAX_REMINDED_BILLS), home.waiting_count,
                    "Your App Home lists every bill waiting for you.")
    return f"Reminder: {head}.", message_blocks(blocks)
