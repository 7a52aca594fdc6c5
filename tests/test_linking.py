"""Linking with one-time codes: single use, expiry, and the lockout for guessing (on SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from bot import accounts
from bot.errors import InvalidInput, NotAllowed
from bot.linking import LOCKOUT_WINDOW, MAX_FAILURES, LockedOut, link_by_email, link_with_code
from db.models import LinkAttempt, Role
from tests.factories import add_user

T0 = datetime(2026, 11, 3, 9, 0, tzinfo=timezone.utc)
DANA = "UDANA001"
WRONG = "ABCDEF-GHJKMN-PQRST2"


@pytest.fixture
def code(db) -> str:
    """A code for the unlinked account "dana", issued at T0 (valid for a day)."""
    with db() as session:
        add_user(session, "dana", Role.SALES)
    with db() as session:
        return accounts.invite(session=session, name="dana", rounds=4, now=T0).code


def link(db, code: str, now: datetime, slack_user_id: str = DANA):
    with db() as session:
        return link_with_code(session=session, slack_user_id=slack_user_id, code=code, now=now)


def fail(db, now: datetime, slack_user_id: str = DANA) -> None:
    with pytest.raises(InvalidInput, match="That code is not valid"):
        link(db, WRONG, now, slack_user_id)


def attempts(db) -> int:
    with db() as session:
        return session.scalar(select(func.count()).select_from(LinkAttempt))


def five_failures(db) -> datetime:
    """Failures at T0, T0+1 min, … T0+4 min; returns when the lockout lifts (15 minutes after the first)."""
    for minute in range(MAX_FAILURES):
        fail(db, T0 + timedelta(minutes=minute))
    return T0 + LOCKOUT_WINDOW


def test_the_right_code_links_once_and_cannot_be_used_again(db, code):
    assert link(db, code, T0 + timedelta(minutes=1)).name == "dana"

    with pytest.raises(InvalidInput, match="That code is not valid"):
        link(db, code, T0 + timedelta(minutes=2), slack_user_id="UOTHER01")


def test_an_expired_code_is_refused(db, code):
    with pytest.raises(InvalidInput, match="That code is not valid"):
        link(db, code, T0 + accounts.LINK_CODE_LIFETIME)
    assert link(db, code, T0 + accounts.LINK_CODE_LIFETIME - timedelta(seconds=1)).name == "dana"


def test_the_right_code_is_refused_while_locked_and_works_once_the_lock_lifts(db, code):
    lifts = five_failures(db)

    with pytest.raises(LockedOut, match=f"try again after {lifts:%H:%M} UTC"):
        link(db, code, lifts - timedelta(seconds=1))
    assert link(db, code, lifts).name == "dana"


def test_attempts_while_locked_are_not_recorded_so_the_window_is_not_extended(db, code):
    lifts = five_failures(db)

    for minute in (5, 10, 14):
        with pytest.raises(LockedOut):
            link(db, WRONG, T0 + timedelta(minutes=minute))
    assert attempts(db) == MAX_FAILURES

    assert link(db, code, lifts).name == "dana"


def test_failures_older_than_the_window_do_not_count(db, code):
    fail(db, T0)
    later = T0 + LOCKOUT_WINDOW + timedelta(minutes=1)
    for second in range(MAX_FAILURES - 1):
        fail(db, later + timedelta(seconds=second))

    assert link(db, code, later + timedelta(minutes=1)).name == "dana"


def test_the_lockout_is_per_slack_user(db, code):
    five_failures(db)

    fail(db, T0 + timedelta(minutes=5), slack_user_id="UOTHER01")  # not "locked", just wrong


def test_concurrent_guesses_by_one_slack_user_never_exceed_the_limit(db, code):
    guesses = 8
    start = threading.Barrier(guesses)
    outcomes: list[type[Exception]] = []

    def guess() -> None:
        start.wait()
        try:
            link(db, WRONG, T0 + timedelta(minutes=1))
        except (InvalidInput, LockedOut) as error:
            outcomes.append(type(error))

    threads = [threading.Thread(target=guess) for _ in range(guesses)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert attempts(db) == MAX_FAILURES
    assert sorted(outcome.__name__ for outcome in outcomes) == (
        ["InvalidInput"] * MAX_FAILURES + ["LockedOut"] * (guesses - MAX_FAILURES)
    )


def test_a_code_issued_before_the_account_was_deactivated_no_longer_links(db, code):
    with db() as session:
        accounts.deactivate(session=session, account="dana", now=T0 + timedelta(minutes=1))

    with pytest.raises(InvalidInput, match="That code is not valid"):
        link(db, code, T0 + timedelta(minutes=2))
    with db() as session, pytest.raises(NotAllowed, match="dana's account is deactivated"):
        accounts.invite(session=session, name="dana", rounds=4)


def test_a_deactivated_account_is_not_linked_by_its_email(db):
    with db() as session:
        add_user(session, "dana", Role.SALES, email="dana@example.com")
    with db() as session:
        accounts.deactivate(session=session, account="dana")

    with db() as session:
        assert link_by_email(session=session, slack_user_id=DANA, email="dana@example.com") is None
