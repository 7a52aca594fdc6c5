"""A signed request is acted on once, by whichever process gets it; a database outage is told, and logged once."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from sqlalchemy import Engine, event, select
from sqlalchemy.exc import OperationalError

from bot import workflow
from bot.billing import generate_month
from bot.periods import Period
from db.models import ActionType, Bill, Role, SeenSignature
from handlers import errors
from handlers.errors import DATABASE_UNAVAILABLE, OutageLog
from handlers.verification import KEEP_SIGNATURES_FOR
from sandbox.app_requests import app_home_opened_event, block_actions_body, event_body, slash_command_body
from tests.factories import add_customer
from tests.slack_helpers import texts

FINANCE = "UFIONA01"
SALES = "USAM0001"
MONTH = Period(2025, 10)


def drafted_bill(slack) -> Bill:
    """A bill edited by Finance, then approved by Sales: two actions an undo could revert, one after the other."""
    fiona = slack.user("fiona", Role.FINANCE, FINANCE)
    sam = slack.user("sam", Role.SALES, SALES)
    with slack.db() as session:
        add_customer(session, "Acme", start=datetime(2024, 1, 1).date(), usage={(2025, 10): 5000})
    with slack.db() as session:
        generate_month(session=session, period=MONTH, actor=fiona, today=datetime(2025, 11, 5).date())
    with slack.db() as session:
        bill = session.scalars(select(Bill)).one()
    with slack.db() as session:
        workflow.edit(session=session, bill_id=bill.id, actor=fiona, unit_cost=Decimal("0.02"))
    with slack.db() as session:
        return workflow.approve(session=session, bill_id=bill.id, actor=sam)


def test_a_replayed_undo_is_refused_and_undoes_nothing_more(slack):
    bill = drafted_bill(slack)
    body = slash_command_body(f"undo {bill.id}", FINANCE, response_url=slack.fake.response_url(FINANCE))
    signed_at = int(time.time())

    assert slack.sender.post(body, timestamp=signed_at).status == 200
    assert "Undid sam's approval" in texts(slack.replies(FINANCE, 1)[0])
    replay = slack.sender.post(body, timestamp=signed_at)

    assert replay.status == 401 and replay.json() == {"ok": False, "error": "replayed request"}
    with slack.db() as session:
        bill = session.get(Bill, bill.id)
        assert [action.action for action in bill.actions].count(ActionType.UNDO) == 1
        assert bill.overage_unit_cost == Decimal("0.02")  # the edit before the approval still stands
    slack.fake.wait_for("chat.postMessage", 2)  # the one undo in Slack: the bill's message, then its thread reply
    slack.fake.wait_for("views.publish", 2)  # and the Homes of the two people it concerns


def test_a_replayed_command_is_refused_also_when_its_text_was_refused(slack):
    slack.user("fiona", Role.FINANCE, FINANCE)
    body = slash_command_body("send 12\x00", FINANCE, response_url=slack.fake.response_url(FINANCE))
    signed_at = int(time.time())

    assert slack.sender.post(body, timestamp=signed_at).status == 200
    assert "NUL" in texts(slack.replies(FINANCE, 1)[0])
    replay = slack.sender.post(body, timestamp=signed_at)

    assert replay.status == 401 and replay.json() == {"ok": False, "error": "replayed request"}
    assert len(slack.replies(FINANCE, 1)) == 1  # refused once, not told again


def test_a_request_replayed_to_another_process_on_the_database_is_refused(make_slack):
    first, second = make_slack(), make_slack()
    first.user("sam", Role.SALES, SALES)
    body = block_actions_body(SALES, "bill_approve", "bill:999", response_url=first.fake.response_url(SALES))
    signed_at = int(time.time())

    assert first.sender.post(body, timestamp=signed_at).status == 200
    assert second.sender.post(body, timestamp=signed_at).status == 401
    assert len(first.replies(SALES, 1)) == 1  # the one click was answered once: there is no such bill


def test_signatures_are_kept_only_while_a_replay_could_pass_the_timestamp_check(slack):
    now = datetime.now(timezone.utc)
    with slack.db() as session:
        session.add(SeenSignature(digest="a" * 64, signed_at=now - KEEP_SIGNATURES_FOR - timedelta(minutes=1)))
        session.add(SeenSignature(digest="b" * 64, signed_at=now - timedelta(minutes=1)))
        session.commit()

    assert slack.open_home(SALES).status == 200  # the first request of a process prunes
    slack.fake.wait_for("views.publish")

    with slack.db() as session:
        kept = set(session.scalars(select(SeenSignature.digest)))
    assert "a" * 64 not in kept and "b" * 64 in kept and len(kept) == 2


@contextmanager
def database_down(engine: Engine) -> Iterator[None]:
    """Every new connection fails as the driver fails when the server is gone, until the block ends."""

    def unreachable(dialect, connection_record, cargs, cparams):
        if dialect.name == "sqlite":
            cargs[:] = ["/nonexistent-folder/billprocess.db"]
        else:
            cparams.update(host="127.0.0.1", port=1)

    engine.dispose()
    event.listen(engine, "do_connect", unreachable)
    try:
        yield
    finally:
        event.remove(engine, "do_connect", unreachable)
        engine.dispose()


def test_a_database_outage_is_told_to_each_person_and_logged_once(make_slack, engine, caplog, monkeypatch):
    slack = make_slack(deliver=False)  # the server's side alone: its worker runs in a process of its own
    monkeypatch.setattr(errors, "database_outage", OutageLog())
    slack.user("fiona", Role.FINANCE, FINANCE)
    caplog.set_level(logging.INFO)

    with database_down(engine):
        statuses = []
        for number in range(30):
            statuses.append(slack.command(FINANCE, "list").status)
            click = block_actions_body(FINANCE, "bill_approve", "bill:1", response_url=slack.fake.response_url(FINANCE))
            statuses.append(slack.sender.post(click).status)
            statuses.append(slack.sender.post(event_body(app_home_opened_event(FINANCE))).status)
        answers = slack.replies(FINANCE, 60)
        dms = slack.fake.wait_for("chat.postMessage", 30)  # an event has no response_url: the app's DM it is

    assert statuses == [503] * 90
    assert {answer["text"] for answer in answers} == {DATABASE_UNAVAILABLE}
    assert {dm["text"] for dm in dms} == {DATABASE_UNAVAILABLE}
    # The app's own loggers (threads of earlier tests may still be winding down and logging their own ends).
    ours = ("handlers", "bot", "db", "slack_bolt", "waitress")
    problems = [record for record in caplog.records if record.levelno >= logging.WARNING and record.name.startswith(ours)]
    assert len(problems) == 1 and "the database is unavailable" in problems[0].getMessage()
    assert "Traceback" not in caplog.text and not problems[0].exc_info

    # Back by itself: the next request is served as usual.
    assert "FIONA".lower() in texts(slack.ask(FINANCE, "whoami")).lower()


def test_an_outage_is_logged_again_only_after_a_quiet_spell(caplog):
    clock = [0.0]
    outage = OutageLog(quiet_seconds=60, clock=lambda: clock[0])
    failure = OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))

    for clock[0] in (0.0, 30.0, 89.0, 140.0):  # failures never more than a minute apart: one outage
        outage.failed(failure)
    clock[0] = 201.0  # a minute and more without one: this failure starts a new outage
    outage.failed(failure)

    lines = [record.getMessage() for record in caplog.records]
    assert lines == ["the database is unavailable (connection refused); requests fail until it is back"] * 2
