"""The JSON API as the tests use it: the WSGI application on a test database, and its callers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot import accounts
from bot.seed import seed_demo
from bot.settings import Settings
from db.models import Bill, Customer

OPERATOR_TOKEN = "operator-" + "x" * 40
PASSWORD = "correct horse battery"
TODAY = date(2026, 11, 3)  # the demo data's bills are for August and September 2026
PROBLEM = "application/problem+json"


@dataclass
class Api:
    app: object  # the Flask application
    client: FlaskClient
    db: sessionmaker[Session]
    settings: Settings

    def seed(self) -> None:
        """The demo data (bot/seed.py), every account's password PASSWORD."""
        with self.db() as session:
            for _ in seed_demo(session=session, settings=self.settings, today=TODAY):
                pass
            names = [user.name for user in accounts.list_users(session=session)]
        for name in names:
            with self.db() as session:
                accounts.reset_password(session=session, account=name, password=PASSWORD, rounds=4)

    def login(self, name: str, password: str = PASSWORD) -> str:
        response = self.client.post("/api/session", json={"name": name, "password": password})
        assert response.status_code == 201, response.json
        return response.json["token"]

    def call(self, method: str, path: str, token: str | None = None, **kwargs):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.client.open(path, method=method, headers=headers, **kwargs)

    def bill_id(self, customer: str, month: int, year: int = 2026) -> int:
        with self.db() as session:
            return session.scalar(
                select(Bill.id).join(Bill.customer).where(Customer.name == customer, Bill.year == year,
                                                          Bill.month == month)
            )

    def customer_id(self, name: str) -> int:
        with self.db() as session:
            return session.scalar(select(Customer.id).where(Customer.name == name))
