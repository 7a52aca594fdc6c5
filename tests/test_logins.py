"""Logging in to the API: tokens kept only as digests, sessions that end, and guessing throttled."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from bot import accounts, logins
from bot.errors import NotAllowed
from db.models import ApiSession, LoginAttempt, Role, utcnow

PASSWORD = "correct horse battery"


@pytest.fixture
def fiona(db):
    with db() as session:
        return accounts.add_user(session=session, name="fiona", role=Role.FINANCE, password=PASSWORD, rounds=4)


def login(db, name="fiona", password=PASSWORD, address="192.0.2.1", **kwargs):
    with db() as session:
        return logins.login(session=session, name=name, password=password, address=address, hours=12, rounds=4,
                            **kwargs)


def authenticate(db, token, **kwargs):
    with db() as session:
        return logins.authenticate(session=session, token=token, **kwargs)


def test_each_login_gets_a_new_token_and_only_its_digest_is_stored(db, fiona):
    first, second = login(db), login(db)

    assert first.token != second.token and len(first.token) >= 43
    with db() as session:
        stored = set(session.scalars(select(ApiSession.token_digest)))
    assert stored == {logins.token_digest(first.token), logins.token_digest(second.token)}
    assert first.token not in stored and second.token not in stored
    assert authenticate(db, first.token).name == authenticate(db, second.token).name == "fiona"


def test_a_wrong_password_or_name_says_the_same(db, fiona):
    with pytest.raises(logins.NotAuthenticated) as wrong_password:
        login(db, password="not the password")
    with pytest.raises(logins.NotAuthenticated) as no_such_account:
        login(db, name="fional")

    assert str(wrong_password.value) == str(no_such_account.value) == "wrong account name or password"


def test_logging_out_ends_that_session_only(db, fiona):
    phone, laptop = login(db), login(db)

    with db() as session:
        logins.logout(session=session, token=phone.token)

    with pytest.raises(logins.NotAuthenticated, match="this session ended at"):
        authenticate(db, phone.token)
    assert authenticate(db, laptop.token).name == "fiona"


def test_a_session_expires_after_its_hours(db, fiona):
    session = login(db)

    assert authenticate(db, session.token, now=utcnow() + timedelta(hours=11, minutes=59)).name == "fiona"
    with pytest.raises(logins.NotAuthenticated, match="this session expired at"):
        authenticate(db, session.token, now=utcnow() + timedelta(hours=12, minutes=1))


def test_an_unknown_token_is_not_valid(db, fiona):
    with pytest.raises(logins.NotAuthenticated, match="the bearer token is not valid"):
        authenticate(db, "made-up")


def test_five_failures_for_an_account_lock_it_for_fifteen_minutes_from_any_address(db, fiona):
    start = utcnow()
    for attempt in range(5):
        with pytest.raises(logins.NotAuthenticated):
            login(db, password="guess", address=f"198.51.100.{attempt}", now=start + timedelta(seconds=attempt))

    with pytest.raises(logins.TooManyAttempts) as locked:
        login(db, address="203.0.113.9", now=start + timedelta(minutes=1))  # the right password, too
    assert "too many failed logins" in str(locked.value)
    assert 13 * 60 < locked.value.retry_after <= 14 * 60 + 1

    assert login(db, now=start + timedelta(minutes=15, seconds=1)).user.name == "fiona"


def test_five_failures_from_an_address_lock_it_for_every_account(db, fiona):
    with db() as session:
        accounts.add_user(session=session, name="sam", role=Role.SALES, password=PASSWORD, rounds=4)
    for name in ("a", "b", "c", "d", "e"):
        with pytest.raises(logins.NotAuthenticated):
            login(db, name=name, address="192.0.2.7")

    with pytest.raises(logins.TooManyAttempts):
        login(db, name="sam", address="192.0.2.7")
    assert login(db, name="sam", address="192.0.2.8").user.name == "sam"


def test_concurrent_guesses_never_exceed_the_limit(db, fiona):
    results: list[str] = []
    barrier = threading.Barrier(12)

    def guess(number: int) -> None:
        barrier.wait()
        try:
            login(db, password=f"guess {number}", address=f"198.51.100.{number}")
        except logins.TooManyAttempts:
            results.append("throttled")
        except logins.NotAuthenticated:
            results.append("wrong")

    threads = [threading.Thread(target=guess, args=(number,)) for number in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(results) == ["throttled"] * 7 + ["wrong"] * 5
    with db() as session:
        counted = session.scalar(select(func.count()).select_from(LoginAttempt).where(LoginAttempt.name == "fiona"))
    assert counted == 5


def test_a_deactivated_account_cannot_log_in_and_its_sessions_end(db, fiona):
    before = login(db)
    with db() as session:
        ended = accounts.deactivate(session=session, account="fiona")
    assert ended.sessions_ended == 1

    with pytest.raises(logins.NotAuthenticated, match="this session ended"):
        authenticate(db, before.token)
    with pytest.raises(NotAllowed, match="fiona's account is deactivated"):
        login(db)


def test_a_new_password_ends_every_session(db, fiona):
    phone, laptop = login(db), login(db)
    with db() as session:
        _, ended = accounts.reset_password(session=session, account="fiona", password="another long one", rounds=4)

    assert ended == 2
    for old in (phone, laptop):
        with pytest.raises(logins.NotAuthenticated):
            authenticate(db, old.token)
    with pytest.raises(logins.NotAuthenticated):
        login(db)
    assert login(db, password="another long one").user.name == "fiona"


@pytest.mark.parametrize("password", ["x" * 73, "\ud800 half a pair", "é" * 40])
def test_a_password_no_digest_can_be_made_of_is_simply_wrong(db, fiona, password):
    with pytest.raises(logins.NotAuthenticated):
        login(db, password=password)


@pytest.mark.parametrize("name", ["fi\x00ona", "x" * 500])
def test_a_name_no_account_can_have_is_simply_wrong(db, fiona, name):
    with pytest.raises(logins.NotAuthenticated):
        login(db, name=name)
