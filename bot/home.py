"""What each person's App Home shows: Finance the latest month and the bills to send, approvers their queue."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select, type_coerce
from sqlalchemy.orm import Session, joinedload

from bot import approval, permissions
from bot.approval import Progress
from bot.bills import with_history
from bot.blocks import home as home_blocks
from bot.blocks import view_blocks
from bot.money import add_up
from bot.periods import Period
from bot.permissions import Power
from bot.workflow import available_actions, latest_change
from db.models import (
    ActionType,
    Bill,
    BillStatus,
    Outbox,
    OutboxStatus,
    User,
)
from db.types import AMOUNT

# Each listed bill takes one or two blocks; Slack allows 100 per view.
MAX_LISTED_BILLS = 30
MAX_LISTED_SENDING = 15  # a bill whose send is not confirmed takes two blocks: its summary and its buttons
MAX_FINANCE_WAITING = 5  # bills waiting for a Finance approval (a policy threshold), two blocks each
MAX_FAILED_SHOWN = 5
APPROVER_BUTTONS = frozenset({ActionType.APPROVE, ActionType.REJECT})
FINANCE_BUTTONS = frozenset({ActionType.SEND})
_CHUNK = 500  # bill ids per IN list


@dataclass(frozen=True)
class StatusTotal:
    status: BillStatus
    count: int
    totals: dict[str, Decimal]  # per currency, never added across currencies


@dataclass(frozen=True)
class ListedBill:
    """A bill on someone's Home, with its approval progress and the buttons to offer for it."""

    bill: Bill
    state: Progress
    actions: frozenset[ActionType]


@dataclass(frozen=True)
class FinanceHome:
    user: User
    period: Period | None  # the latest month that has bills; None before the first generation
    next_period: Period  # the month `/bill generate` would bill today
    totals: list[StatusTotal]
    to_send: list[ListedBill]  # the oldest FINAL bills, at most MAX_LISTED_BILLS
    to_send_count: int
    failed: list[Outbox]  # Slack messages that could not be delivered, newest first (a few)
    failed_count: int
    sending: list[Bill]  # FINAL bills whose email is on its way or not confirmed, at most MAX_LISTED_SENDING
    sending_count: int
    approvals: ApproverHome  # the DRAFT bills waiting for this person's approval, at most MAX_FINANCE_WAITING


@dataclass(frozen=True)
class ApproverHome:
    user: User
    waiting: list[ListedBill]  # the bills waiting for this user, oldest first, at most MAX_LISTED_BILLS
    waiting_count: int


def home_view(*, session: Session, user: User | None, today: date) -> dict:
    """The views.publish payload of `user`'s App Home (an unlinked Slack user when None)."""
    if user is None:
        blocks = home_blocks.unlinked_home()
    elif permissions.allowed(user, Power.SEND):
        blocks = home_blocks.finance_home(finance_home(session=session, user=user, today=today))
    else:
        blocks = home_blocks.approver_home(approver_home(session=session, user=user))
    return {"type": "home", "blocks": view_blocks(blocks)}


def finance_home(*, session: Session, user: User, today: date) -> FinanceHome:
    period = latest_billed_period(session=session)
    totals = status_totals(session=session, period=period) if period else []
    final = select(Bill).where(Bill.status == BillStatus.FINAL, Bill.sending_started_at.is_(None))
    to_send_count = session.scalar(select(func.count()).select_from(final.subquery())) or 0
    bills = session.scalars(
        with_history(final).order_by(Bill.year, Bill.month, Bill.id).limit(MAX_LISTED_BILLS)
    ).all()
    in_flight = select(Bill).where(Bill.status == BillStatus.FINAL, Bill.sending_started_at.is_not(None))
    sending_count = session.scalar(select(func.count()).select_from(in_flight.subquery())) or 0
    sending = session.scalars(
        in_flight.options(joinedload(Bill.customer), joinedload(Bill.sending_by))
        .order_by(Bill.sending_started_at, Bill.id)
        .limit(MAX_LISTED_SENDING)
    ).all()
    return FinanceHome(
        user=user,
        period=period,
        next_period=Period.containing(today).shifted(-1),
        totals=totals,
        to_send=[_listed(bill, user, FINANCE_BUTTONS) for bill in bills],
        to_send_count=to_send_count,
        failed=list(session.scalars(select(Outbox).where(Outbox.status == OutboxStatus.FAILED)
                                    .order_by(Outbox.id.desc()).limit(MAX_FAILED_SHOWN))),
        failed_count=session.scalar(select(func.count()).select_from(Outbox)
                                    .where(Outbox.status == OutboxStatus.FAILED)) or 0,
        sending=list(sending),
        sending_count=sending_count,
        approvals=approver_home(session=session, user=user, limit=MAX_FINANCE_WAITING),
    )


def approver_home(*, session: Session, user: User, limit: int = MAX_LISTED_BILLS) -> ApproverHome:
    """The DRAFT bills whose next approval `user` may give, oldest first (at most `limit` of them listed)."""
    waiting = waiting_for(session=session, user=user)
    shown = session.scalars(
        with_history(select(Bill).where(Bill.id.in_(waiting[:limit]))).execution_options(
            populate_existing=True  # some were loaded above without the stakeholders this view names
        )
    ).all()
    by_id = {bill.id: bill for bill in shown}
    listed = [
        _listed(by_id[bill_id], user, APPROVER_BUTTONS) for bill_id in waiting[:limit] if bill_id in by_id
    ]
    return ApproverHome(user=user, waiting=listed, waiting_count=len(waiting))


def reminders_due(*, session: Session, user: User, now: datetime, after_days: int) -> ApproverHome | None:
    """The bills that have waited for `user`'s approval more than `after_days` days; None when none has."""
    cutoff = now - timedelta(days=after_days)
    due = [
        _listed(bill, user, APPROVER_BUTTONS)
        for bill, state in _drafts(session)
        if state.may_approve(user) and latest_change(bill).created_at <= cutoff
    ]
    return ApproverHome(user=user, waiting=due, waiting_count=len(due)) if due else None


def waiting_for(*, session: Session, user: User) -> list[int]:
    """The ids of the DRAFT bills waiting for an approval `user` may give, oldest first."""
    return [bill.id for bill, state in _drafts(session) if state.may_approve(user)]


def _drafts(session: Session) -> list[tuple[Bill, Progress]]:
    """Every DRAFT bill, loaded with its history, and its approval progress; oldest first.

    Read once per transaction: a Homes refresh and a reminder run ask it for every person in one session.
    """
    transaction = session.get_transaction()
    cached = session.info.get("draft_progress")
    if transaction is not None and cached is not None and cached[0] is transaction:
        return cached[1]
    today = approval.today()
    drafts = session.scalars(
        select(Bill.id).where(Bill.status == BillStatus.DRAFT).order_by(Bill.year, Bill.month, Bill.id)
    ).all()
    found = []
    for start in range(0, len(drafts), _CHUNK):
        chunk = drafts[start : start + _CHUNK]
        bills = {bill.id: bill for bill in session.scalars(with_history(select(Bill).where(Bill.id.in_(chunk))))}
        found += [(bills[bill_id], approval.progress(bills[bill_id], today)) for bill_id in chunk if bill_id in bills]
    session.info["draft_progress"] = (session.get_transaction(), found)
    return found


def latest_billed_period(*, session: Session) -> Period | None:
    row = session.execute(
        select(Bill.year, Bill.month).order_by(Bill.year.desc(), Bill.month.desc()).limit(1)
    ).first()
    return Period(row.year, row.month) if row else None


def status_totals(*, session: Session, period: Period) -> list[StatusTotal]:
    """Count and total amounts (per currency) of the month's bills for every status, in workflow order."""
    rows = session.execute(
        select(Bill.status, Bill.currency, func.count(), type_coerce(func.sum(Bill.overage_amount), AMOUNT))
        .where(Bill.year == period.year, Bill.month == period.month)
        .group_by(Bill.status, Bill.currency)
    ).all()
    return [
        StatusTotal(
            status,
            sum(count for found, _, count, _ in rows if found is status),
            add_up((currency, total) for found, currency, _, total in rows if found is status),
        )
        for status in BillStatus
    ]



def _listed(bill: Bill, user: User, offered: frozenset[ActionType]) -> ListedBill:
    return ListedBill(bill, approval.progress(bill), frozenset(available_actions(bill, user) & offered))
