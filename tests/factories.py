"""Small builders for test data, committed so that services see it as real data."""

from __future__ import annotations

import secrets
from datetime import date
from decimal import Decimal

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from db.models import Base, Customer, Role, Usage, User


def add_user(session: Session, name: str, role: Role | str, **fields) -> User:
    user = User(
        name=name,
        role=Role(role),
        password_digest="$2b$04$" + "x" * 53,
        session_token=secrets.token_hex(16),
        **fields,
    )
    session.add(user)
    session.commit()
    return user


def add_customer(
    session: Session,
    name: str = "Acme",
    *,
    limit: int = 1000,
    unit_cost: str | Decimal = "0.01",
    start: date = date(2024, 1, 1),
    end: date | None = None,
    require_csm_approval: bool = False,
    csm: User | None = None,
    usage: dict[tuple[int, int], int] | None = None,
) -> Customer:
    customer = Customer(
        name=name,
        billing_address="1 Main Street, Springfield",
        billing_email=f"billing@{name.lower().replace(' ', '-')}.example",
        monthly_api_limit=limit,
        overage_unit_cost=Decimal(unit_cost),
        start_date=start,
        end_date=end,
        require_csm_approval=require_csm_approval,
        csm_id=csm.id if csm else None,
    )
    session.add(customer)
    session.flush()
    for (year, month), calls in (usage or {}).items():
        session.add(Usage(customer_id=customer.id, year=year, month=month, api_usage=calls))
    session.commit()
    return customer


def empty_tables(engine: Engine) -> None:
    """Remove every row, bill actions included, which the database otherwise refuses to delete."""
    tables = [table.name for table in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            # Row triggers do not fire on TRUNCATE; nothing but bill_actions itself refers to it.
            connection.execute(text("TRUNCATE bill_actions"))
        else:
            trigger = connection.execute(
                text("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'bill_actions_no_delete'")
            ).scalar_one()
            connection.execute(text("DROP TRIGGER bill_actions_no_delete"))
            connection.execute(text("DELETE FROM bill_actions"))
            connection.execute(text(trigger))
        for table in tables:
            if table != "bill_actions":
                connection.execute(text(f"DELETE FROM {table}"))
