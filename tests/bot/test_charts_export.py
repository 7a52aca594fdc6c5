"""The customer chart (a real PNG) and Finance's CSV export (exact amounts, one month only)."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import event
from matplotlib.colors import to_hex
from PIL import Image

from bot import workflow
from bot.billing import generate_month
from bot.bills import list_bills
from bot.charts import OVER_COLOUR, WITHIN_COLOUR, usage_chart_figure, usage_chart_png
from bot.customers import customer_overview
from bot.errors import NotAllowed
from bot.export import HEADER, bills_csv
from bot.periods import Period
from db.models import Role
from tests.factories import add_customer, add_user

TODAY = date(2026, 11, 3)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def overview(session, db):
    usage = {(2026, month): 1000 + 150 * (month % 2) for month in range(1, 11)}
    add_customer(session, "Müller & Söhne", limit=1000, usage=usage)
    with db() as s:
        return customer_overview(session=s, name="Müller & Söhne", today=TODAY)


def test_chart_is_a_png_of_a_fixed_size_titled_with_the_customer(overview):
    png = usage_chart_png(overview)

    assert png.startswith(PNG_SIGNATURE)
    assert 10_000 < len(png) < 500_000
    image = Image.open(io.BytesIO(png))
    image.verify()
    assert image.format == "PNG" and image.size == (1000, 500)
    assert image.info["Title"] == "Müller & Söhne: API usage, November 2025 – October 2026"


def test_chart_highlights_the_months_over_the_limit_against_the_limit_line(overview):
    axes = usage_chart_figure(overview).axes[0]
    bars = [patch for patch in axes.patches]

    assert "Müller & Söhne" in axes.get_title()
    assert axes.get_xlabel() == "Month" and axes.get_ylabel() == "API calls"
    assert [to_hex(bar.get_facecolor()) for bar in bars] == [
        to_hex(OVER_COLOUR if month.over_limit else WITHIN_COLOUR) for month in overview.months
    ]
    assert sum(month.over_limit for month in overview.months) == 5
    assert [bar.get_height() for bar in bars] == [month.api_usage or 0 for month in overview.months]
    assert list(axes.get_lines()[0].get_ydata()) == [1000, 1000]


def test_chart_is_the_same_every_time(overview):
    assert usage_chart_png(overview) == usage_chart_png(overview)


def rows_of(content: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(content.decode("utf-8"), newline="")))


def test_csv_has_the_months_bills_with_exact_amounts(session, db):
    finance = add_user(session, "fiona", Role.FINANCE)
    sales = add_user(session, "sam", Role.SALES)
    october, september = Period(2026, 10), Period(2026, 9)
    add_customer(
        session, "Zeta Ünited", limit=1000, unit_cost="0.000125",
        usage={(2026, 10): 1000 + 1_234_567, (2026, 9): 5000},
    )
    add_customer(
        session, "=Formula Inc", limit=0, unit_cost="123456.789012",
        usage={(2026, 10): 9_999_999},
    )
    with db() as s:
        generate_month(session=s, period=september, actor=finance, today=TODAY)
    with db() as s:
        generate_month(session=s, period=october, actor=finance, today=TODAY)
    with db() as s:
        ids = {bill.customer.name: bill.id for bill in list_bills(session=s, period=october)}
    with db() as s:
        workflow.approve(session=s, bill_id=ids["Zeta Ünited"], actor=sales)

    with db() as s:
        content = bills_csv(session=s, period=october, actor=finance)

    assert content.decode("utf-8").splitlines()[0] == ",".join(HEADER)
    rows = rows_of(content)
    assert [row["period"] for row in rows] == ["2026-10", "2026-10"]
    zeta = next(row for row in rows if row["bill_id"] == str(ids["Zeta Ünited"]))
    assert zeta["customer"] == "Zeta Ünited"
    assert (zeta["api_usage"], zeta["monthly_api_limit"], zeta["overage_units"]) == ("1235567", "1000", "1234567")
    assert zeta["overage_unit_cost"] == "0.000125"
    assert zeta["overage_amount"] == "154.32"  # 154.320875, rounded half-up to the cent
    assert zeta["status"] == "FINAL"
    assert zeta["billing_email"] == "billing@zeta-ünited.example"
    assert zeta["created_at"].endswith("+00:00") and zeta["updated_at"] >= zeta["created_at"]
    formula = next(row for row in rows if row["bill_id"] == str(ids["=Formula Inc"]))
    assert formula["customer"] == "'=Formula Inc"  # a spreadsheet shows it, instead of running it
    exact = Decimal("9999999") * Decimal("123456.789012")
    assert exact == Decimal("1234567766663.210988")
    assert formula["overage_amount"] == "1234567766663.21"  # more digits than a float holds exactly


def test_csv_of_a_month_without_bills_is_just_the_header(session, db):
    finance = add_user(session, "fiona", Role.FINANCE)
    with db() as s:
        assert bills_csv(session=s, period=Period(2026, 10), actor=finance).decode("utf-8") == ",".join(HEADER) + "\r\n"


@pytest.mark.parametrize("role", [Role.CUSTOMER_SUCCESS, Role.SALES])
def test_only_finance_may_export_bills(session, db, role):
    someone = add_user(session, "someone", role)
    add_customer(session, "Acme", usage={(2026, 10): 5000})
    with db() as s:
        generate_month(session=s, period=Period(2026, 10), actor=None, today=TODAY)

    with db() as s, pytest.raises(NotAllowed, match="^Only Finance can export bills$"):
        bills_csv(session=s, period=Period(2026, 10), actor=someone)


def test_csv_shows_each_approval_step_with_its_reason_and_who_approved(session, db):
    finance = add_user(session, "fiona", Role.FINANCE)
    carol = add_user(session, "carol", Role.CUSTOMER_SUCCESS)
    sam = add_user(session, "sam", Role.SALES)
    october = Period(2026, 10)
    add_customer(session, "Acme", require_csm_approval=True, csm=carol, usage={(2026, 10): 5000})
    add_customer(session, "Globex", usage={(2026, 10): 5000})
    with db() as s:
        generate_month(session=s, period=october, actor=finance, today=TODAY)
    with db() as s:
        ids = {bill.customer.name: bill.id for bill in list_bills(session=s, period=october)}
    with db() as s:
        workflow.approve(session=s, bill_id=ids["Acme"], actor=carol)
    with db() as s:
        workflow.approve(session=s, bill_id=ids["Acme"], actor=sam)

    with db() as s:
        rows = {row["customer"]: row for row in rows_of(bills_csv(session=s, period=october, actor=finance))}

    acme = rows["Acme"]["approvals"].split("; ")
    assert [step.split(" at ")[0] for step in acme] == [
        "1. carol (the customer's CSM): approved by carol",
        "2. Sales (after the customer's CSM): approved by sam",
    ]
    assert all(step.endswith(" UTC") for step in acme)
    assert rows["Globex"]["approvals"] == "Customer Success or Sales (the customer's usual approval): waiting"


def test_csv_loads_the_approvals_in_a_fixed_number_of_queries(session, db, engine):
    finance = add_user(session, "fiona", Role.FINANCE)
    carol = add_user(session, "carol", Role.CUSTOMER_SUCCESS)
    sam = add_user(session, "sam", Role.SALES)
    for n in range(6):
        usage = {(2026, 10): 5000} | ({(2026, 9): 5000} if n < 3 else {})
        add_customer(session, f"Customer {n}", require_csm_approval=n % 2 == 0, csm=carol, usage=usage)
    for month in (9, 10):
        with db() as s:
            generate_month(session=s, period=Period(2026, month), actor=finance, today=TODAY)
    with db() as s:
        bill_ids = [bill.id for bill in list_bills(session=s, period=Period(2026, 10))]
    for bill_id in bill_ids:
        with db() as s:
            workflow.approve(session=s, bill_id=bill_id, actor=carol)
    with db() as s:
        workflow.approve(session=s, bill_id=bill_ids[0], actor=sam)

    def queries_for(period: Period) -> tuple[int, list[dict[str, str]]]:
        statements = []

        def count(conn, cursor, statement, parameters, context, executemany):
            statements.append(statement)

        event.listen(engine, "before_cursor_execute", count)
        try:
            with db() as s:
                rows = rows_of(bills_csv(session=s, period=period, actor=finance))
        finally:
            event.remove(engine, "before_cursor_execute", count)
        return len(statements), rows

    for_six, rows = queries_for(Period(2026, 10))
    for_three, _ = queries_for(Period(2026, 9))

    assert len(rows) == 6 and all("approved by carol" in row["approvals"] for row in rows)
    # bills with customers and CSMs, then their actions with who took them: not one query per bill
    assert for_six == for_three
