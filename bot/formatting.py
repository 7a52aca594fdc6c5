"""Plain-text renderings of money, bills and their history, shared by the command line and messages."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from bot.invoices import format_day
from bot.money import format_money, format_unit_price
from bot.periods import Period
from bot.text import clip
from db.models import ActionType, Bill, BillAction, Outbox, OutboxKind


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
    return f"{bill.invoice_number}, issued {format_day(bill.issue_date)}, due {format_day(bill.due_date)}"


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


def bill_details(bill: Bill) -> list[str]:
    customer = bill.customer
    return [
        f"Bill #{bill.id} — {customer.name}, {bill_period(bill).label}",
        f"Status:          {bill.status.value}",
        f"API usage:       {calls(bill.api_usage)} calls (limit {calls(bill.monthly_api_limit)})",
        f"Overage:         {calls(bill.overage_units)} calls × {unit_cost(bill.overage_unit_cost, bill.currency)}",
        f"Amount:          {bill_amount(bill)}",
        f"Approval:        {'two-step (CSM, then Sales)' if customer.require_csm_approval else 'one-step'}"
        + (f", CSM {customer.csm.name}" if customer.csm else ""),
        f"Billing email:   {customer.billing_email}",
        f"Invoice:         {invoice_line(bill)}",
        *(f"Credit note:     {line}" for line in credit_lines(bill)),
    ]


def action_line(action: BillAction) -> str:
    who = action.stakeholder.name if action.stakeholder else "scheduler"
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
