"""Reading bills: one by number, or a month's list."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload, selectinload

from bot.errors import InvalidInput, NotFound
from bot.periods import Period
from bot.text import shown
from db.models import Bill, BillAction, BillStatus, Customer


# ASCII digits only: str.isdigit() also takes "²", which int() refuses, and int() refuses over 4,300 digits.
_ROW_ID = re.compile(r"[0-9]{1,10}")
MAX_ROW_ID = 2**31 - 1  # ids are INTEGER columns; PostgreSQL refuses to compare them with a larger number


def parse_status(text: str) -> BillStatus:
    try:
        return BillStatus(text.strip().upper())
    except ValueError:
        choices = ", ".join(status.value for status in BillStatus)
        raise InvalidInput(f"unknown status {shown(text)}; choose one of {choices}") from None


def row_id(text: str) -> int | None:
    """The number of a stored row (a bill, an action) written in digits, or None when `text` cannot be one."""
    if not _ROW_ID.fullmatch(text) or not 0 < int(text) <= MAX_ROW_ID:
        return None
    return int(text)


def parse_bill_id(text: str | int) -> int:
    bill_id = row_id(str(text).strip().removeprefix("#"))
    if bill_id is None:
        raise InvalidInput(f"{shown(str(text))} is not a bill number (bill numbers look like 12)")
    return bill_id


def get_bill(*, session: Session, bill_id: int) -> Bill:
    """The bill with its customer, full history and credit notes loaded."""
    bill = session.scalar(
        select(Bill)
        .where(Bill.id == bill_id)
        .options(
            joinedload(Bill.customer).joinedload(Customer.csm),
            joinedload(Bill.sending_by),
            selectinload(Bill.actions).joinedload(BillAction.stakeholder),
            selectinload(Bill.actions).joinedload(BillAction.credit_note),
            selectinload(Bill.credit_notes),
        )
    )
    if bill is None:
        raise NotFound(f"there is no bill #{bill_id}")
    return bill


def list_bills(*, session: Session, status: BillStatus | None = None, period: Period | None = None) -> list[Bill]:
    query = select(Bill).options(joinedload(Bill.customer)).order_by(Bill.year, Bill.month, Bill.id)
    if status is not None:
        query = query.where(Bill.status == status)
    if period is not None:
        query = query.where(Bill.year == period.year, Bill.month == period.month)
    return list(session.scalars(query))
