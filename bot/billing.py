"""The monthly billing rules (SPEC §3), computed by the database in a few set-based statements."""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

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
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from bot import approval, outbox, permissions
from bot.accounts import check_active
from bot.errors import MonthNotEnded
from bot.money import add_up, format_totals, places
from bot.periods import Period
from bot.permissions import Power
from db.models import ActionOrigin, ActionType, Bill, BillAction, BillStatus, Customer, Usage, User, utcnow
from db.types import AMOUNT, UNIT_COST, UTCDateTime

FREE_MONTHS = 3
MONTH_LOCK_NAMESPACE = 0x42494C4C  # "BILL": PostgreSQL advisory locks of one month's bills
# The largest counts accepted (the largest unit cost is bot.parsing's): an amount still fits both databases.
MAX_CALLS = 10**12  # API calls in a month, and monthly limits
# PostgreSQL advisory locks taken by imports of customers and of usage (bot/imports.py).
IMPORT_LOCK_NAMESPACE = 0x494D5054  # "IMPT"
IMPORT_LOCKS = (1, 2)


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
    totals: dict[str, Decimal] = field(default_factory=dict)  # per currency: never added across currencies
    skipped: dict[SkipReason, int] = field(default_factory=lambda: {reason: 0 for reason in SkipReason})
    auto_approved: int = 0  # created bills the approval policy approved when drafted

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def lines(self) -> list[str]:
        """The summary as a person reads it."""
        bills = "bill" if self.created == 1 else "bills"
        head = f"{self.period.label}: {self.created} {bills} created"
        if self.created:
            head += f", total {format_totals(self.totals)}"  # per currency, never added across currencies
        if self.auto_approved:
            head += f" ({self.auto_approved} approved automatically by the approval policy)"
        if not self.skipped_total:
            return [head]
        customers = "customer" if self.skipped_total == 1 else "customers"
        reasons = ", ".join(f"{reason.value} {count}" for reason, count in self.skipped.items() if count)
        return [head, f"{self.skipped_total} {customers} skipped: {reasons}"]


def _places_by_currency(currency, currencies: set[str]):
    """The decimal places of each row's currency (2 unless one of `currencies` says otherwise), in SQL."""
    other = {code: places(code) for code in sorted(currencies) if places(code) != 2}
    return case(other, value=currency, else_=2) if other else literal(2)


def _amount_expression(dialect: str, units, unit_cost, currency, currencies: set[str]):
    """The SQL for `bot.money.overage_amount`: units × unit cost, rounded half-up to the currency's minor unit.

    PostgreSQL rounds NUMERIC half away from zero, which is half-up for these non-negative values.
    SQLite holds the unit cost in millionths and the amount in thousandths (db.types.Money), so the amount
    is integer arithmetic: with a minor unit of D millionths (10⁴ for cents) and cost = q·D + r,
    round(units · cost / D) = units·q + round(units·r / D), which then counts thousandths; no partial
    product leaves 64 bits (units ≤ 10¹², r < 10⁶, q ≤ 10⁹ / D).
    """
    digits = _places_by_currency(currency, currencies)
    if dialect == "sqlite":
        millionths = type_coerce(unit_cost, BigInteger)
        unit = case({0: 1_000_000, 1: 100_000, 3: 1_000}, value=digits, else_=10_000)  # D
        thousandths_per_unit = case({0: 1_000, 1: 100, 3: 1}, value=digits, else_=10)
        minor_units = units * (millionths // unit) + (units * (millionths % unit) + unit // 2) // unit
        return minor_units * thousandths_per_unit
    return func.round(type_coerce(units, Numeric) * type_coerce(unit_cost, Numeric(18, 6)), digits)


def _candidates(dialect: str, period: Period, currencies: set[str], customer_ids: Collection[int] | None):
    """Every customer (or those of `customer_ids`) with the usage, the would-be bill and the rule that decides
    it, as a subquery."""
    units = Usage.api_usage - Customer.monthly_api_limit
    amount = _amount_expression(dialect, units, Customer.overage_unit_cost, Customer.currency, currencies)
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
    query = (
        select(
            Customer.id.label("customer_id"),
            Usage.api_usage.label("api_usage"),
            Customer.monthly_api_limit.label("monthly_api_limit"),
            units.label("overage_units"),
            type_coerce(Customer.overage_unit_cost, UNIT_COST).label("overage_unit_cost"),
            type_coerce(amount, AMOUNT).label("overage_amount"),
            Customer.currency.label("currency"),
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
    )
    if customer_ids is not None:
        query = query.where(Customer.id.in_(sorted(customer_ids)))
    return query.subquery("candidates")


def _draft_actions(
    new_bills, actor: User | None, origin: ActionOrigin, now, policy: approval.Policy, comment: str | None
):
    """INSERT the DRAFT action of every bill that `new_bills` (a SELECT of id and customer_id) yields.

    Each records what the bill's approval follows from now on: the policy's rules, and whether its
    customer requires the CSM's approval; `comment` says why it was drafted when not by generation.
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
            literal(comment, String) if comment else null(),
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
        if session.get_bind().dialect.name == "postgresql":
            # Two generations of the same month wait for each other instead of racing on the unique key,
            # and imports (which take the same locks) cannot change customers or usage between the
            # summary and the insert below. SQLite's BEGIN IMMEDIATE already serialises all writers.
            lock_month(session, period)
            for key in IMPORT_LOCKS:
                session.execute(select(func.pg_advisory_xact_lock(IMPORT_LOCK_NAMESPACE, key)))
        summary = create_bills(session, period, actor, origin=origin)
        if before_commit is not None:
            before_commit()
    return summary


def lock_month(session: Session, period: Period) -> None:
    """On PostgreSQL, wait for (and then hold off) anything else creating bills of `period`."""
    lock_months(session, {period})


def lock_months(session: Session, periods: Collection[Period]) -> None:
    """`lock_month` for several months at once, in order (so that two callers never wait for each other)."""
    if session.get_bind().dialect.name != "postgresql" or not periods:
        return
    keys = sorted(period.year * 100 + period.month for period in periods)
    ordered = select(func.unnest(literal(keys, ARRAY(Integer))).label("key")).order_by("key").subquery()
    session.execute(select(func.count(func.pg_advisory_xact_lock(MONTH_LOCK_NAMESPACE, ordered.c.key))))


def create_bills(
    session: Session,
    period: Period,
    actor: User | None,
    *,
    origin: ActionOrigin = ActionOrigin.SCHEDULER,
    customer_ids: Collection[int] | None = None,
    cause: str | None = None,
) -> GenerationSummary:
    """Create the bills of `period` that the rules call for, in the caller's transaction.

    Without `customer_ids`, for every customer, with the month's summary in the bills channel; with them,
    for those customers alone (a usage correction), their messages without a summary, and `cause` in each
    DRAFT action. Each bill follows the approval policy in force; one below its auto-approval amount is
    approved by the policy at once.
    """
    dialect = session.get_bind().dialect.name
    currencies = set(session.scalars(select(Customer.currency).distinct()))
    candidates = _candidates(dialect, period, currencies, customer_ids)
    summary = GenerationSummary(period)
    tally = select(
        candidates.c.reason,
        candidates.c.currency,
        func.count(),
        type_coerce(func.sum(candidates.c.overage_amount), AMOUNT),
    ).group_by(candidates.c.reason, candidates.c.currency)
    billed = []
    for reason, currency, count, total in session.execute(tally):
        if reason == BILLABLE:
            summary.created += count
            billed.append((currency, total))
        else:
            summary.skipped[SkipReason(reason)] += count
    summary.totals = add_up(billed)
    if not summary.created:
        return summary

    now = utcnow()
    policy = approval.in_force()
    if policy.auto_approve_below is not None:
        summary.auto_approved = session.scalar(
            select(func.count()).where(
                candidates.c.reason == BILLABLE, candidates.c.overage_amount < policy.auto_approve_below
            )
        )
    insert_bills = insert(Bill).from_select(
        [
            "customer_id", "year", "month", "api_usage", "monthly_api_limit", "overage_units",
            "overage_unit_cost", "overage_amount", "currency", "status", "created_at", "updated_at",
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
            candidates.c.currency,
            literal(BillStatus.DRAFT.value, String),
            literal(now, UTCDateTime),
            literal(now, UTCDateTime),
        )
        .where(candidates.c.reason == BILLABLE)
        # Bills are numbered in customer order, whichever plan the database picks for the join.
        .order_by(candidates.c.customer_id),
    )

    def announce(new_bill_ids) -> None:
        if customer_ids is None:
            outbox.bills_created(
                session, new_bill_ids, period=str(period), summary=summary.lines(), created=summary.created
            )
        else:
            outbox.bill_messages(session, new_bill_ids)

    if dialect == "postgresql":
        # One statement: the actions come from the bills insert's RETURNING, and the messages to post
        # from the actions insert's. (A NOT EXISTS over bill_actions is planned as a nested loop while
        # the table's statistics say it is empty.)
        new_bills = insert_bills.returning(Bill.id, Bill.customer_id).cte("new_bills")
        drafted = (
            _draft_actions(select(new_bills.c.id, new_bills.c.customer_id), actor, origin, now, policy, cause)
            .returning(BillAction.bill_id)
            .cte("drafted")
        )
        announce(select(drafted.c.bill_id.label("id")))
    else:
        # SQLite has no INSERT inside WITH: find the new bills by their missing DRAFT action.
        session.execute(insert_bills)
        new_bills = select(Bill.id, Bill.customer_id).where(
            Bill.year == period.year,
            Bill.month == period.month,
            ~exists().where(BillAction.bill_id == Bill.id),
        )
        announce(new_bills)
        session.execute(_draft_actions(new_bills, actor, origin, now, policy, cause))
    _auto_approve(session, period, now, policy)
    return summary
