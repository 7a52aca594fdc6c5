"""Plain-text renderings of money, bills and their history, shared by the command line and messages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING

from bot.invoices import format_day
from bot.money import format_money, format_unit_price
from bot.periods import Period
from bot.text import clip
from db.models import ActionOrigin, ActionType, Bill, BillAction, BillStatus, Outbox, OutboxKind, Role

if TYPE_CHECKING:
    from bot.approval import Progress
    from db.models import User


@dataclass(frozen=True)
class ActionWords:
    """How the messages name one kind of bill action."""

    past: str  # "approved": "bill #12 was already approved by sam"
    headline: str  # "created", "undid": the thread reply's "sam approved bill #12"
    noun: str  # "approval": "sam's approval of bill #12"
    emoji: str

    @property
    def undo_label(self) -> str:
        """The undo button's text: "Undo approval"."""
        return f"Undo {self.noun}"


@dataclass(frozen=True)
class StatusWords:
    """How the messages show one bill status."""

    emoji: str
    meaning: str  # "approved, to be sent"


STATUS_WORDS = {
    BillStatus.DRAFT: StatusWords(":hourglass_flowing_sand:", "waiting for approval"),
    BillStatus.FINAL: StatusWords(":white_check_mark:", "approved, to be sent"),
    BillStatus.WRITEOFF: StatusWords(":no_entry_sign:", "rejected, written off"),
    BillStatus.SENT: StatusWords(":email:", "sent to the customer"),
}

ACTION_WORDS = {
    ActionType.DRAFT: ActionWords("drafted", "created", "draft", ":new:"),
    ActionType.APPROVE: ActionWords("approved", "approved", "approval", ":white_check_mark:"),
    ActionType.REJECT: ActionWords("rejected", "rejected", "rejection", ":no_entry_sign:"),
    ActionType.EDIT: ActionWords("edited", "edited", "edit", ":pencil2:"),
    ActionType.SEND: ActionWords("sent", "sent", "send", ":email:"),
    ActionType.UNDO: ActionWords("undone", "undid", "undo", ":leftwards_arrow_with_hook:"),
    ActionType.RECOMPUTE: ActionWords("recomputed", "recomputed", "usage correction", ":arrows_counterclockwise:"),
    ActionType.NOTE: ActionWords("noted", "noted a usage correction on", "note", ":memo:"),
    ActionType.RESEND: ActionWords("sent again", "sent again", "resend", ":email:"),
    ActionType.CREDIT: ActionWords("credited", "credited", "credit note", ":receipt:"),
}


def money(amount: Decimal, currency: str) -> str:
    """An amount with its currency, as people read it: $1,500.00, ¥1,500."""
    return format_money(amount, currency)


def bill_amount(bill: Bill) -> str:
    """The bill's amount in its currency: $1,500.00."""
    return format_money(bill.overage_amount, bill.currency)


def unit_cost(cost: Decimal, currency: str | None = None) -> str:
    """A unit cost with every significant place: $0.000125, $0.02; without a currency, a plain 0.000125."""
    if currency is not None:
        return format_unit_price(cost, currency)
    places = max(2, -cost.normalize().as_tuple().exponent)
    return f"{cost:.{places}f}"


def calls(count: int) -> str:
    return f"{count:,}"


def timestamp(moment: datetime) -> str:
    return f"{moment.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC"


def bill_period(bill: Bill) -> Period:
    return Period(bill.year, bill.month)


def invoice_line(bill: Bill) -> str:
    """The bill's invoice in one line: "BP-2026-000123, issued November 3, 2026, due December 3, 2026"."""
    if bill.invoice_number is None or bill.issue_date is None or bill.due_date is None:
        return "none yet (a bill gets its invoice when it is first sent)"
    if not invoice_sent(bill):
        # Numbered by a send the mail server refused: the number stays with this bill for its next send.
        void = " — void: never sent" if bill.status is BillStatus.WRITEOFF else " — not sent yet (its email was refused)"
        return f"{bill.invoice_number}{void}"
    return f"{bill.invoice_number}, issued {format_day(bill.issue_date)}, due {format_day(bill.due_date)}"


def invoice_sent(bill: Bill) -> bool:
    """True when the bill's invoice went out (or may have: a send whose outcome is not confirmed)."""
    return bill.invoice_number is not None and (bill.status is BillStatus.SENT or bill.sending_started_at is not None)


def credit_lines(bill: Bill) -> list[str]:
    """One line per credit note issued against the bill: "CN-2026-000004 of November 9, 2026: $12.00 (reason)"."""
    return [
        f"{note.number} of {format_day(note.issue_date)}: {money(note.amount, note.currency)}"
        f" ({clip(note.reason, 100)})"
        + ("" if note.emailed_at else " — not emailed yet")
        for note in bill.credit_notes
    ]


def bill_row(bill: Bill) -> str:
    """One line of a bill list."""
    return (
        f"#{bill.id:<6} {bill_period(bill)}  {bill.status.value:<8}  {bill.customer.name:<28.28}"
        f" {calls(bill.overage_units):>14} calls  {bill_amount(bill):>16}"
        + (f"  {bill.invoice_number}" if bill.invoice_number else "")
    )


def person_name(user: User | None) -> str:
    """The account's name; the scheduler when no account acted."""
    return user.name if user is not None else "the scheduler"


def roles_label(roles) -> str:
    """Roles as a person reads them, in the usual order: "Customer Success or Sales"."""
    return " or ".join(role.label for role in Role if role in roles)


def actor_name(action: BillAction) -> str:
    """Who took the action, in a sentence: the account's name, else "the scheduler", "an operator (command
    line)" or "the approval policy"."""
    return action.stakeholder.name if action.stakeholder is not None else action_origin(action).label


def approval_lines(progress: Progress) -> list[str]:
    """The bill's approval steps, each with its reason and how far it got, as plain text."""
    if progress.auto_approval is not None and progress.status is not BillStatus.DRAFT:
        return [progress.auto_approval.comment or "approved automatically by the approval policy"]
    lines = []
    for step in progress.steps:
        number = f"{step.number}. " if progress.numbered else ""
        if step.approvals:
            given = ", ".join(
                f"{actor_name(approval)}"
                f" at {timestamp(approval.created_at)}"
                for approval in step.approvals
            )
            state = f"approved by {given}" + ("" if step.done else f" ({len(step.approvals)} of {step.approvers})")
        elif step is progress.waiting_for:
            state = "waiting"
        else:
            state = "not yet"
        lines.append(f"{number}{step.label}: {state}")
    lines += progress.notes()
    return lines


def bill_details(bill: Bill, progress: Progress) -> list[str]:
    customer = bill.customer
    return [
        f"Bill #{bill.id} — {customer.name}, {bill_period(bill).label}",
        f"Status:          {bill.status.value}",
        f"API usage:       {calls(bill.api_usage)} calls (limit {calls(bill.monthly_api_limit)})",
        f"Overage:         {calls(bill.overage_units)} calls × {unit_cost(bill.overage_unit_cost, bill.currency)}",
        f"Amount:          {bill_amount(bill)}",
        *(f"Approval:        {line}" if index == 0 else f"                 {line}"
          for index, line in enumerate(approval_lines(progress))),
        f"Billing email:   {customer.billing_email}",
        f"Invoice:         {invoice_line(bill)}",
        *(f"Credit note:     {line}" for line in credit_lines(bill)),
    ]


def action_origin(action: BillAction) -> ActionOrigin:
    """What took an action that no account took (rows from before origins were kept: the scheduler)."""
    return action.origin or ActionOrigin.SCHEDULER


def action_line(action: BillAction) -> str:
    who = action.stakeholder.name if action.stakeholder else action_origin(action).value
    before = action.status_before.value if action.status_before else "—"
    line = (
        f"#{action.id:<5} {timestamp(action.created_at)}  {who:<12} {action.action.value:<8}"
        f" {before} → {action.status_after.value}"
    )
    details = []
    if action.undone_action_id is not None:
        details.append(f"undid action #{action.undone_action_id}")
    if action.unit_cost_before is not None and action.action is ActionType.UNDO:
        details.append(f"unit cost {unit_cost(action.unit_cost_before)} → {unit_cost(action.unit_cost_after)}")
    if action.usage_before is not None and action.action is ActionType.UNDO:
        details.append(f"usage {calls(action.usage_before)} → {calls(action.usage_after)} calls")
    if action.comment:
        details.append(action.comment)
    return "  ".join([line, "; ".join(details)]) if details else line


OUTBOX_WHAT = {
    OutboxKind.JOB: "click or command to apply",
    OutboxKind.BILL_MESSAGE: "bill message",
    OutboxKind.THREAD_REPLY: "thread reply",
    OutboxKind.HOMES: "App Homes refresh",
    OutboxKind.HOME: "App Home refresh",
    OutboxKind.RESPOND: "answer to a person",
    OutboxKind.REMINDER: "reminder DM",
    OutboxKind.GENERATION: "generation summary",
}


def outbox_line(row: Outbox) -> str:
    """One line of `billprocess outbox`: what, for which bill or person, attempts and the last error."""
    about = f"bill #{row.bill_id}" if row.bill_id is not None else (row.slack_user_id or "")
    line = (
        f"#{row.id:<7} {row.status.value:<8} {OUTBOX_WHAT[row.kind]:<26} {about:<14}"
        f" {row.attempts} attempt{'s' if row.attempts != 1 else ''}"
    )
    if row.outcome_unknown:
        line += ", outcome unknown"
    if row.last_error:
        line += f" · {row.last_error}"
    return line
