"""The monthly billing rules (SPEC §3), computed by the database in a few set-based statements."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import (
    BigInteger,
    Integer,
    Numeric,
    String,
    and_,
    case,
    exists,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.orm import Session

from bot import approval, outbox, permissions
from bot.accounts import check_active
from bot.errors import MonthNotEnded
from bot.periods import Period
from bot.permissions import Power
from db.models import ActionOrigin, ActionType, Bill, BillAction, BillStatus, Customer, Usage, User, utcnow
from db.types import AMOUNT, UNIT_COST, UTCDateTime

FREE_MONTHS = 3
CENT = Decimal("0.01")
# The largest counts accepted (the largest unit cost is bot.parsing's): an amount still fits both databases.
MAX_CALLS = 10**12  # API calls in a month, and monthly limits
# PostgreSQL advisory locks taken by imports of customers and of usage (bot/imports.py).
IMPORT_LOCK_NAMESPACE = 0x494D5054  # "IMPT"
IMPORT_LOCKS = (1, 2)


def overage_amount(units: int, unit_cost: Decimal) -> Decimal:
    """units × unit cost, rounded half-up to the cent."""
    return (Decimal(units) * unit_cost).quantize(CENT, rounding=ROUND_HALF_UP)


class SkipReason(str, enum.Enum):
    """Why a customer got no bill for a month, in the order the rules are checked."""

    ALREADY_BILLED = "already billed"
    NOT_UNDER_CONTRACT = "not under contract"
    FIRST_MONTHS = "first three months"
    NO_USAGE = "no usage recorded"
    WITHIN_LIMIT = "within limit"
    BELOW_ONE_CENT = "below one cent"


BILLABLE = "billable"


@dataclass
class GenerationSummary:
    period: Period
    created: int = 0
    total: Decimal = Decimal("0.00")
    skipped: dict[SkipReason, int] = field(default_factory=lambda: {reason: 0 for reason in SkipReason})
    auto_approved: int = 0  # created bills the approval policy approved when drafted

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def lines(self) -> list[str]:
        """The summary as a person reads it."""
        bills = "bill" if self.created == 1 else "bills"
        head = f"{self.period.label}: {self.created} {bills} created, total {self.total:,.2f}"
        if self.auto_approved:
            head += f" ({self.auto_approved} approved automatically by the approval policy)"
        if not self.skipped_total:
            return [head]
        customers = "customer" if self.skipped_total == 1 else "customers"
        reasons = ", ".join(f"{reason.value} {count}" for reason, count in self.skipped.items() if count)
        return [head, f"{self.skipped_total} {customers} skipped: {reasons}"]


def _amount_expression(dialect: str, units, unit_cost):
    """The SQL for `overage_amount`, exact on each database.

    PostgreSQL rounds NUMERIC half away from zero, which is half-up for these non-negative values.
    SQLite holds the unit cost in millionths and the amount in cents (db.types.Money), so the amount is
    integer arithmetic: with cost = q cents + r ten-thousandths of a cent and units = a·10⁴ + b,
    round(units · cost) = units·q + a·r + round(b·r / 10⁴), where no partial product can leave 64 bits
    unless the amount itself does.
    """
    if dialect == "sqlite":
        millionths = type_coerce(unit_cost, BigInteger)
        whole_cents, remainder = millionths // 10_000, millionths % 10_000
        return (
            units * whole_cents
            + (units // 10_000) * remainder
            + ((units % 10_000) * remainder + 5_000) // 10_000
        )
    return func.round(type_coerce(units, Numeric) * type_coerce(unit_cost, Numeric(18, 6)), 2)


def _candidates(dialect: str, period: Period):
    """Every customer with the usage, the would-be bill and the rule that decides it, as a subquery."""
    units = Usage.api_usage - Customer.monthly_api_limit
    amount = _amount_expression(dialect, units, Customer.overage_unit_cost)
    reason = case(
        (Bill.id.is_not(None), SkipReason.ALREADY_BILLED.value),
        (
            or_(
                Customer.start_date > period.last_day,
                and_(Customer.end_date.is_not(None), Customer.end_date < period.first_day),
            ),
            SkipReason.NOT_UNDER_CONTRACT.value,
        ),
        (Customer.start_date >= period.shifted(1 - FREE_MONTHS).first_day, SkipReason.FIRST_MONTHS.value),
        (Usage.id.is_(None), SkipReason.NO_USAGE.value),
        (units <= 0, SkipReason.WITHIN_LIMIT.value),
        (amount <= 0, SkipReason.BELOW_ONE_CENT.value),
        else_=BILLABLE,
    )
    return (
        select(
            Customer.id.label("customer_id"),
            Usage.api_usage.label("api_usage"),
            Customer.monthly_api_limit.label("monthly_api_limit"),
            units.label("overage_units"),
            type_coerce(Customer.overage_unit_cost, UNIT_COST).label("overage_unit_cost"),
            type_coerce(amount, AMOUNT).label("overage_amount"),
            reason.label("reason"),
        )
        .outerjoin(
            Usage,
            and_(Usage.customer_id == Customer.id, Usage.year == period.year, Usage.month == period.month),
        )
        .outerjoin(
            Bill,
            and_(Bill.customer_id == Customer.id, Bill.year == period.year, Bill.month == period.month),
        )
        .subquery("candidates")
    )


def _draft_actions(new_bills, actor: User | None, origin: ActionOrigin, now, policy: approval.Policy):
    """INSERT the DRAFT action of every bill that `new_bills` (a SELECT of id and customer_id) yields.

    Each records what the bill's approval follows from now on: the policy's rules, and whether its
    customer requires the CSM's approval.
    """
    bills = new_bills.subquery("new_bills_drafted")
    return insert(BillAction).from_select(
        ["bill_id", "stakeholder_id", "origin", "action", "comment", "status_before", "status_after", "policy",
         "require_csm_approval", "created_at"],
        select(
            bills.c.id,
            literal(actor.id if actor else None, Integer),
            literal(None if actor else origin.value, String),
            literal(ActionType.DRAFT.value, String),
            null(),
            null(),
            literal(BillStatus.DRAFT.value, String),
            literal(policy.to_json(), BillAction.policy.type) if not policy.is_default else null(),
            Customer.require_csm_approval,
            literal(now, UTCDateTime),
        ).join_from(bills, Customer, Customer.id == bills.c.customer_id),
    )


def _auto_approve(session: Session, period: Period, now, policy: approval.Policy) -> None:
    """Approve, as the policy, the month's bills drafted at `now` below its auto-approval amount (set-based)."""
    if policy.auto_approve_below is None:
        return
    small = and_(
        Bill.year == period.year,
        Bill.month == period.month,
        Bill.created_at == now,
        Bill.status == BillStatus.DRAFT,
        Bill.overage_amount < policy.auto_approve_below,
    )
    session.execute(
        insert(BillAction).from_select(
            ["bill_id", "stakeholder_id", "origin", "action", "comment", "status_before", "status_after",
             "created_at"],
            select(
                Bill.id,
                null(),
                literal(ActionOrigin.POLICY.value, String),
                literal(ActionType.APPROVE.value, String),
                literal(approval.auto_approval_comment(policy), String),
                literal(BillStatus.DRAFT.value, String),
                literal(BillStatus.FINAL.value, String),
                literal(now, UTCDateTime),
            ).where(small).order_by(Bill.id),
        )
    )
    session.execute(
        update(Bill).where(small).values(status=BillStatus.FINAL).execution_options(synchronize_session=False)
    )
    outbox.thread_replies(
        session,
        select(BillAction.id, BillAction.bill_id).join(Bill, Bill.id == BillAction.bill_id).where(
            Bill.year == period.year,
            Bill.month == period.month,
            BillAction.action == ActionType.APPROVE,
            BillAction.created_at == now,
            BillAction.stakeholder_id.is_(None),
        ),
    )


def check_month_ended(period: Period, today: date) -> None:
    if period.shifted(1).first_day > today:
        raise MonthNotEnded(
            f"{period.label} has not ended yet; bills can be generated from {period.shifted(1).first_day:%Y-%m-%d}"
        )


def generate_month(
    *,
    session: Session,
    period: Period,
    actor: User | None,
    today: date,
    origin: ActionOrigin = ActionOrigin.SCHEDULER,
    before_commit: Callable[[], None] | None = None,
) -> GenerationSummary:
    """Create the DRAFT bills of `period` and their DRAFT actions in one transaction; idempotent.

    `actor` is the Finance account generating, or None for the scheduler and for an operator acting as
    no account, which `origin` then tells apart. `before_commit` runs inside the transaction, last (the
    scheduler claims its occurrence there).
    """
    if actor is not None:
        check_active(actor)
        permissions.require(actor, Power.GENERATE)
    check_month_ended(period, today)
    with session.begin():
        dialect = session.get_bind().dialect.name
        if dialect == "postgresql":
            # Two generations of the same month wait for each other instead of racing on the unique key,
            # and imports (which take the same locks) cannot change customers or usage between the
            # summary and the insert below. SQLite's BEGIN IMMEDIATE already serialises all writers.
            session.execute(select(func.pg_advisory_xact_lock(0x42494C4C, period.year * 100 + period.month)))
            for key in IMPORT_LOCKS:
                session.execute(select(func.pg_advisory_xact_lock(IMPORT_LOCK_NAMESPACE, key)))
        candidates = _candidates(dialect, period)
        summary = GenerationSummary(period)
        tally = select(
            candidates.c.reason, func.count(), type_coerce(func.sum(candidates.c.overage_amount), AMOUNT)
        ).group_by(candidates.c.reason)
        for reason, count, total in session.execute(tally):
            if reason == BILLABLE:
                summary.created, summary.total = count, total
            else:
                summary.skipped[SkipReason(reason)] = count
        if not summary.created:
            if before_commit is not None:
                before_commit()
            return summary

        now = utcnow()
        policy = approval.in_force()
        insert_bills = insert(Bill).from_select(
            [
                "customer_id", "year", "month", "api_usage", "monthly_api_limit", "overage_units",
                "overage_unit_cost", "overage_amount", "status", "created_at", "updated_at",
            ],
            select(
                candidates.c.customer_id,
                literal(period.year, Integer),
                literal(period.month, Integer),
                candidates.c.api_usage,
                candidates.c.monthly_api_limit,
                candidates.c.overage_units,
                candidates.c.overage_unit_cost,
                candidates.c.overage_amount,
                literal(BillStatus.DRAFT.value, String),
                literal(now, UTCDateTime),
                literal(now, UTCDateTime),
            )
            .where(candidates.c.reason == BILLABLE)
            # Bills are numbered in customer order, whichever plan the database picks for the join.
            .order_by(candidates.c.customer_id),
        )
        if policy.auto_approve_below is not None:
            summary.auto_approved = session.scalar(
                select(func.count()).where(
                    candidates.c.reason == BILLABLE, candidates.c.overage_amount < policy.auto_approve_below
                )
            )
        announce = {"period": str(period), "summary": summary.lines(), "created": summary.created}
        if dialect == "postgresql":
            # One statement: the actions come from the bills insert's RETURNING, and the messages to post
            # from the actions insert's. (A NOT EXISTS over bill_actions is planned as a nested loop while
            # the table's statistics say it is empty.)
            new_bills = insert_bills.returning(Bill.id, Bill.customer_id).cte("new_bills")
            drafted = (
                _draft_actions(select(new_bills.c.id, new_bills.c.customer_id), actor, origin, now, policy)
                .returning(BillAction.bill_id)
                .cte("drafted")
            )
            outbox.bills_created(session, select(drafted.c.bill_id.label("id")), **announce)
        else:
            # SQLite has no INSERT inside WITH: find the new bills by their missing DRAFT action.
            session.execute(insert_bills)
            new_bills = select(Bill.id, Bill.customer_id).where(
                Bill.year == period.year,
                Bill.month == period.month,
                ~exists().where(BillAction.bill_id == Bill.id),
            )
            outbox.bills_created(session, new_bills, **announce)
            session.execute(_draft_actions(new_bills, actor, origin, now, policy))
        _auto_approve(session, period, now, policy)
        if before_commit is not None:
            before_commit()
    return summary

