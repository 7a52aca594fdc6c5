"""Logging in to the JSON API: passwords checked against their bcrypt digests, bearer tokens kept only as
digests, and guessing throttled per account name and per address.

A token is 32 random bytes; the database keeps its SHA-256 digest (a token cannot be guessed, so a slow
hash adds nothing, and a fast one lets every request find its session by an index). Each login makes a
new session; logging out ends only that one, and deactivating the account or resetting its password
ends them all (bot/accounts.py).

Throttling lives in the database, so every `serve` sees the same count: an attempt is recorded as failed
before its password is checked, and marked succeeded afterwards, so attempts made at the same moment
cannot exceed the limit, and no lock is held while bcrypt runs.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from bot.accounts import NAME_MAX_LENGTH, check_active, hash_secret, secret_matches
from bot.errors import BillProcessError
from bot.formatting import timestamp
from bot.linking import LOCKOUT_WINDOW, MAX_FAILURES
from bot.text import UNSTORABLE
from db.models import ApiSession, LoginAttempt, User, utcnow

TOKEN_BYTES = 32
ADDRESS_MAX_LENGTH = 64
# pg_advisory_xact_lock's first key, apart from billing's, imports' and linking's.
LOCK_NAMESPACE_NAME, LOCK_NAMESPACE_ADDRESS = 0x4C4F474E, 0x4C4F4741  # "LOGN", "LOGA"
WRONG_CREDENTIALS = "wrong account name or password"


class NotAuthenticated(BillProcessError):
    """No valid credentials: a wrong password, or a bearer token that is unknown, expired or ended."""


class TooManyAttempts(BillProcessError):
    """Too many failed logins for the account name or from the address within the window."""

    def __init__(self, message: str, *, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after  # seconds


@dataclass(frozen=True)
class Login:
    user: User
    token: str = field(repr=False)  # shown once, to the person who logged in; never stored or logged
    expires_at: datetime


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@lru_cache(maxsize=4)
def _stand_in_digest(rounds: int) -> str:
    """A digest to check wrong names against, so that they take as long as wrong passwords."""
    return hash_secret(secrets.token_hex(16), rounds=rounds)


def login(
    *,
    session: Session,
    name: str,
    password: str,
    address: str,
    hours: float,
    rounds: int = 12,
    now: datetime | None = None,
) -> Login:
    """Check the password and open a new session lasting `hours`; refuse while the name or address is throttled."""
    now = now or utcnow()
    if len(name) > NAME_MAX_LENGTH or UNSTORABLE.search(name):
        raise NotAuthenticated(WRONG_CREDENTIALS)  # no account has such a name
    address = address[:ADDRESS_MAX_LENGTH]
    with session.begin():
        _serialise(session, name, address)
        locked_until = _locked_until(session, name, address, now)
        if locked_until is not None:
            raise TooManyAttempts(
                f"too many failed logins for this account or from this address; try again after"
                f" {timestamp(locked_until)}",
                retry_after=max(1, int((locked_until - now).total_seconds()) + 1),
            )
        attempt = LoginAttempt(name=name, address=address, succeeded=False, created_at=now)
        session.add(attempt)
        user = session.scalar(select(User).where(User.name == name))
        digest = user.password_digest if user is not None else None
        # Attempts older than the window count no more: each login clears its own name's and address's.
        old = LoginAttempt.created_at < now - LOCKOUT_WINDOW
        session.execute(delete(LoginAttempt).where(old, LoginAttempt.name == name))
        session.execute(delete(LoginAttempt).where(old, LoginAttempt.address == address))
    matches = secret_matches(password, digest or _stand_in_digest(rounds))  # outside any transaction
    if user is None or not matches:
        raise NotAuthenticated(WRONG_CREDENTIALS)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    expires_at = now + timedelta(hours=hours)
    with session.begin():
        user = check_active(session.get(User, user.id, populate_existing=True))
        session.execute(update(LoginAttempt).where(LoginAttempt.id == attempt.id).values(succeeded=True))
        session.execute(delete(ApiSession).where(ApiSession.user_id == user.id, ApiSession.expires_at <= now))
        session.add(
            ApiSession(user_id=user.id, token_digest=token_digest(token), created_at=now, expires_at=expires_at)
        )
    return Login(user=user, token=token, expires_at=expires_at)


def _serialise(session: Session, name: str, address: str) -> None:
    """Attempts on one name, and from one address, wait for each other while they are counted."""
    if session.get_bind().dialect.name == "postgresql":
        # Always the name's lock before the address's: two attempts never wait for each other in a circle.
        session.execute(select(func.pg_advisory_xact_lock(LOCK_NAMESPACE_NAME, func.hashtext(name))))
        session.execute(select(func.pg_advisory_xact_lock(LOCK_NAMESPACE_ADDRESS, func.hashtext(address))))
    # SQLite's BEGIN IMMEDIATE already serialises all writers.


def _locked_until(session: Session, name: str, address: str, now: datetime) -> datetime | None:
    """When the later of the two lockouts (by name, by address) ends; None when neither applies."""
    ends = []
    for column, value in ((LoginAttempt.name, name), (LoginAttempt.address, address)):
        recent = list(
            session.scalars(
                select(LoginAttempt.created_at)
                .where(
                    column == value,
                    LoginAttempt.succeeded.is_(False),
                    LoginAttempt.created_at > now - LOCKOUT_WINDOW,
                )
                .order_by(LoginAttempt.created_at.desc())
                .limit(MAX_FAILURES)
            )
        )
        if len(recent) >= MAX_FAILURES:
            ends.append(recent[-1] + LOCKOUT_WINDOW)
    return max(ends) if ends else None


def authenticate(*, session: Session, token: str, now: datetime | None = None) -> User:
    """The account whose open session `token` is; NotAuthenticated when it is none, NotAllowed when the
    account is deactivated."""
    now = now or utcnow()
    with session.begin():
        found = session.execute(
            select(ApiSession, User).join(ApiSession.user).where(ApiSession.token_digest == token_digest(token))
        ).first()
    if found is None:
        raise NotAuthenticated("the bearer token is not valid; log in with POST /api/session for a new one")
    api_session, user = found
    if api_session.revoked_at is not None:
        raise NotAuthenticated(
            f"this session ended at {timestamp(api_session.revoked_at)}; log in with POST /api/session again"
        )
    if api_session.expires_at <= now:
        raise NotAuthenticated(
            f"this session expired at {timestamp(api_session.expires_at)}; log in with POST /api/session again"
        )
    return check_active(user)


def logout(*, session: Session, token: str, now: datetime | None = None) -> None:
    """End the session of `token` (and no other); NotAuthenticated when it is not an open one."""
    now = now or utcnow()
    with session.begin():
        ended = session.execute(
            update(ApiSession)
            .where(ApiSession.token_digest == token_digest(token), ApiSession.revoked_at.is_(None),
                   ApiSession.expires_at > now)
            .values(revoked_at=now)
        ).rowcount
    if not ended:
        authenticate(session=session, token=token, now=now)  # raises why it is not an open session
