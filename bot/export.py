"""A month's bills as a CSV file for Finance: exact decimals, UTF-8, one row per bill with its approval steps."""

from __future__ import annotations

import csv
import io
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from bot import approval, permissions
from bot.bills import with_history
from bot.formatting import approval_lines
from bot.invoices import credited
from bot.money import format_money, plain
from bot.periods import Period
from bot.permissions import Power
from db.models import Bill, User

HEADER = (
    "bill_id",
    "customer",
    "period",
    "api_usage",
    "monthly_api_limit",
    "overage_units",
    "overage_unit_cost",
    "overage_amount",
    "currency",
    "amount",
    "status",
    "billing_email",
    "created_at",
    "updated_at",
    "invoice_number",
    "issue_date",
    "due_date",
    "credited",
    "approvals",
)
APPROVALS_SEPARATOR = "; "
# A cell starting with one of these is run as a formula by spreadsheet programs.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def bills_csv_filename(period: Period) -> str:
    return f"bills-{period}.csv"


def bills_csv(*, session: Session, period: Period, actor: User) -> bytes:
    """The month's bills by number: unit costs with 6 places, amounts with their currency's places (as a plain
    number for programs, and as people read it), never through a float; Finance only.
    """
    permissions.require(actor, Power.EXPORT)
    bills = session.scalars(
        with_history(select(Bill).where(Bill.year == period.year, Bill.month == period.month))
        .options(selectinload(Bill.credit_notes))
        .order_by(Bill.id)
    )
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(HEADER)
    for bill in bills:
        writer.writerow(
            (
                bill.id,
                _text_cell(bill.customer.name),
                str(period),
                bill.api_usage,
                bill.monthly_api_limit,
                bill.overage_units,
                f"{bill.overage_unit_cost:.6f}",
                plain(bill.overage_amount, bill.currency),
                bill.currency,
                format_money(bill.overage_amount, bill.currency),
                bill.status.value,
                _text_cell(bill.customer.billing_email),
                _moment(bill.created_at),
                _moment(bill.updated_at),
                bill.invoice_number or "",
                bill.issue_date.isoformat() if bill.issue_date else "",
                bill.due_date.isoformat() if bill.due_date else "",
                plain(credited(bill), bill.currency) if bill.credit_notes else "",
                _text_cell(APPROVALS_SEPARATOR.join(approval_lines(approval.progress(bill)))),
            )
        )
    return buffer.getvalue().encode("utf-8")


def _text_cell(text: str) -> str:
    """Free text that a spreadsheet shows as text even when it looks like a formula."""
    return f"'{text}" if text.startswith(_FORMULA_STARTS) else text


def _moment(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
