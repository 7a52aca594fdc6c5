"""Delivery of the outbox against Slack's failures: retried, held back per method, or failed and shown."""

from __future__ import annotations

import logging
from datetime import date

from sqlalchemy import select

from bot import outbox
from bot.billing import generate_month
from bot.periods import Period
from db.models import Bill, Outbox, OutboxKind, OutboxStatus, Role
from sandbox.slack import CHANNEL_ID
from tests.factories import add_customer
from tests.slack_helpers import wait_until

PERIOD = Period(2026, 10)
FINANCE, SALES = "UFIONA01", "USAM0001"


def _generate(slack) -> int:
    fiona = slack.user("fiona", Role.FINANCE, FINANCE)
    slack.user("sam", Role.SALES, SALES)
    with slack.db() as session:
        add_customer(session, "Acme", usage={(2026, 10): 3_000})
    with slack.db() as session:
        generate_month(session=session, period=PERIOD, actor=fiona, today=date(2026, 11, 3))
    with slack.db() as session:
        return session.scalar(select(Bill.id))


def _rows(slack, kind: OutboxKind) -> list[Outbox]:
    with slack.db() as session:
        return list(session.scalars(select(Outbox).where(Outbox.kind == kind)))


def test_a_permanent_error_fails_the_message_once_shows_it_to_finance_and_retry_sends_it(make_slack, caplog):
    slack = make_slack()
    slack.fake.fail("chat.postMessage", "channel_not_found", times=None)
    bill_id = _generate(slack)

    [failed] = wait_until(
        lambda: [row for row in _rows(slack, OutboxKind.BILL_MESSAGE) if row.status is OutboxStatus.FAILED],
        1, "the bill's message marked failed")
    assert failed.last_error == "chat.postMessage: channel_not_found" and failed.bill_id == bill_id
    slack.settle()
    attempts = [call for call in slack.fake.recorded("chat.postMessage") if "bill_id" in str(call.params["metadata"])]
    assert len(attempts) == 1  # not retried forever: once
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR and "channel_not_found" in r.getMessage()]
    assert len([line for line in logged if f"bill #{bill_id}" in line]) == 1  # logged once, not per attempt
    home = str(slack.fake.home_view(FINANCE)["blocks"])
    assert "Slack messages not delivered: 2" in home  # the bill's message and the month's summary
    assert "channel_not_found" in home and f"bill message of bill #{bill_id}" in home

    slack.fake.reset()  # the bot was invited to the channel
    with slack.db() as session:
        assert outbox.retry(session=session) == 2
    slack.settle()
    with slack.db() as session:
        assert session.get(Bill, bill_id).slack_ts is not None
    assert "Slack messages not delivered" not in str(slack.fake.home_view(FINANCE)["blocks"])


def test_slack_failing_for_a_while_is_retried_until_it_answers(make_slack):
    slack = make_slack()
    slack.fake.fail("chat.postMessage", "internal_error", times=4)
    bill_id = _generate(slack)
    slack.settle(timeout=20)

    with slack.db() as session:
        bill = session.get(Bill, bill_id)
    assert slack.fake.message(bill.slack_channel, bill.slack_ts) is not None
    posted = [m for m in slack.fake.messages(CHANNEL_ID)]
    assert len(posted) == 2  # the bill and the month's summary, once each, after four failures
    assert all(row.status is OutboxStatus.DONE for row in _rows(slack, OutboxKind.BILL_MESSAGE))


def test_a_rate_limited_method_does_not_hold_back_other_methods(make_slack):
    slack = make_slack()
    slack.fake.rate_limit("chat.postMessage", retry_after=3, times=None)
    _generate(slack)

    # While every post waits out its Retry-After, App Homes (views.publish) still go out.
    slack.fake.wait_for("views.publish", 2, timeout=3)
    assert all(call.status == 429 for call in slack.fake.recorded("chat.postMessage"))
    slack.fake.reset()
    slack.settle(timeout=20)
    assert len(slack.fake.messages(CHANNEL_ID)) == 2
