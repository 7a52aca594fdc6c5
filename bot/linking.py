"""Linking Slack users to accounts: one-time codes (with a lockout for guessing) and matching emails."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.accounts import SECRET_LENGTH, SELECTOR_LENGTH, check_active, secret_matches
from bot.errors import BillProcessError, Conflict, InvalidInput
from db.models import LinkAttempt, LinkCode, User, utcnow

MAX_FAILURES = 5
LOCKOUT_WINDOW = timedelta(minutes=15)
LOCK_NAMESPACE = 0x4C494E4B  # "LINK": pg_advisory_xact_lock's first key, apart from billing's and imports'
INVALID_CODE = "That code is not valid. Ask an operator for a new one (`billprocess users invite NAME`)."


class LockedOut(BillProcessError):
    """Too many wrong codes from one Slack user within the window."""


def user_for_slack(*, session: Session, slack_user_id: str) -> User | None:
    return session.scalar(select(User).where(User.slack_user_id == slack_user_id))


def _split(code: str) -> tuple[str, str] | None:
    compact = "".join(code.split()).replace("-", "").upper()
    if len(compact) != SELECTOR_LENGTH + SECRET_LENGTH:
        return None
    return compact[:SELECTOR_LENGTH], compact[SELECTOR_LENGTH:]


def _locked_until(session: Session, slack_user_id: str, now: datetime) -> datetime | None:
    recent = list(
        session.scalars(
            select(LinkAttempt.created_at)
            .where(
                LinkAttempt.slack_user_id == slack_user_id,
                LinkAttempt.succeeded.is_(False),
                LinkAttempt.created_at > now - LOCKOUT_WINDOW,
            )
            .order_by(LinkAttempt.created_at.desc())
            .limit(MAX_FAILURES)
        )
    )
    if len(recent) < MAX_FAILURES:
        return None
    return recent[-1] + LOCKOUT_WINDOW


def link_with_code(*, session: Session, slack_user_id: str, code: str, now: datetime | None = None) -> User:
    """Redeem a one-time code for `slack_user_id`; a wrong code only ever says it is not valid."""
    now = now or utcnow()
    with session.begin():
        if session.get_bind().dialect.name == "postgresql":
            # Attempts by one Slack user wait for each other, so that concurrent guesses cannot all read
            # "not locked" and exceed MAX_FAILURES. SQLite's BEGIN IMMEDIATE already serialises all writers.
            session.execute(select(func.pg_advisory_xact_lock(LOCK_NAMESPACE, func.hashtext(slack_user_id))))
        locked_until = _locked_until(session, slack_user_id, now)
        if locked_until is not None:
            raise LockedOut(
                f"Too many wrong codes. You can try again after {locked_until:%H:%M} UTC."
            )
        user = _redeem(session, slack_user_id, code, now)
        session.add(LinkAttempt(slack_user_id=slack_user_id, succeeded=user is not None, created_at=now))
    if user is None:
        raise InvalidInput(INVALID_CODE)
    return user


def _redeem(session: Session, slack_user_id: str, code: str, now: datetime) -> User | None:
    parts = _split(code)
    if parts is None:
        return None
    selector, secret = parts
    link_code = session.scalar(
        select(LinkCode)
        .where(LinkCode.selector == selector, LinkCode.used_at.is_(None), LinkCode.expires_at > now)
        .with_for_update()
    )
    if link_code is None or not secret_matches(secret, link_code.code_digest):
        return None
    user = check_active(link_code.user)
    _check_free(session, user, slack_user_id)
    link_code.used_at = now
    user.slack_user_id = slack_user_id
    return user


def _check_free(session: Session, user: User, slack_user_id: str) -> None:
    holder = user_for_slack(session=session, slack_user_id=slack_user_id)
    if holder is not None and holder.id != user.id:
        raise Conflict(f"You are already linked to {holder.name}. Use `/bill unlink` first.")
    if user.slack_user_id and user.slack_user_id != slack_user_id:
        raise Conflict(f"{user.name} is already linked to another Slack user. Ask an operator to unlink it.")


def link_by_email(*, session: Session, slack_user_id: str, email: str) -> User | None:
    """Link to the unlinked account whose email equals the Slack profile's; None when there is none."""
    with session.begin():
        user = session.scalar(
            select(User).where(
                func.lower(User.email) == email.strip().lower(),
                User.slack_user_id.is_(None),
                User.deactivated_at.is_(None),
            )
        )
        if user is None or user_for_slack(session=session, slack_user_id=slack_user_id) is not None:
            return None
        user.slack_user_id = slack_user_id
    return user


def unlink_slack_user(*, session: Session, slack_user_id: str) -> User:
    with session.begin():
        user = user_for_slack(session=session, slack_user_id=slack_user_id)
        if user is None:
            raise InvalidInput("Your Slack user is not linked to an account.")
        user.slack_user_id = None
    return user
