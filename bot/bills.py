"""Reading bills: one by number, or a month's list."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload, selectinload

from bot.errors import InvalidInput, NotFound
from bot.periods import Period
from db.models import Bill, BillAction, BillStatus, Customer


def parse_status(text: str) -> BillStatus:
    try:
        return BillStatus(text.strip().upper())
    except ValueError:
        choices = ", ".join(status.value for status in BillStatus)
        raise InvalidInput(f"unknown status {text!r}; choose one of {choices}") from None


def parse_bill_id(text: str | int) -> int:
    digits = str(text).strip().removeprefix("#")
    if not digits.isdigit() or not 0 < int(digits) < 2**63:
        raise InvalidInput(f"{text!r} is not a bill number (bill numbers look like 12)")
    return int(digits)


def get_bill(*, session: Session, bill_id: int) -> Bill:
    """The bill with its customer and full history loaded."""
    bill = session.scalar(
        select(Bill)
        .where(Bill.id == bill_id)
        .options(
            joinedload(Bill.customer).joinedload(Customer.csm),
            joinedload(Bill.sending_by),
            selectinload(Bill.actions).joinedload(BillAction.stakeholder),
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
