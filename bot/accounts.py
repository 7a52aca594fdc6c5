"""Accounts: creating, renaming and deactivating them, their roles and passwords, and linking each to
exactly one Slack user."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import bcrypt
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot import approval, outbox
from bot.errors import Conflict, InvalidInput, NotAllowed, NotFound
from bot.parsing import parse_email
from bot.text import storable
from db.models import ApiSession, Bill, BillStatus, Customer, LinkCode, Role, User, utcnow

MIN_PASSWORD_LENGTH = 8
BCRYPT_MAX_BYTES = 72  # bcrypt reads no further, and refuses longer secrets
LINK_CODE_LIFETIME = timedelta(hours=24)
# Codes are read aloud and typed: no 0/O, 1/I/L.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
SELECTOR_LENGTH = 6
SECRET_LENGTH = 12
SLACK_USER_PATTERN = re.compile(r"[UW][A-Z0-9]{2,31}")


def hash_secret(secret: str, *, rounds: int) -> str:
    return bcrypt.hashpw(secret.encode(), bcrypt.gensalt(rounds)).decode()


def secret_matches(secret: str, digest: str) -> bool:
    """True when `secret` is the one `digest` was made from; a secret no digest can be made of never is."""
    try:
        encoded = secret.encode()
    except UnicodeEncodeError:  # half of a surrogate pair, from JSON's \ud800
        return False
    return len(encoded) <= BCRYPT_MAX_BYTES and bcrypt.checkpw(encoded, digest.encode())


def parse_role(text: str) -> Role:
    normalized = text.strip().lower().replace("-", "_").replace(" ", "_")
    try:
        return Role(normalized)
    except ValueError:
        choices = ", ".join(role.value for role in Role)
        raise InvalidInput(f"unknown role {text!r}; choose one of {choices}") from None


NAME_MAX_LENGTH = 100


class NeedsForce(Conflict):
    """A change with effects beyond the account itself; `effects` says what they are, nothing was changed."""

    def __init__(self, message: str, effects: list[str]):
        super().__init__(message)
        self.effects = effects


def get_user(*, session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise NotFound(f"no account named {name!r}")
    return user


def get_user_by_id(*, session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"there is no account #{user_id}")
    return user


def _account(session: Session, account: str | int) -> User:
    """The account named `account` (a str) or with that id (an int)."""
    if isinstance(account, int):
        return get_user_by_id(session=session, user_id=account)
    return get_user(session=session, name=account)


def check_active(user: User) -> User:
    """`user`, unless the account is deactivated: a deactivated account acts nowhere."""
    if user.deactivated_at is not None:
        raise NotAllowed(
            f"{user.name}'s account is deactivated; an operator can reactivate it"
            f" (`billprocess users reactivate {user.name}`)"
        )
    return user


def acting_user(*, session: Session, name: str) -> User:
    """The account an operator acts as (`--as NAME`): it must exist and be active."""
    return check_active(get_user(session=session, name=name))


def check_name(name: str) -> str:
    name = storable(name, "The account name").strip()
    if not name or len(name) > NAME_MAX_LENGTH:
        raise InvalidInput(f"an account name needs 1 to {NAME_MAX_LENGTH} characters")
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    storable(password, "The password")
    if len(password.encode()) > BCRYPT_MAX_BYTES:
        raise InvalidInput(f"the password can be at most {BCRYPT_MAX_BYTES} bytes long (in UTF-8)")
    return password


def add_user(
    *, session: Session, name: str, role: Role, password: str, email: str | None = None, rounds: int = 12
) -> User:
    """Create an account; the password is kept only as a bcrypt digest."""
    name = check_name(name)
    check_password(password)
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
        user = check_active(get_user(session=session, name=name))
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
            user = check_active(get_user(session=session, name=name))
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


# --- changing an account -------------------------------------------------------------------------


def rename(*, session: Session, account: str | int, new_name: str, force: bool = False) -> User:
    """Give the account another name; its history shows the new one.

    The approval policy names people by name: renaming someone it names needs `force`, and its file then
    needs the new name.
    """
    new_name = check_name(new_name)
    try:
        with session.begin():
            user = _account(session, account)
            if user.name == new_name:
                raise InvalidInput(f"the account is already named {new_name}")
            clash = session.scalar(select(User).where(User.name == new_name))
            if clash is not None:
                raise Conflict(f"an account named {new_name} already exists")
            effects = [
                f"{named}: write name:{new_name} there and restart, or bills needing that step wait"
                for named in approval.named_steps(approval.in_force(), user.name)
            ]
            if effects and not force:
                raise NeedsForce(
                    f"renaming {user.name} affects more than the account: " + "; ".join(effects)
                    + ". Nothing was changed",
                    effects,
                )
            user.name = new_name
            _refresh_what_names(session, user)
    except IntegrityError:  # the name taken by another change at the same moment
        raise Conflict(f"an account named {new_name} was just added") from None
    return user


def role_change_effects(*, session: Session, user: User, role: Role) -> list[str]:
    """What changing `user`'s role to `role` affects besides the account, one sentence each."""
    effects = []
    if user.role is Role.CUSTOMER_SUCCESS and role is not Role.CUSTOMER_SUCCESS:
        effects += _csm_effects(session, user, f"as {role.label}")
    if user.role is Role.FINANCE and role is not Role.FINANCE and not _other_active(session, user, Role.FINANCE):
        effects.append(f"{user.name} is the only active Finance account: nobody could generate, edit or send bills")
    effects += [
        f"{named}: its step is then taken as {role.label}" for named in approval.named_steps(approval.in_force(), user.name)
    ]
    return effects


def deactivation_effects(*, session: Session, user: User) -> list[str]:
    """What deactivating `user` affects besides the account, one sentence each."""
    effects = _csm_effects(session, user, "once deactivated")
    if user.role is Role.FINANCE and not _other_active(session, user, Role.FINANCE):
        effects.append(f"{user.name} is the only active Finance account: nobody could generate, edit or send bills")
    effects += [
        f"{named}: anyone in {user.role.label} takes that step instead (or name someone else there)"
        for named in approval.named_steps(approval.in_force(), user.name)
    ]
    return effects


def _csm_customers(session: Session, user: User) -> list[Customer]:
    return list(session.scalars(select(Customer).where(Customer.csm_id == user.id).order_by(Customer.name)))


def _csm_effects(session: Session, user: User, becoming: str) -> list[str]:
    names = [customer.name for customer in _csm_customers(session, user)]
    if not names:
        return []
    listed = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    return [
        (
            f"{user.name} is the CSM of {listed}: {becoming}, {user.name} no longer approves their bills for"
            " Customer Success, any Customer Success user does (name another CSM with"
            " `billprocess customers edit NAME --csm NAME`)"
        )
    ]


def _other_active(session: Session, user: User, role: Role) -> bool:
    others = select(User.id).where(User.role == role, User.id != user.id, User.deactivated_at.is_(None))
    return session.scalar(others.limit(1)) is not None


@dataclass(frozen=True)
class RoleChange:
    user: User
    before: Role
    effects: list[str]


def set_role(*, session: Session, account: str | int, role: Role, force: bool = False) -> RoleChange:
    """Change the account's role; when that affects more than the account, only with `force`."""
    with session.begin():
        user = _account(session, account)
        before = user.role
        if role is before:
            raise Conflict(f"{user.name} is already {role.label}")
        effects = role_change_effects(session=session, user=user, role=role)
        if effects and not force:
            raise NeedsForce(
                f"changing {user.name}'s role to {role.label} affects more than the account: "
                + "; ".join(effects) + ". Nothing was changed",
                effects,
            )
        user.role = role
        _refresh_what_names(session, user)
    return RoleChange(user, before, effects)


@dataclass(frozen=True)
class Deactivation:
    user: User
    slack_user_id: str | None  # the Slack user it was linked to
    sessions_ended: int
    effects: list[str]


def deactivate(*, session: Session, account: str | int, now: datetime | None = None) -> Deactivation:
    """Stop the account from acting anywhere: unlink it from Slack, end its API sessions and link codes.

    Its history stays, and so does its place as a customer's CSM (the approval rules pass over it).
    """
    now = now or utcnow()
    with session.begin():
        user = _account(session, account)
        if user.deactivated_at is not None:
            raise Conflict(f"{user.name} is already deactivated")
        effects = deactivation_effects(session=session, user=user)
        slack_user_id = user.slack_user_id
        user.deactivated_at = now
        user.slack_user_id = None
        ended = end_api_sessions(session, user, now)
        session.execute(
            update(LinkCode)
            .where(LinkCode.user_id == user.id, LinkCode.used_at.is_(None), LinkCode.expires_at > now)
            .values(expires_at=now)
        )
        if slack_user_id:
            outbox.refresh_home(session, slack_user_id)  # they now see how to link
        _refresh_what_names(session, user)
    return Deactivation(user, slack_user_id, ended, effects)


def reactivate(*, session: Session, account: str | int) -> User:
    """Let a deactivated account act again; it is not linked to Slack again by this."""
    with session.begin():
        user = _account(session, account)
        if user.deactivated_at is None:
            raise Conflict(f"{user.name} is not deactivated")
        user.deactivated_at = None
        _refresh_what_names(session, user)
    return user


def reset_password(
    *, session: Session, account: str | int, password: str, rounds: int = 12, now: datetime | None = None
) -> tuple[User, int]:
    """Set a new password; every API session of the account ends. Returns the account and how many ended."""
    check_password(password)
    digest = hash_secret(password, rounds=rounds)  # slow on purpose: before the transaction
    with session.begin():
        user = _account(session, account)
        user.password_digest = digest
        ended = end_api_sessions(session, user, now or utcnow())
    return user, ended


def end_api_sessions(session: Session, user: User, now: datetime) -> int:
    """End every API session of the account still open; how many there were."""
    return session.execute(
        update(ApiSession)
        .where(ApiSession.user_id == user.id, ApiSession.revoked_at.is_(None), ApiSession.expires_at > now)
        .values(revoked_at=now)
    ).rowcount


def _refresh_what_names(session: Session, user: User) -> None:
    """Slack shows whom bills wait for: bring up to date the drafts of the customers `user` is CSM of,
    and everyone's App Home."""
    drafts = session.scalars(
        select(Bill.id).join(Bill.customer).where(Customer.csm_id == user.id, Bill.status == BillStatus.DRAFT)
    )
    outbox.bills_shown_again(session, list(drafts))
