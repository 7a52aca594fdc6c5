"""Absences: a person away until a day, and whom they name to approve for them meanwhile.

Who may then take the steps that name the person is the approval policy's rule (bot/approval.py);
this module records the absence and tells Slack which bill messages and Homes now read differently.
"""

from __future__ import annotations

import re
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import approval, outbox
from bot.bills import with_history
from bot.errors import InvalidInput
from bot.text import shown
from db.models import Bill, BillStatus, OutboxKind, User

_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_day(text: str) -> date:
    """A day written YYYY-MM-DD."""
    if not _DAY.fullmatch(text.strip()):
        raise InvalidInput(f"{shown(text)} is not a date; write it as YYYY-MM-DD, e.g. 2026-12-12")
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(f"{shown(text)} is not a real date") from None


def set_away(*, session: Session, user_id: int, until: date, delegate_id: int | None, today: date) -> User:
    """Record that the person is away until `until` (inclusive), with the delegate who approves for them."""
    with session.begin():
        user = session.get(User, user_id, with_for_update=True, populate_existing=True)
        if until < today:
            raise InvalidInput(f"{until:%Y-%m-%d} has passed; give the last day you are away, today or later")
        delegate = session.get(User, delegate_id) if delegate_id is not None else None
        if delegate is not None and delegate.id == user.id:
            raise InvalidInput("You cannot approve for yourself while you are away; name someone else, or no one")
        if delegate is not None and approval.absence(delegate, today) is not None:
            raise InvalidInput(
                f"{delegate.name} is away too, until {delegate.away_until:%Y-%m-%d}; name someone who is here"
            )
        user.away_until, user.delegate = until, delegate
        _refresh_named_bills(session, user)
    return user


def set_back(*, session: Session, user_id: int, today: date) -> User:
    """End the person's absence; their steps are theirs alone again."""
    with session.begin():
        user = session.get(User, user_id, with_for_update=True, populate_existing=True)
        if approval.absence(user, today) is None:
            raise InvalidInput(f"{user.name} is not away")
        user.away_until, user.delegate = None, None
        _refresh_named_bills(session, user)
    return user


def end_past(*, session: Session, today: date) -> int:
    """End, in the caller's transaction, the absences whose last day is before `today`; how many ended."""
    people = session.scalars(select(User).where(User.away_until < today)).all()
    for user in people:
        user.away_until, user.delegate = None, None
        _refresh_named_bills(session, user)
    return len(people)


def _refresh_named_bills(session: Session, user: User) -> None:
    """Bring up to date the messages of the DRAFT bills with a step still to take that names the person."""
    session.flush()
    drafts = session.scalars(with_history(select(Bill).where(Bill.status == BillStatus.DRAFT)))
    for bill in drafts:
        if any(step.person is not None and step.person.id == user.id and not step.done
               for step in approval.progress(bill).steps):
            outbox.refresh_bill(session, bill.id)
    outbox.add(session, OutboxKind.HOMES, "homes")
