"""Accounts: creating them, and linking each to exactly one Slack user."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import bcrypt
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.errors import Conflict, InvalidInput, NotFound
from bot.parsing import parse_email
from db.models import LinkCode, Role, User, utcnow

MIN_PASSWORD_LENGTH = 8
LINK_CODE_LIFETIME = timedelta(hours=24)
# Codes are read aloud and typed: no 0/O, 1/I/L.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
SELECTOR_LENGTH = 6
SECRET_LENGTH = 12
SLACK_USER_PATTERN = re.compile(r"[UW][A-Z0-9]{2,31}")


def hash_secret(secret: str, *, rounds: int) -> str:
    return bcrypt.hashpw(secret.encode(), bcrypt.gensalt(rounds)).decode()


def secret_matches(secret: str, digest: str) -> bool:
    return bcrypt.checkpw(secret.encode(), digest.encode())


def parse_role(text: str) -> Role:
    normalized = text.strip().lower().replace("-", "_").replace(" ", "_")
    try:
        return Role(normalized)
    except ValueError:
        choices = ", ".join(role.value for role in Role)
        raise InvalidInput(f"unknown role {text!r}; choose one of {choices}") from None


def get_user(*, session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise NotFound(f"no account named {name!r}")
    return user


def add_user(
    *, session: Session, name: str, role: Role, password: str, email: str | None = None, rounds: int = 12
) -> User:
    """Create an account; the password is kept only as a bcrypt digest."""
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidInput("an account name needs 1 to 100 characters")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    email = parse_email(email, "The account's email") if email else None
    digest = hash_secret(password, rounds=rounds)  # slow on purpose: before the transaction, not inside it
    try:
        with session.begin():
            same = [User.name == name] + ([User.email == email] if email else [])
            clash = session.scalar(select(User).where(or_(*same)))
            if clash is not None:
                taken = "name" if clash.name == name else "email"
                raise Conflict(f"an account with that {taken} already exists ({clash.name})")
            user = User(
                name=name, role=role, email=email, password_digest=digest, session_token=secrets.token_hex(32)
            )
            session.add(user)
    except IntegrityError:  # the same name or email, added at the same moment by someone else
        raise Conflict(f"an account named {name} or with that email was just added") from None
    return user


def list_users(*, session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.role, User.name)))


@dataclass(frozen=True)
class Invitation:
    user: User
    code: str
    expires_at: datetime


def _random_code(length: int) -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(length))


def invite(*, session: Session, name: str, rounds: int = 12, now: datetime | None = None) -> Invitation:
    """Issue a one-time link code for an account, replacing any code issued to it before."""
    now = now or utcnow()
    selector, secret = _random_code(SELECTOR_LENGTH), _random_code(SECRET_LENGTH)
    digest = hash_secret(secret, rounds=rounds)
    with session.begin():
        user = get_user(session=session, name=name)
        session.execute(
            update(LinkCode)
            .where(LinkCode.user_id == user.id, LinkCode.used_at.is_(None), LinkCode.expires_at > now)
            .values(expires_at=now)
        )
        session.add(
            LinkCode(
                user_id=user.id,
                selector=selector,
                code_digest=digest,
                expires_at=now + LINK_CODE_LIFETIME,
                created_at=now,
            )
        )
    code = f"{selector}-{secret[:6]}-{secret[6:]}"
    return Invitation(user=user, code=code, expires_at=now + LINK_CODE_LIFETIME)


def check_slack_user_id(slack_user_id: str) -> str:
    slack_user_id = slack_user_id.strip()
    if not SLACK_USER_PATTERN.fullmatch(slack_user_id):
        raise InvalidInput(f"{slack_user_id!r} is not a Slack user ID (they look like U012AB3CD)")
    return slack_user_id


def link(*, session: Session, name: str, slack_user_id: str) -> User:
    """Link an account to a Slack user directly (an operator's command)."""
    slack_user_id = check_slack_user_id(slack_user_id)
    try:
        with session.begin():
            user = get_user(session=session, name=name)
            _link(session, user, slack_user_id)
    except IntegrityError:  # linked to another account at the same moment
        raise Conflict(f"Slack user {slack_user_id} was just linked to another account") from None
    return user


def _link(session: Session, user: User, slack_user_id: str) -> None:
    holder = session.scalar(select(User).where(User.slack_user_id == slack_user_id))
    if holder is not None and holder.id != user.id:
        raise Conflict(f"Slack user {slack_user_id} is already linked to {holder.name}; unlink that account first")
    if user.slack_user_id and user.slack_user_id != slack_user_id:
        raise Conflict(f"{user.name} is already linked to Slack user {user.slack_user_id}; unlink it first")
    user.slack_user_id = slack_user_id


def unlink(*, session: Session, name: str) -> User:
    with session.begin():
        user = get_user(session=session, name=name)
        if user.slack_user_id is None:
            raise InvalidInput(f"{user.name} is not linked to a Slack user")
        user.slack_user_id = None
    return user
