"""Slack tests: the real app behind the real HTTP server, its Web API client pointed at a fake Slack.

Requests reach the app signed exactly as Slack signs them; assertions read what reached "Slack".
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from slack_bolt import App
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from waitress import wasyncore

from bot.delivery import Delivery
from bot.settings import Settings, load_settings
from db.models import Outbox, OutboxStatus, Role, User
from handlers.api import create_api
from handlers.app import build_services, create_app
from handlers.jobs import run_job
from handlers.web import create_server
from sandbox.app_requests import (
    SenderResponse,
    SlackSender,
    app_home_opened_event,
    block_actions_body,
    event_body,
    slash_command_body,
    text_input_state,
    view_submission_body,
)
from sandbox.slack import CHANNEL_ID, SIGNING_SECRET, TOKEN, FakeSlack
from tests.factories import add_user
from tests.handlers.api_support import OPERATOR_TOKEN, Api
from tests.slack_helpers import wait_until


@dataclass
class SlackHarness:
    fake: FakeSlack
    sender: SlackSender
    db: sessionmaker[Session]
    settings: Settings
    base_url: str
    app: App

    def finish(self, timeout: float = 10.0) -> None:
        """Let every request already answered run to its end, then deliver the outbox: what has not
        happened by now never will (the app takes no further requests after this)."""
        self.app.listener_runner.listener_executor.shutdown(wait=True)
        self.settle(timeout)

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until the outbox has nothing left to do: every job applied, every message delivered."""
        wait_until(lambda: outbox_idle(self.db), 1, "the outbox to be delivered", timeout)

    def user(self, name: str, role: Role | str, slack_user_id: str | None = None, **fields) -> User:
        """An account, linked to `slack_user_id` when given, and known to Slack's users.info."""
        with self.db() as session:
            user = add_user(session, name, role, slack_user_id=slack_user_id, **fields)
        if slack_user_id:
            self.fake.add_user(slack_user_id, name=name, email=fields.get("email"))
        return user

    def command(self, slack_user_id: str, text: str = "") -> SenderResponse:
        body = slash_command_body(text, slack_user_id, response_url=self.fake.response_url(slack_user_id))
        return self.sender.post(body)

    def click(self, slack_user_id: str, action_id: str, value: str, *, message: dict | None = None,
              view: dict | None = None) -> SenderResponse:
        body = block_actions_body(
            slack_user_id, action_id, value, message=message, view=view,
            response_url=self.fake.response_url(slack_user_id),
        )
        return self.sender.post(body)

    def submit(self, slack_user_id: str, callback_id: str, private_metadata: str,
               values: dict[tuple[str, str], str]) -> SenderResponse:
        state: dict = {}
        for (block_id, action_id), value in values.items():
            for block, actions in text_input_state(block_id, action_id, value).items():
                state.setdefault(block, {}).update(actions)
        body = view_submission_body(slack_user_id, callback_id, private_metadata, state)
        return self.sender.post(body)

    def open_home(self, slack_user_id: str) -> SenderResponse:
        return self.sender.post(event_body(app_home_opened_event(slack_user_id)))

    def responses(self, slack_user_id: str) -> list[dict]:
        """What the app said through the response_url of this user's requests."""
        return self.fake.response_url_posts(slack_user_id)

    def replies(self, slack_user_id: str, count: int = 1, timeout: float = 5.0) -> list[dict]:
        """The answers to this user's requests, once `count` of them have arrived."""
        return wait_until(lambda: self.responses(slack_user_id), count, f"{count} answer(s) for {slack_user_id}",
                          timeout)

    def ask(self, slack_user_id: str, text: str) -> dict:
        """Run `/bill text` and return the answer it brings (the next one at the response_url)."""
        before = len(self.responses(slack_user_id))
        response = self.command(slack_user_id, text)
        assert response.status == 200, response
        return self.replies(slack_user_id, before + 1)[before]


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def outbox_idle(db: sessionmaker[Session]) -> list[bool]:
    """[True] when no outbox row is pending (the form wait_until counts)."""
    with db() as session:
        pending = session.scalar(select(func.count()).select_from(Outbox).where(Outbox.status == OutboxStatus.PENDING))
    return [True] if pending == 0 else []


@pytest.fixture
def make_slack(fake, database_url, engine, db, tmp_path) -> Iterator:
    """Start the app and its delivery workers with settings overrides (e.g. link_by_email=True)."""
    servers = []
    deliveries = []
    harnesses = []

    def start(*, deliver: bool = True, **overrides) -> SlackHarness:
        """`deliver=False` leaves the outbox to the test (nothing is delivered until it says so)."""
        settings = load_settings(
            _env_file=None,
            **{
                "database_url": database_url,
                "slack_bot_token": TOKEN,
                "slack_signing_secret": SIGNING_SECRET,
                "slack_api_url": fake.url,
                "bills_channel": CHANNEL_ID,
                "mail_dir": tmp_path / "mail",
                "bcrypt_rounds": 4,
                "timezone": "UTC",
                "delivery_poll_seconds": 0.05,
                "delivery_max_backoff": 0.5,
                "progress_seconds": 0.1,
                "api_operator_token": OPERATOR_TOKEN,
                **overrides,  # may replace any of the above
            },
        )
        app = create_app(settings, db)
        if deliver:
            services = build_services(settings, db)
            deliveries.append(
                Delivery(sessions=db, settings=settings, jobs=lambda row: run_job(services, row), threads=2).start()
            )
        # As `serve` does: Slack's requests and the JSON API on one server.
        server = create_server(app, engine, signing_secret=SIGNING_SECRET, host="127.0.0.1", port=0, threads=8,
                               api=create_api(settings, db))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        base_url = f"http://127.0.0.1:{server.effective_port}"
        harness = SlackHarness(fake, SlackSender(base_url, SIGNING_SECRET), db, settings, base_url, app)
        harnesses.append(harness)
        return harness

    yield start
    # Requests already answered run to their end while the fake Slack is still there, then the workers
    # stop: one left running would take the next test's jobs with this test's settings.
    for harness in harnesses:
        harness.app.listener_runner.listener_executor.shutdown(wait=True)
    for delivery in deliveries:
        delivery.stop()
    for server, thread in servers:
        # Close the sockets from the server's own loop thread: closing them from here races its select().
        try:
            server.trigger.pull_trigger(lambda server=server: wasyncore.close_all(server._map))
        except OSError:  # the server's loop had closed them already
            pass
        thread.join(timeout=5)
        server.task_dispatcher.shutdown()


@pytest.fixture
def slack(make_slack) -> SlackHarness:
    return make_slack()


@pytest.fixture
def make_api(database_url, db, tmp_path):
    """The JSON API's WSGI application on the test database, with settings overrides."""

    def start(**overrides) -> Api:
        settings = load_settings(
            _env_file=None,
            **{
                "database_url": database_url,
                "mail_dir": tmp_path / "mail",
                "bcrypt_rounds": 4,
                "timezone": "UTC",
                "api_operator_token": OPERATOR_TOKEN,
                **overrides,
            },
        )
        app = create_api(settings, db)
        return Api(app=app, client=app.test_client(), db=db, settings=settings)

    return start


@pytest.fixture
def api(make_api) -> Api:
    return make_api()
