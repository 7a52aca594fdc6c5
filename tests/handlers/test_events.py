"""Events API deliveries as Slack sends them: retries are processed once, the handshake is answered,
forged deliveries are refused."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from db.models import Role, SlackEvent
from sandbox.app_requests import app_home_opened_event, event_body, url_verification_body

SALES_ID = "U0SALES01"


def recorded_event_ids(slack) -> set[str]:
    with slack.db() as session:
        return set(session.scalars(select(SlackEvent.event_id)))


def home_opened(event_id: str, user_id: str = SALES_ID) -> str:
    return event_body(app_home_opened_event(user_id), event_id=event_id)


def publishes_settle_at(slack, count: int) -> int:
    """Wait for `count` views.publish calls, then for every answered request to end: the final count."""
    slack.fake.wait_for("views.publish", count)
    slack.finish()
    return len(slack.fake.calls("views.publish"))


def test_a_retried_delivery_is_processed_once(slack, caplog):
    caplog.set_level(logging.INFO, logger="handlers.events")
    slack.user("sam", Role.SALES, SALES_ID)
    delivery = home_opened("Ev0RETRY001")

    first = slack.sender.post(delivery)
    assert first.status == 200
    slack.fake.wait_for("views.publish", 1)

    retry = slack.sender.post(delivery, retry_num=1, retry_reason="http_timeout")
    assert retry.status == 200
    # A new event after the retry: its publish arriving alone shows the retry published nothing.
    assert slack.sender.post(home_opened("Ev0FRESH001")).status == 200

    assert publishes_settle_at(slack, 2) == 2
    assert recorded_event_ids(slack) == {"Ev0RETRY001", "Ev0FRESH001"}
    assert any("Ev0RETRY001 already processed" in record.getMessage() for record in caplog.records)


def test_a_retry_racing_the_first_delivery_is_processed_once(slack):
    slack.user("sam", Role.SALES, SALES_ID)
    delivery = home_opened("Ev0RACE0001")

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda retry: slack.sender.post(delivery, retry_num=retry), [None, 1, 2, 3]))

    assert [answer.status for answer in answers] == [200] * 4
    assert publishes_settle_at(slack, 1) == 1
    assert recorded_event_ids(slack) == {"Ev0RACE0001"}


def test_url_verification_is_answered_with_the_challenge(slack):
    answer = slack.sender.post(url_verification_body("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"))

    assert answer.status == 200
    assert answer.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}
    assert recorded_event_ids(slack) == set()


def test_a_forged_or_stale_event_is_refused_and_not_recorded(slack):
    slack.user("sam", Role.SALES, SALES_ID)

    assert slack.sender.post(home_opened("Ev0FORGED01"), forge=True).status == 401
    assert slack.sender.post(home_opened("Ev0UNSIGN01"), unsigned=True).status == 401
    assert slack.sender.post(home_opened("Ev0STALE001"), stale=True).status == 401

    slack.finish()
    assert slack.fake.calls("views.publish") == []
    assert recorded_event_ids(slack) == set()


def test_a_forged_delivery_does_not_block_the_real_one(slack):
    """A forged request never reaches the record, so it cannot make Slack's genuine delivery a 'repeat'."""
    slack.user("sam", Role.SALES, SALES_ID)
    delivery = home_opened("Ev0GENUINE1")

    assert slack.sender.post(delivery, forge=True).status == 401
    assert slack.sender.post(delivery).status == 200

    assert publishes_settle_at(slack, 1) == 1


def test_event_ids_older_than_a_day_are_pruned(slack):
    slack.user("sam", Role.SALES, SALES_ID)
    now = datetime.now(timezone.utc)
    with slack.db() as session:
        session.add(SlackEvent(event_id="Ev0OLD00001", received_at=now - timedelta(days=2)))
        session.add(SlackEvent(event_id="Ev0RECENT01", received_at=now - timedelta(hours=1)))
        session.commit()

    assert slack.sender.post(home_opened("Ev0NEW00001")).status == 200

    assert recorded_event_ids(slack) == {"Ev0RECENT01", "Ev0NEW00001"}
    slack.fake.wait_for("views.publish", 1)


def test_requests_that_are_not_events_are_not_recorded(slack):
    slack.user("sam", Role.SALES, SALES_ID)

    assert slack.command(SALES_ID, "help").status == 200

    slack.fake.wait_for("response_url")  # the help reached the caller: the command was processed
    assert recorded_event_ids(slack) == set()
