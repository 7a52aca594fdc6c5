"""Reading bills: one by number, or a month's list."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload, selectinload

from bot.errors import InvalidInput, NotFound
from bot.periods import Period
from bot.text import shown
from db.models import Bill, BillAction, BillStatus, Customer, User

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


def with_history(query):
    """`query` of bills loading what approval progress and available actions read, in a fixed number of queries."""
    return query.options(
        joinedload(Bill.customer).joinedload(Customer.csm).joinedload(User.delegate),
        selectinload(Bill.actions).joinedload(BillAction.stakeholder),
    )


def get_bill(*, session: Session, bill_id: int) -> Bill:
    """The bill with its customer, full history and credit notes loaded."""
    bill = session.scalar(
        with_history(select(Bill).where(Bill.id == bill_id)).options(
            joinedload(Bill.sending_by),
            selectinload(Bill.actions).joinedload(BillAction.credit_note),
            selectinload(Bill.credit_notes),
        )
    )
    if bill is None:
        raise NotFound(f"there is no bill #{bill_id}")
    return bill


def list_bills(*, session: Session, status: BillStatus | None = None, period: Period | None = None) -> list[Bill]:
    query = select(Bill).options(joinedload(Bill.customer)).order_by(Bill.year, Bill.month, Bill.id)
    return list(session.scalars(_matching(query, status, period)))


def _matching(query, status: BillStatus | None, period: Period | None, customer_id: int | None = None):
    if status is not None:
        query = query.where(Bill.status == status)
    if period is not None:
        query = query.where(Bill.year == period.year, Bill.month == period.month)
    if customer_id is not None:
        query = query.where(Bill.customer_id == customer_id)
    return query


@dataclass(frozen=True)
class BillPage:
    bills: list[Bill]  # oldest month first, then by number
    total: int  # bills matching, on every page
    page: int
    per_page: int


def page_of_bills(
    *,
    session: Session,
    status: BillStatus | None = None,
    period: Period | None = None,
    customer_id: int | None = None,
    page: int = 1,
    per_page: int = 50,
) -> BillPage:
    """One page (from 1) of the bills matching every filter given."""
    total = session.scalar(_matching(select(func.count()).select_from(Bill), status, period, customer_id)) or 0
    query = (
        select(Bill)
        .options(joinedload(Bill.customer))
        .order_by(Bill.year, Bill.month, Bill.id)
        .offset((page - 1) * per_page)
        .limit(per_page)
    )
    bills = list(session.scalars(_matching(query, status, period, customer_id)))
    return BillPage(bills=bills, total=total, page=page, per_page=per_page)
