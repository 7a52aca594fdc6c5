"""The migrations build exactly the schema the models describe, from an empty database, on each backend."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date
from decimal import Decimal

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from db.migrate import alembic_config, is_current, upgrade
from db.models import Base, Bill, Customer
from db.session import make_engine
from tests.factories import add_customer


@pytest.fixture
def empty_engine(database_url, tmp_path) -> Iterator[Engine]:
    """A brand-new database with no tables at all, on the same backend as `database_url`."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
        yield engine
        engine.dispose()
        return
    name = f"billprocess_empty_{uuid.uuid4().hex[:12]}"
    admin = make_engine(database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(url.set(database=name).render_as_string(hide_password=False))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def schema_drift(engine: Engine) -> list:
    """What autogenerate would write for this database: empty when it matches the models."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)


def test_an_empty_database_is_not_current(empty_engine):
    assert inspect(empty_engine).get_table_names() == []
    assert is_current(empty_engine) is False


def test_upgrade_from_empty_reaches_the_models_schema(empty_engine):
    upgrade(empty_engine)

    assert is_current(empty_engine) is True
    assert set(inspect(empty_engine).get_table_names()) == set(Base.metadata.tables) | {"alembic_version"}
    assert schema_drift(empty_engine) == []


def test_upgrade_records_the_newest_revision(empty_engine):
    upgrade(empty_engine)

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    with empty_engine.connect() as connection:
        assert connection.scalar(text("SELECT version_num FROM alembic_version")) == head


def test_running_upgrade_twice_keeps_schema_and_data(empty_engine):
    upgrade(empty_engine)
    with Session(empty_engine) as session:
        add_customer(session, "Acme", unit_cost="0.000125", start=date(2026, 1, 1))

    upgrade(empty_engine)

    assert is_current(empty_engine) is True
    assert schema_drift(empty_engine) == []
    with Session(empty_engine) as session:
        customers = session.execute(select(Customer.name, Customer.overage_unit_cost)).all()
    assert customers == [("Acme", Decimal("0.000125"))]


def test_a_database_rolled_back_to_before_the_migrations_is_not_current(empty_engine):
    upgrade(empty_engine)
    config = alembic_config()
    with empty_engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")

    assert is_current(empty_engine) is False
    assert set(inspect(empty_engine).get_table_names()) <= {"alembic_version"}

    upgrade(empty_engine)

    assert is_current(empty_engine) is True
    assert schema_drift(empty_engine) == []


def test_the_drift_check_notices_a_schema_that_differs_from_the_models(empty_engine):
    upgrade(empty_engine)
    with empty_engine.begin() as connection:
        connection.execute(text("DROP INDEX ix_bills_year_month_status"))

    drift = schema_drift(empty_engine)

    assert [(change[0], change[1].name) for change in drift] == [("add_index", "ix_bills_year_month_status")]


def test_the_drift_check_notices_a_changed_column_type(empty_engine):
    upgrade(empty_engine)
    with empty_engine.begin() as connection:
        # Dropping and re-adding works on both databases; SQLite cannot alter a type in place.
        connection.execute(text("ALTER TABLE bills DROP COLUMN slack_ts"))
        connection.execute(text("ALTER TABLE bills ADD COLUMN slack_ts INTEGER"))

    drift = schema_drift(empty_engine)

    assert len(drift) == 1
    (change,) = drift[0]
    assert change[0] == "modify_type"
    assert (change[2], change[3]) == ("bills", "slack_ts")


def test_upgrading_a_database_with_bills_keeps_their_amounts_exact_and_their_history_append_only(empty_engine):
    upgrade(empty_engine, "0007")
    sqlite = empty_engine.dialect.name == "sqlite"
    with empty_engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO users (id, name, role, password_digest, session_token, created_at)"
            " VALUES (1, 'fiona', 'finance', 'x', 't', CURRENT_TIMESTAMP)"
        ))
        connection.execute(text(
            "INSERT INTO customers (id, name, billing_address, billing_email, monthly_api_limit, overage_unit_cost,"
            " start_date, require_csm_approval) VALUES (1, 'Acme', '1 Main St', 'a@acme.example', 1000, :cost,"
            " '2024-01-01', false)"
        ), {"cost": 12_340 if sqlite else Decimal("0.01234")})
        connection.execute(text(
            "INSERT INTO bills (id, customer_id, year, month, api_usage, monthly_api_limit, overage_units,"
            " overage_unit_cost, overage_amount, status, created_at, updated_at) VALUES (1, 1, 2026, 10, 2000, 1000,"
            " 1000, :cost, :amount, 'SENT', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
        ), {"cost": 12_340 if sqlite else Decimal("0.01234"), "amount": 1_234 if sqlite else Decimal("12.34")})
        connection.execute(text(
            "INSERT INTO bill_actions (bill_id, stakeholder_id, action, status_after, created_at)"
            " VALUES (1, 1, 'DRAFT', 'DRAFT', CURRENT_TIMESTAMP)"
        ))

    upgrade(empty_engine)

    assert schema_drift(empty_engine) == []
    with Session(empty_engine) as session:
        bill = session.get(Bill, 1)
        assert (bill.overage_amount, bill.currency, bill.customer.currency) == (Decimal("12.34"), "USD", "USD")
        assert bill.invoice_number is None and [action.action.value for action in bill.actions] == ["DRAFT"]
    for statement in ("UPDATE bill_actions SET comment = 'x'", "DELETE FROM bill_actions"):
        with pytest.raises(DBAPIError, match="append-only"), empty_engine.begin() as connection:
            connection.execute(text(statement))
