"""Generating a month's bills (SPEC §3), on the real database: who is billed, for how much, and why not."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from bot.billing import GenerationSummary, SkipReason, generate_month
from bot.money import add_up, overage_amount
from bot.errors import MonthNotEnded
from bot.periods import Period
from db.models import ActionType, Bill, BillAction, BillStatus, Customer, Role, Usage, User
from tests.factories import add_customer, add_user, empty_tables

OCTOBER = Period(2026, 10)
AFTER_OCTOBER = date(2026, 11, 1)
LONG_AFTER = date(2030, 1, 1)


def generate(db, period: Period, *, actor: User | None = None, today: date = LONG_AFTER) -> GenerationSummary:
    with db() as session:
        return generate_month(session=session, period=period, actor=actor, today=today)


def bills_by_customer(db, period: Period | None = None) -> dict[str, Bill]:
    query = select(Customer.name, Bill).join(Bill.customer)
    if period is not None:
        query = query.where(Bill.year == period.year, Bill.month == period.month)
    with db() as session:
        return {name: bill for name, bill in session.execute(query)}


def all_bills(db) -> list[Bill]:
    with db() as session:
        return list(session.scalars(select(Bill).order_by(Bill.year, Bill.month)))


def skips(summary: GenerationSummary) -> dict[SkipReason, int]:
    """The reasons that actually skipped someone, so that tests can compare whole dictionaries."""
    return {reason: count for reason, count in summary.skipped.items() if count}


def count_rows(db, model) -> int:
    with db() as session:
        return session.scalar(select(func.count()).select_from(model))


# --- the first three months -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "period, billed",
    [
        (Period(2025, 10), False),
        (Period(2025, 11), False),
        (Period(2025, 12), False),
        (Period(2026, 1), False),
        (Period(2026, 2), True),
        (Period(2026, 3), True),
    ],
)
def test_first_three_months_are_free_across_the_year_end(session, db, period, billed):
    months = [(2025, 10), (2025, 11), (2025, 12), (2026, 1), (2026, 2), (2026, 3)]
    add_customer(session, "Acme", limit=1000, unit_cost="0.01", start=date(2025, 11, 15),
                 usage={month: 1500 for month in months})

    summary = generate(db, period)

    if billed:
        assert summary.created == 1
        assert skips(summary) == {}
        assert bills_by_customer(db, period)["Acme"].overage_amount == Decimal("5.00")
    else:
        expected = SkipReason.NOT_UNDER_CONTRACT if period == Period(2025, 10) else SkipReason.FIRST_MONTHS
        assert summary.created == 0
        assert skips(summary) == {expected: 1}
        assert bills_by_customer(db) == {}


@pytest.mark.parametrize("start", [date(2026, 3, 1), date(2026, 3, 15), date(2026, 3, 31)])
def test_the_month_a_contract_starts_in_is_month_one(session, db, start):
    usage = {(2026, month): 2000 for month in range(2, 8)}
    add_customer(session, "Acme", limit=1000, start=start, usage=usage)

    assert skips(generate(db, Period(2026, 2))) == {SkipReason.NOT_UNDER_CONTRACT: 1}
    for free in (Period(2026, 3), Period(2026, 4), Period(2026, 5)):
        assert skips(generate(db, free)) == {SkipReason.FIRST_MONTHS: 1}
    assert generate(db, Period(2026, 6)).created == 1
    assert generate(db, Period(2026, 7)).created == 1
    assert {(bill.year, bill.month) for bill in all_bills(db)} == {(2026, 6), (2026, 7)}


def test_a_contract_that_ends_during_its_free_months_is_never_billed(session, db):
    add_customer(session, "Short", limit=0, start=date(2026, 1, 20), end=date(2026, 3, 10),
                 usage={(2026, month): 500 for month in range(1, 6)})

    for month in (1, 2, 3):
        assert skips(generate(db, Period(2026, month))) == {SkipReason.FIRST_MONTHS: 1}
    for month in (4, 5):
        assert skips(generate(db, Period(2026, month))) == {SkipReason.NOT_UNDER_CONTRACT: 1}
    assert count_rows(db, Bill) == 0


# --- the end of a contract ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "end, june_billed",
    [
        (date(2026, 5, 15), False),
        (date(2026, 5, 31), False),
        (date(2026, 6, 1), True),
        (date(2026, 6, 30), True),
    ],
)
def test_the_month_a_contract_ends_in_is_billed_and_the_next_is_not(session, db, end, june_billed):
    add_customer(session, "Leaving", limit=1000, unit_cost="0.02", start=date(2025, 1, 1), end=end,
                 usage={(2026, 5): 1100, (2026, 6): 1100, (2026, 7): 1100})

    may = generate(db, Period(2026, 5))
    june = generate(db, Period(2026, 6))
    july = generate(db, Period(2026, 7))

    assert may.created == 1
    assert bills_by_customer(db, Period(2026, 5))["Leaving"].overage_amount == Decimal("2.00")
    if june_billed:
        assert june.created == 1
    else:
        assert june.created == 0
        assert skips(june) == {SkipReason.NOT_UNDER_CONTRACT: 1}
    assert skips(july) == {SkipReason.NOT_UNDER_CONTRACT: 1}
    assert count_rows(db, Bill) == (2 if june_billed else 1)


def test_a_contract_that_has_not_started_yet_is_not_under_contract(session, db):
    add_customer(session, "Future", limit=0, start=date(2026, 11, 1), usage={(2026, 10): 10})

    summary = generate(db, OCTOBER, today=AFTER_OCTOBER)

    assert skips(summary) == {SkipReason.NOT_UNDER_CONTRACT: 1}


# --- the limit and the amount ---------------------------------------------------------------------


def test_usage_exactly_at_the_limit_is_within_limit(session, db):
    add_customer(session, "AtLimit", limit=1000, unit_cost="7.5", usage={(2026, 10): 1000})
    add_customer(session, "Below", limit=1000, unit_cost="7.5", usage={(2026, 10): 0})
    add_customer(session, "ZeroLimit", limit=0, unit_cost="7.5", usage={(2026, 10): 0})

    summary = generate(db, OCTOBER, today=AFTER_OCTOBER)

    assert summary.created == 0
    assert skips(summary) == {SkipReason.WITHIN_LIMIT: 3}
    assert count_rows(db, Bill) == 0


def test_one_call_over_the_limit_is_billed_for_one_unit(session, db):
    add_customer(session, "OneOver", limit=1000, unit_cost="7.5", usage={(2026, 10): 1001})

    summary = generate(db, OCTOBER, today=AFTER_OCTOBER)

    assert summary.created == 1
    assert summary.totals == {"USD": Decimal("7.50")}
    bill = bills_by_customer(db, OCTOBER)["OneOver"]
    assert (bill.api_usage, bill.monthly_api_limit, bill.overage_units) == (1001, 1000, 1)
    assert bill.overage_unit_cost == Decimal("7.5")
    assert bill.overage_amount == Decimal("7.50")


def test_a_bill_snapshots_the_contract_and_starts_as_draft(session, db):
    add_customer(session, "Acme", limit=1_000_000, unit_cost="0.000125", usage={(2026, 10): 1_500_000})

    generate(db, OCTOBER, today=AFTER_OCTOBER)
    with db.begin() as change:
        change.execute(update(Customer).values(monthly_api_limit=5, overage_unit_cost=Decimal("9")))
        change.execute(update(Usage).values(api_usage=7))

    bill = bills_by_customer(db, OCTOBER)["Acme"]
    assert (bill.year, bill.month) == (2026, 10)
    assert (bill.api_usage, bill.monthly_api_limit, bill.overage_units) == (1_500_000, 1_000_000, 500_000)
    assert bill.overage_unit_cost == Decimal("0.000125")
    assert bill.overage_amount == Decimal("62.50")
    assert bill.status is BillStatus.DRAFT
    assert bill.slack_channel is None and bill.slack_ts is None
    assert bill.created_at.tzinfo is not None


@pytest.mark.parametrize(
    "units, unit_cost, amount",
    [
        (1, "0.004", None),
        (1, "0.004999", None),
        (1, "0.000001", None),
        (4999, "0.000001", None),
        (3, "0.0015", None),  # 0.0045
        (7, "0.000125", None),  # 0.000875
        (5, "0", None),
        (1, "0.005", "0.01"),
        (5000, "0.000001", "0.01"),  # 0.005
        (40, "0.000125", "0.01"),  # 0.005
        (5, "0.0025", "0.01"),  # 0.0125
        (1, "0.015", "0.02"),
        (1, "0.025", "0.03"),  # half-up, not to even
        (3, "0.335", "1.01"),  # 1.005
        (1, "0.994999", "0.99"),
        (1, "0.995", "1.00"),
        (12345, "1.234567", "15240.73"),  # 15240.729615
        (1_000_000, "0.000125", "125.00"),
        (1, "999999.999999", "1000000.00"),
        (2_000_000_000, "999999.999999", "1999999999998000.00"),
    ],
)
def test_amount_is_rounded_half_up_to_the_cent(session, db, units, unit_cost, amount):
    add_customer(session, "Acme", limit=100, unit_cost=unit_cost, usage={(2026, 10): 100 + units})

    summary = generate(db, OCTOBER, today=AFTER_OCTOBER)

    bills = bills_by_customer(db, OCTOBER)
    if amount is None:
        assert summary.created == 0
        assert skips(summary) == {SkipReason.BELOW_ONE_CENT: 1}
        assert bills == {}
    else:
        assert summary.created == 1
        assert summary.totals == {"USD": Decimal(amount)}
        assert bills["Acme"].overage_units == units
        assert bills["Acme"].overage_amount == Decimal(amount)


def test_amounts_stay_exact_at_the_largest_usage_and_unit_cost(session, db):
    # 999,999,999,999 × 999.999999 = 999,999,998,999,000.000001 and
    # 987,654,321,987 × 0.009255 = 9,140,740,749.989685: no digit may be lost on either database.
    add_customer(session, "Huge A", limit=0, unit_cost="999.999999", usage={(2026, 10): 999_999_999_999})
    add_customer(session, "Huge B", limit=0, unit_cost="0.009255", usage={(2026, 10): 987_654_321_987})

    summary = generate(db, OCTOBER, today=AFTER_OCTOBER)

    bills = bills_by_customer(db, OCTOBER)
    assert bills["Huge A"].overage_amount == Decimal("999999998999000.00")
    assert bills["Huge B"].overage_amount == Decimal("9140740749.99")
    assert summary.totals == {"USD": Decimal("1000009139739749.99")}


def test_a_customer_without_usage_for_the_month_is_skipped(session, db):
    add_customer(session, "Quiet", limit=0, usage={(2026, 9): 5000, (2026, 11): 5000})

    summary = generate(db, OCTOBER, today=AFTER_OCTOBER)

    assert summary.created == 0
    assert skips(summary) == {SkipReason.NO_USAGE: 1}


def test_the_summary_counts_each_customer_once_by_its_reason(session, db):
    add_customer(session, "Billed A", limit=1000, unit_cost="0.01", usage={(2026, 10): 1500})
    add_customer(session, "Billed B", limit=0, unit_cost="1", usage={(2026, 10): 1_234_567})
    add_customer(session, "Ended", end=date(2026, 9, 30), usage={(2026, 10): 5000})
    add_customer(session, "New", start=date(2026, 9, 1), usage={(2026, 10): 5000})
    add_customer(session, "Quiet")
    add_customer(session, "Small", limit=1000, usage={(2026, 10): 900})
    add_customer(session, "Tiny", limit=1000, unit_cost="0.001", usage={(2026, 10): 1001})

    summary = generate(db, OCTOBER, today=AFTER_OCTOBER)

    assert summary.created == 2
    assert summary.totals == {"USD": Decimal("1234572.00")}
    assert skips(summary) == {
        SkipReason.NOT_UNDER_CONTRACT: 1,
        SkipReason.FIRST_MONTHS: 1,
        SkipReason.NO_USAGE: 1,
        SkipReason.WITHIN_LIMIT: 1,
        SkipReason.BELOW_ONE_CENT: 1,
    }
    assert summary.skipped_total == 5
    assert set(bills_by_customer(db, OCTOBER)) == {"Billed A", "Billed B"}
    assert summary.lines() == [
        "October 2026: 2 bills created, total $1,234,572.00",
        "5 customers skipped: not under contract 1, first three months 1, no usage recorded 1, "
        "within limit 1, below one cent 1",
    ]


def test_a_month_with_nobody_to_bill_reads_as_such(session, db):
    summary = generate(db, OCTOBER, today=AFTER_OCTOBER)

    assert (summary.created, summary.totals, summary.skipped_total) == (0, {}, 0)
    assert summary.lines() == ["October 2026: 0 bills created"]


def test_one_bill_and_no_skips_is_one_line(session, db):
    add_customer(session, "Acme", limit=1000, unit_cost="0.01", usage={(2026, 10): 1500})

    assert generate(db, OCTOBER, today=AFTER_OCTOBER).lines() == ["October 2026: 1 bill created, total $5.00"]


def test_one_skipped_customer_is_singular(session, db):
    add_customer(session, "Acme", limit=1000, unit_cost="0.01", usage={(2026, 10): 1500})
    add_customer(session, "Quiet")

    assert generate(db, OCTOBER, today=AFTER_OCTOBER).lines() == [
        "October 2026: 1 bill created, total $5.00",
        "1 customer skipped: no usage recorded 1",
    ]


# --- running again --------------------------------------------------------------------------------


def test_a_second_run_creates_nothing_and_keeps_the_first_bill(session, db):
    add_customer(session, "Acme", limit=1000, unit_cost="0.01", usage={(2026, 10): 1500})
    first = generate(db, OCTOBER, today=AFTER_OCTOBER)
    bill = bills_by_customer(db, OCTOBER)["Acme"]
    with db.begin() as change:
        change.execute(update(Usage).values(api_usage=9000))

    second = generate(db, OCTOBER, today=AFTER_OCTOBER)

    assert first.created == 1
    assert (second.created, second.totals) == (0, {})
    assert skips(second) == {SkipReason.ALREADY_BILLED: 1}
    again = bills_by_customer(db, OCTOBER)["Acme"]
    assert (again.id, again.api_usage, again.overage_amount) == (bill.id, 1500, Decimal("5.00"))
    assert count_rows(db, BillAction) == 1


@pytest.mark.parametrize("status", [BillStatus.FINAL, BillStatus.WRITEOFF, BillStatus.SENT])
def test_a_bill_in_any_status_counts_as_already_billed(session, db, status):
    add_customer(session, "Acme", limit=1000, unit_cost="0.01", usage={(2026, 10): 1500})
    generate(db, OCTOBER, today=AFTER_OCTOBER)
    with db.begin() as change:
        change.execute(update(Bill).values(status=status))

    second = generate(db, OCTOBER, today=AFTER_OCTOBER)

    assert second.created == 0
    assert skips(second) == {SkipReason.ALREADY_BILLED: 1}
    assert count_rows(db, Bill) == 1


def test_a_rerun_bills_only_what_is_new_and_records_draft_only_for_it(session, db):
    finance = add_user(session, "fiona", Role.FINANCE)
    add_customer(session, "Acme", limit=1000, unit_cost="0.01", usage={(2026, 10): 1500})
    generate(db, OCTOBER, actor=finance, today=AFTER_OCTOBER)
    add_customer(session, "Late", limit=0, unit_cost="0.5", usage={(2026, 10): 3})

    second = generate(db, OCTOBER, actor=None, today=AFTER_OCTOBER)

    assert second.created == 1
    assert second.totals == {"USD": Decimal("1.50")}
    assert skips(second) == {SkipReason.ALREADY_BILLED: 1}
    with db() as check:
        rows = check.execute(
            select(Customer.name, BillAction.stakeholder_id).join(BillAction.bill).join(Bill.customer)
        ).all()
    assert sorted(rows) == [("Acme", finance.id), ("Late", None)]


def test_other_months_bills_do_not_count_as_already_billed(session, db):
    add_customer(session, "Acme", limit=1000, unit_cost="0.01", usage={(2026, 9): 1200, (2026, 10): 1500})

    september = generate(db, Period(2026, 9), today=AFTER_OCTOBER)
    october = generate(db, OCTOBER, today=AFTER_OCTOBER)

    assert (september.created, october.created) == (1, 1)
    amounts = {(bill.month, bill.overage_amount) for bill in all_bills(db)}
    assert amounts == {(9, Decimal("2.00")), (10, Decimal("5.00"))}


def test_two_generations_at_once_bill_each_customer_once(session, db):
    for number in range(20):
        add_customer(session, f"Customer {number}", limit=0, unit_cost="0.01", usage={(2026, 10): 100})
    summaries: list[GenerationSummary] = []
    errors: list[Exception] = []
    start = threading.Barrier(2)

    def run() -> None:
        try:
            start.wait()
            summaries.append(generate(db, OCTOBER, today=AFTER_OCTOBER))
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted(summary.created for summary in summaries) == [0, 20]
    assert count_rows(db, Bill) == 20
    assert count_rows(db, BillAction) == 20


# --- the month must be over -----------------------------------------------------------------------


@pytest.mark.parametrize("today", [date(2026, 10, 1), date(2026, 10, 31), date(2026, 9, 15)])
def test_a_month_that_has_not_ended_is_refused_and_nothing_is_written(session, db, today):
    add_customer(session, "Acme", limit=1000, unit_cost="0.01", usage={(2026, 10): 1500})

    with pytest.raises(MonthNotEnded) as error:
        generate(db, OCTOBER, today=today)

    assert str(error.value) == "October 2026 has not ended yet; bills can be generated from 2026-11-01"
    assert count_rows(db, Bill) == 0
    assert count_rows(db, BillAction) == 0


def test_a_month_can_be_generated_on_the_first_day_after_it(session, db):
    add_customer(session, "Acme", limit=1000, unit_cost="0.01", usage={(2025, 12): 1500})

    assert generate(db, Period(2025, 12), today=date(2026, 1, 1)).created == 1


# --- the DRAFT action -----------------------------------------------------------------------------


@pytest.mark.parametrize("by_finance", [True, False], ids=["finance user", "scheduler"])
def test_each_new_bill_gets_one_draft_action_by_whoever_generated_it(session, db, by_finance):
    actor = add_user(session, "fiona", Role.FINANCE) if by_finance else None
    add_customer(session, "Acme", limit=1000, unit_cost="0.01", usage={(2026, 10): 1500})
    add_customer(session, "Globex", limit=0, unit_cost="0.25", usage={(2026, 10): 4})
    add_customer(session, "Quiet")

    generate(db, OCTOBER, actor=actor, today=AFTER_OCTOBER)

    with db() as check:
        bills = check.scalars(select(Bill)).all()
        actions = {bill.id: [(a.action, a.stakeholder_id, a.status_before, a.status_after, a.comment)
                             for a in bill.actions] for bill in bills}
        created_at = {bill.id: (bill.created_at, [a.created_at for a in bill.actions]) for bill in bills}
    expected = (ActionType.DRAFT, actor.id if actor else None, None, BillStatus.DRAFT, None)
    assert len(bills) == 2
    assert all(entries == [expected] for entries in actions.values())
    assert all(stamps == [bill_at] for bill_at, stamps in created_at.values())
    assert count_rows(db, BillAction) == 2


# --- properties -----------------------------------------------------------------------------------

CENT = Decimal("0.01")
FREE_MONTHS = 3

unit_costs = st.one_of(
    st.sampled_from([Decimal(text) for text in (
        "0", "0.000001", "0.000125", "0.0015", "0.0025", "0.004", "0.005", "0.015", "0.999999",
        "1234.567891", "999999.999999",
    )]),
    st.decimals(min_value=0, max_value=Decimal("0.02"), places=6),
    st.decimals(min_value=0, max_value=Decimal("1000000"), places=6),
)
limits = st.one_of(st.sampled_from([0, 1, 1000]), st.integers(min_value=0, max_value=10**7))
usage_offsets = st.one_of(
    st.sampled_from([-1, 0, 1, 2, 3]),
    st.integers(min_value=1, max_value=10**9),
    st.integers(min_value=-10**6, max_value=10**9),
)
periods = st.builds(lambda index: Period(2025, 1).shifted(index), st.integers(min_value=0, max_value=23))


@dataclass
class Contract:
    name: str
    limit: int
    unit_cost: Decimal
    start: date
    end: date | None
    usage: dict[tuple[int, int], int] = field(default_factory=dict)


@st.composite
def contracts(draw, months: list[Period]) -> list[Contract]:
    """A handful of customers with random terms and, for some of the months, random usage near their limit."""
    result = []
    for number in range(draw(st.integers(min_value=1, max_value=6))):
        limit = draw(limits)
        start = draw(st.dates(min_value=date(2024, 1, 1), max_value=date(2026, 12, 31)))
        end = None
        if draw(st.sampled_from([False, False, True])):
            end = start + timedelta(days=draw(st.integers(min_value=0, max_value=900)))
        usage = {}
        for month in months:
            if draw(st.sampled_from([True, True, True, False])):
                usage[(month.year, month.month)] = max(0, limit + draw(usage_offsets))
        result.append(Contract(f"Customer {number}", limit, draw(unit_costs), start, end, usage))
    return result


def expected_outcome(contract: Contract, period: Period) -> SkipReason | tuple[int, Decimal]:
    """The rules of SPEC §3 for a customer that has no bill yet, written out independently of bot.billing."""
    first = date(period.year, period.month, 1)
    last = date(period.year + period.month // 12, period.month % 12 + 1, 1) - timedelta(days=1)
    if contract.start > last or (contract.end is not None and contract.end < first):
        return SkipReason.NOT_UNDER_CONTRACT
    months_since_start = (period.year * 12 + period.month) - (contract.start.year * 12 + contract.start.month)
    if months_since_start < FREE_MONTHS:
        return SkipReason.FIRST_MONTHS
    usage = contract.usage.get((period.year, period.month))
    if usage is None:
        return SkipReason.NO_USAGE
    units = usage - contract.limit
    if units <= 0:
        return SkipReason.WITHIN_LIMIT
    amount = (Decimal(units) * contract.unit_cost).quantize(CENT, rounding=ROUND_HALF_UP)
    if amount == 0:
        return SkipReason.BELOW_ONE_CENT
    return units, amount


def start_over(db, customers: list[Contract]) -> None:
    """Each example starts from empty tables: the `db` fixture empties them once per test, not per example."""
    empty_tables(db.kw["bind"])
    with db() as session:
        for contract in customers:
            add_customer(session, contract.name, limit=contract.limit, unit_cost=contract.unit_cost,
                         start=contract.start, end=contract.end, usage=contract.usage)


def assert_month_billed_by_the_rules(db, customers: list[Contract], period: Period, summary) -> None:
    outcomes = {contract.name: expected_outcome(contract, period) for contract in customers}
    expected_bills = {name: outcome for name, outcome in outcomes.items() if isinstance(outcome, tuple)}
    expected_skips = {}
    for outcome in outcomes.values():
        if isinstance(outcome, SkipReason):
            expected_skips[outcome] = expected_skips.get(outcome, 0) + 1

    for outcome in outcomes.values():
        event("billed" if isinstance(outcome, tuple) else outcome.value)
    bills = bills_by_customer(db, period)
    by_name = {contract.name: contract for contract in customers}
    assert {name: (bill.overage_units, bill.overage_amount) for name, bill in bills.items()} == expected_bills
    for name, bill in bills.items():
        usage = by_name[name].usage[(period.year, period.month)]
        assert bill.overage_units == usage - by_name[name].limit
        assert bill.overage_unit_cost == by_name[name].unit_cost
        assert bill.overage_amount == bill.overage_amount.quantize(CENT)
    assert summary.created == len(bills)
    assert summary.totals == add_up(("USD", bill.overage_amount) for bill in bills.values())
    assert skips(summary) == expected_skips
    assert summary.created + summary.skipped_total == len(customers)


FAST = settings(max_examples=35, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(data=st.data(), period=periods)
def test_property_every_bill_follows_the_rules_and_a_rerun_adds_nothing(db, data, period):
    customers = data.draw(contracts([period]))
    start_over(db, customers)

    first = generate(db, period)
    assert_month_billed_by_the_rules(db, customers, period, first)
    bills_before = {name: (bill.id, bill.overage_amount) for name, bill in bills_by_customer(db).items()}
    assert count_rows(db, BillAction) == first.created

    second = generate(db, period)

    assert (second.created, second.totals) == (0, {})
    assert second.skipped_total == len(customers)
    assert second.skipped[SkipReason.ALREADY_BILLED] == first.created
    for reason in SkipReason:
        if reason is not SkipReason.ALREADY_BILLED:
            assert second.skipped[reason] == first.skipped[reason]
    assert {name: (bill.id, bill.overage_amount) for name, bill in bills_by_customer(db).items()} == bills_before
    assert count_rows(db, BillAction) == first.created


@FAST
@given(data=st.data(), first_month=periods)
def test_property_runs_in_any_order_never_bill_a_customer_twice_for_a_month(db, data, first_month):
    months = [first_month.shifted(offset) for offset in range(3)]
    customers = data.draw(contracts(months))
    runs = data.draw(st.lists(st.sampled_from(months), min_size=1, max_size=6))
    start_over(db, customers)

    done: set[Period] = set()
    for period in runs:
        summary = generate(db, period)
        if period in done:
            assert summary.created == 0
        else:
            assert_month_billed_by_the_rules(db, customers, period, summary)
            done.add(period)

    with db() as check:
        keys = check.execute(select(Bill.customer_id, Bill.year, Bill.month)).all()
        months_billed = {Period(year, month) for _, year, month in keys}
    assert len(keys) == len(set(keys))
    assert months_billed <= done
    assert count_rows(db, BillAction) == len(keys)


@given(
    units=st.integers(min_value=0, max_value=10**12),
    unit_cost=st.decimals(min_value=0, max_value=Decimal("1000000"), places=6),
)
def test_property_overage_amount_is_exact_half_up_cents(units, unit_cost):
    millionths = int(unit_cost.scaleb(6))
    cents, remainder = divmod(units * millionths, 10_000)
    expected = Decimal(cents + (remainder >= 5_000)).scaleb(-2)

    amount = overage_amount(units, unit_cost, "USD")

    assert amount == expected
    assert amount.as_tuple().exponent == -2


@pytest.mark.parametrize(
    "units, unit_cost, amount",
    [
        (0, "0.01", "0.00"),
        (1, "0.004", "0.00"),
        (1, "0.005", "0.01"),
        (3, "0.0015", "0.00"),
        (5, "0.0025", "0.01"),
        (1, "0.015", "0.02"),
        (1, "0.025", "0.03"),
        (500, "0.01", "5.00"),
        (1_000_000_000, "0.000001", "1000.00"),
        (12345, "1.234567", "15240.73"),
    ],
)
def test_overage_amount(units, unit_cost, amount):
    result = overage_amount(units, Decimal(unit_cost), "USD")
    assert result == Decimal(amount)
    assert str(result) == amount
