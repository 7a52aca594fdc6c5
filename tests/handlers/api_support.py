"""The JSON API as the tests use it: the WSGI application on a test database, and its callers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from bot import accounts
from bot.seed import seed_demo
from bot.settings import Settings

OPERATOR_TOKEN = "operator-" + "x" * 40
PASSWORD = "correct horse battery"
TODAY = date(2026, 11, 3)


@dataclass
class Api:
    app: object  # the Flask application
    client: FlaskClient
    db: sessionmaker[Session]
    settings: Settings

    def seed(self) -> None:
        """The demo data, every account's password PASSWORD."""
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
