"""Customers as people read them: the list, one customer's overview, usage history, and unknown names."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from bot.billing import generate_month
from bot.blocks import message_blocks
from bot.blocks import customers as customer_blocks
from bot.customers import MAX_OVERVIEW_BILLS, customer_overview, list_customers, usage_history
from bot.errors import InvalidInput, NotFound
from bot.home import StatusTotal
from bot.periods import Period
from db.models import BillStatus, Role
from tests.factories import add_customer, add_user

TODAY = date(2026, 11, 3)


def months_of(overview) -> list[tuple[str, int | None, bool]]:
    return [(str(month.period), month.api_usage, month.over_limit) for month in overview.months]


@pytest.fixture
def acme(session):
    carol = add_user(session, "carol", Role.CUSTOMER_SUCCESS, slack_user_id="UCAROL")
    usage = {(2025, 10): 9999}  # 13 months back: outside the window
    usage |= {(2025, month): 900 + month for month in (11, 12)}
    usage |= {(2026, month): 1000 + 100 * (month % 3) for month in range(1, 11) if month != 4}
    usage |= {(2026, 11): 5000}  # this month: not over yet, so not shown
    return add_customer(
        session,
        "Acme Corp",
        limit=1000,
        unit_cost="0.000125",
        start=date(2024, 3, 15),
        end=date(2027, 3, 14),
        require_csm_approval=True,
        csm=carol,
        usage=usage,
    )


def test_overview_has_the_twelve_months_ending_last_month_with_over_limit_flags(db, acme):
    with db() as s:
        overview = customer_overview(session=s, name="Acme Corp", today=TODAY)

    assert months_of(overview) == [
        ("2025-11", 911, False),
        ("2025-12", 912, False),
        ("2026-01", 1100, True),
        ("2026-02", 1200, True),
        ("2026-03", 1000, False),  # exactly the limit is within it
        ("2026-04", None, False),
        ("2026-05", 1200, True),
        ("2026-06", 1000, False),
        ("2026-07", 1100, True),
        ("2026-08", 1200, True),
        ("2026-09", 1000, False),
        ("2026-10", 1100, True),
    ]
    assert [str(month.period) for month in overview.months_over_limit] == [
        "2026-01", "2026-02", "2026-05", "2026-07", "2026-08", "2026-10"
    ]
    assert overview.customer.csm.name == "carol"


def test_overview_lists_the_latest_bills_first_and_caps_them(session, db, acme):
    usage_months = [Period(2025, 1).shifted(n) for n in range(MAX_OVERVIEW_BILLS + 3)]
    other = add_customer(session, "Other", usage={(p.year, p.month): 2000 for p in usage_months})
    with db() as s:
        for period in usage_months:
            generate_month(session=s, period=period, actor=None, today=TODAY)

    with db() as s:
        overview = customer_overview(session=s, name="Other", today=TODAY)

    assert overview.customer.id == other.id
    assert overview.bill_count == MAX_OVERVIEW_BILLS + 3
    assert [(bill.year, bill.month) for bill in overview.bills] == [
        (p.year, p.month) for p in reversed(usage_months[-MAX_OVERVIEW_BILLS:])
    ]


def test_names_match_ignoring_case_quotes_and_extra_spaces(db, acme):
    with db() as s:
        assert customer_overview(session=s, name='  "acme   CORP" ', today=TODAY).customer.id == acme.id


def test_an_unknown_name_suggests_close_matches(session, db, acme):
    add_customer(session, "Acme Labs")
    add_customer(session, "Globex")
    with db() as s:
        with pytest.raises(NotFound) as typo:
            customer_overview(session=s, name="acme crop", today=TODAY)
        with pytest.raises(NotFound) as part:
            customer_overview(session=s, name="acme", today=TODAY)
        with pytest.raises(NotFound) as nothing:
            customer_overview(session=s, name="Initech", today=TODAY)

    assert str(typo.value).startswith("There is no customer named “acme crop”. Did you mean “Acme Corp”")
    assert "Did you mean “Acme Corp” or “Acme Labs”?" in str(part.value)
    assert str(nothing.value) == "There is no customer named “Initech”. `/bill customers` lists every customer."


def test_an_empty_name_is_invalid(db):
    with db() as s, pytest.raises(InvalidInput):
        customer_overview(session=s, name="  ", today=TODAY)


def test_usage_history_of_a_year_has_all_twelve_months(db, acme):
    with db() as s:
        history = usage_history(session=s, name="acme corp", year=2026)

    assert [month.api_usage for month in history.months] == [
        1100, 1200, 1000, None, 1200, 1000, 1100, 1200, 1000, 1100, 5000, None
    ]


def test_usage_history_without_a_year_has_every_recorded_month(db, acme):
    with db() as s:
        history = usage_history(session=s, name="Acme Corp", year=None)

    assert [str(month.period) for month in history.months][:3] == ["2025-10", "2025-11", "2025-12"]
    assert len(history.months) == 13


def test_list_customers_is_by_name(session, db, acme):
    add_customer(session, "Beta")
    add_customer(session, "Aardvark")
    with db() as s:
        assert [customer.name for customer in list_customers(session=s)] == ["Aardvark", "Acme Corp", "Beta"]


def test_customer_view_blocks_show_terms_marked_months_and_bills(session, db, acme):
    with db() as s:
        generate_month(session=s, period=Period(2026, 10), actor=None, today=TODAY)
    with db() as s:
        overview = customer_overview(session=s, name="Acme Corp", today=TODAY)
        blocks = message_blocks(customer_blocks.customer_view(overview))
    text = "\n".join(
        [block.get("text", {}).get("text", "") for block in blocks]
        + [field["text"] for block in blocks for field in block.get("fields", [])]
        + [element.get("text", "") for block in blocks for element in block.get("elements", [])]
    )

    assert blocks[0] == {"type": "header", "text": {"type": "plain_text", "text": "Acme Corp", "emoji": True}}
    assert "*Monthly limit*\n1,000 calls" in text
    assert "*Overage unit cost*\n$0.000125 per call" in text
    assert "*Contract*\n2024-03-15 → 2027-03-14" in text
    assert "*Approval*\nthe CSM (carol), then Sales" in text
    assert "*CSM*\n<@UCAROL>" in text
    assert "*API usage, November 2025 – October 2026*" in text
    assert "2026-10      1,100  1,000  ◀ over by 100" in text
    assert "2026-03      1,000  1,000\n" in text
    assert "2026-04          —  1,000  no usage recorded" in text
    assert "Over the limit in 6 of 12 months" in text
    assert "October 2026 · DRAFT · 100 over × $0.000125 = *$0.01*" in text


def test_customers_list_fits_one_message_however_many_customers(session, db):
    for number in range(400):
        add_customer(session, f"Customer {number:03d} with a rather long name to fill the message up")
    with db() as s:
        blocks = message_blocks(customer_blocks.customers_list(list_customers(session=s)))

    assert len(blocks) <= 50
    assert blocks[0]["text"]["text"] == "Customers (400)"
    assert all(len(block["text"]["text"]) <= 3000 for block in blocks if block["type"] == "section")


def test_usage_history_blocks_group_years_latest_first(db, acme):
    with db() as s:
        history = usage_history(session=s, name="Acme Corp", year=None)
        blocks = message_blocks(customer_blocks.usage_history(history))

    sections = [block["text"]["text"] for block in blocks if block["type"] == "section"]
    assert [section.split("\n")[0] for section in sections] == ["*2026*", "*2025*"]
    assert "2025-10      9,999  1,000  ◀ over by 8,999" in sections[1]


def test_markup_characters_are_escaped_and_quotes_are_left_as_typed(session, db):
    name = "O'Brien & <Sons> \"Ltd\" Co"
    add_customer(session, name, usage={(2026, 9): 1500})
    with db() as s:
        listed = message_blocks(customer_blocks.customers_list(list_customers(session=s)))
        viewed = message_blocks(
            customer_blocks.customer_view(customer_overview(session=s, name=name, today=date(2026, 11, 3)))
        )
        history = message_blocks(customer_blocks.usage_history(usage_history(session=s, name=name, year=None)))

    assert "*O'Brien &amp; &lt;Sons&gt; \"Ltd\" Co*" in listed[1]["text"]["text"]
    assert viewed[0]["text"]["text"] == name  # a plain-text header shows it as it is
    everything = repr(listed + viewed + history)
    assert "&#x27;" not in everything and "&quot;" not in everything


def test_export_summary_counts_the_months_bills_by_status_with_their_total():
    totals = [
        StatusTotal(BillStatus.DRAFT, 1, {"USD": Decimal("0.01")}),
        StatusTotal(BillStatus.FINAL, 2, {"USD": Decimal("1500.00"), "JPY": Decimal("200")}),
        StatusTotal(BillStatus.WRITEOFF, 0, {}),
        StatusTotal(BillStatus.SENT, 0, {}),
    ]
    summary = customer_blocks.export_summary(Period(2026, 10), totals)
    assert summary.startswith("October 2026: 3 bills, ") and summary.endswith(" in all (DRAFT 1, FINAL 2)")
    assert "$1,500.01" in summary and "¥200" in summary  # per currency, never added across them
    one = [StatusTotal(BillStatus.SENT, 1, {"USD": Decimal("12.50")})]
    assert customer_blocks.export_summary(Period(2026, 10), one) == "October 2026: 1 bill, $12.50 in all (SENT 1)"


def test_export_summary_of_a_month_without_bills_says_there_is_nothing_to_export():
    empty = [StatusTotal(status, 0, {}) for status in BillStatus]
    assert customer_blocks.export_summary(Period(2026, 10), empty) == (
        "There are no bills for October 2026, so there is nothing to export."
    )
