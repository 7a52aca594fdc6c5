"""The database itself refuses data that breaks the rules, whatever code writes it."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from bot.billing import generate_month
from bot.periods import Period
from db.models import BillAction
from tests.factories import add_customer

OCTOBER = Period(2026, 10)


@pytest.fixture
def acme(session):
    return add_customer(session, "Acme", limit=1000, unit_cost="0.01", usage={(2026, 10): 1500})


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO usages (customer_id, year, month, api_usage) VALUES (:customer, 2026, 13, 5)",
        "INSERT INTO usages (customer_id, year, month, api_usage) VALUES (:customer, 2026, 9, -1)",
        "INSERT INTO usages (customer_id, year, month, api_usage) VALUES (:customer, 2026, 9, 1000000000001)",
        "INSERT INTO usages (customer_id, year, month, api_usage) VALUES (:customer, 2026, 10, 7)",
        "INSERT INTO usages (customer_id, year, month, api_usage) VALUES (:customer + 1000, 2026, 9, 7)",
        "UPDATE customers SET monthly_api_limit = -1 WHERE id = :customer",
        "UPDATE customers SET overage_unit_cost = -1 WHERE id = :customer",
        "UPDATE customers SET end_date = '2000-01-01' WHERE id = :customer",
        "UPDATE customers SET name = '' WHERE id = :customer",
        "INSERT INTO users (name, role, password_digest, session_token, created_at)"
        " VALUES ('eve', 'admin', 'x', 't', '2026-01-01')",
        "UPDATE bills SET overage_amount = 0 WHERE customer_id = :customer",
        "UPDATE bills SET overage_units = 1 WHERE customer_id = :customer",
        "UPDATE bills SET status = 'PAID' WHERE customer_id = :customer",
        "INSERT INTO bills (customer_id, year, month, api_usage, monthly_api_limit, overage_units,"
        " overage_unit_cost, overage_amount, status, created_at, updated_at)"
        " SELECT customer_id, year, month, api_usage, monthly_api_limit, overage_units, overage_unit_cost,"
        " overage_amount, status, created_at, updated_at FROM bills WHERE customer_id = :customer",
    ],
    ids=[
        "month 13", "negative usage", "usage over the maximum", "second usage for a month", "unknown customer",
        "negative limit", "negative unit cost", "end before start", "empty name", "unknown role",
        "zero amount", "units not usage minus limit", "unknown status", "second bill for a month",
    ],
)
def test_rows_that_break_the_rules_are_refused(engine, db, acme, statement):
    with db() as session:
        generate_month(session=session, period=OCTOBER, actor=None, today=date(2026, 11, 1))
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(text(statement), {"customer": acme.id})


def test_a_recorded_action_can_never_be_changed(engine, db, acme):
    with db() as session:
        generate_month(session=session, period=OCTOBER, actor=None, today=date(2026, 11, 1))
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
        connection.execute(text(f"UPDATE {BillAction.__tablename__} SET comment = 'rewritten'"))


def test_a_recorded_action_can_never_be_deleted(engine, db, acme):
    with db() as session:
        generate_month(session=session, period=OCTOBER, actor=None, today=date(2026, 11, 1))
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
        connection.execute(text(f"DELETE FROM {BillAction.__tablename__}"))
