"""The transactional outbox: what Slack must be told, written in the same transaction as the change.

Services call the writers below inside their transaction; the delivery workers (bot/delivery.py) read
the rows after the commit and tell Slack. Nothing that must reach a person is held only in memory: a
click or a command is recorded here before Slack's acknowledgement, and a crash at any point leaves a
row that a worker picks up again.

A row is rendered when it is delivered, from the database as it is then: a bill's message always
shows the bill's latest state, however late it goes out.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, String, cast, func, insert, literal, select, update
from sqlalchemy.orm import Session

from db.models import Outbox, OutboxKind, OutboxStatus, utcnow
from db.types import UTCDateTime

# The job being applied in this thread: the change it causes marks it done in the change's transaction.
_current_job: contextvars.ContextVar[int | None] = contextvars.ContextVar("current_job", default=None)


BILL_LANE = "bill:"  # followed by the bill's id


def bill_lane(bill_id: int) -> str:
    return f"{BILL_LANE}{bill_id}"


def job_lane(slack_user_id: str, bill_id: int | None) -> str:
    """Jobs on one bill are applied in the order they came; a person's other commands in theirs."""
    return f"job:bill:{bill_id}" if bill_id is not None else f"job:user:{slack_user_id}"


# --- writers: each adds rows to the caller's transaction ---------------------------------------------


def add(
    session: Session,
    kind: OutboxKind,
    lane: str,
    *,
    bill_id: int | None = None,
    slack_user_id: str | None = None,
    payload: dict | None = None,
    dedupe_key: str | None = None,
) -> Outbox:
    row = Outbox(
        kind=kind,
        lane=lane,
        bill_id=bill_id,
        slack_user_id=slack_user_id,
        payload=payload,
        dedupe_key=dedupe_key,
        status=OutboxStatus.PENDING,
        attempts=0,
        outcome_unknown=False,
        available_at=utcnow(),
        created_at=utcnow(),
    )
    session.add(row)
    return row


def bill_changed(session: Session, bill_id: int, action_id: int, *, thread_reply: bool = True) -> None:
    """The bill's message brought up to date, the action in its thread, and everyone's Home refreshed."""
    lane = bill_lane(bill_id)
    add(session, OutboxKind.BILL_MESSAGE, lane, bill_id=bill_id)
    if thread_reply:
        add(session, OutboxKind.THREAD_REPLY, lane, bill_id=bill_id, payload={"action_id": action_id})
    add(session, OutboxKind.HOMES, "homes")
    finish_current_job(session)


def bills_created(session: Session, new_bill_ids: Select, *, period: str, summary: list[str], created: int) -> None:
    """The month's summary, then a message for every new bill (`new_bill_ids` selects their ids)."""
    generation(session, period=period, summary=summary, created=created)
    session.flush()  # the summary comes first: it shows how far posting the bills has come
    bill_messages(session, new_bill_ids)


def bill_messages(session: Session, new_bill_ids: Select) -> None:
    """A message for every new bill (`new_bill_ids` selects their ids), in the order of their ids."""
    now = utcnow()
    ids = new_bill_ids.subquery("new_bill_ids")
    session.execute(
        insert(Outbox).from_select(
            ["kind", "lane", "bill_id", "status", "attempts", "outcome_unknown", "available_at", "created_at"],
            select(
                literal(OutboxKind.BILL_MESSAGE.value, String),
                literal(BILL_LANE, String) + cast(ids.c.id, String),
                ids.c.id,
                literal(OutboxStatus.PENDING.value, String),
                literal(0),
                literal(False),
                literal(now, UTCDateTime),
                literal(now, UTCDateTime),
            ).order_by(ids.c.id),
        )
    )


def thread_replies(session: Session, actions: Select) -> None:
    """A thread reply for each action `actions` selects (its id and bill_id), in one statement."""
    rows = actions.subquery("replied_actions")
    json_object = func.json_build_object if session.get_bind().dialect.name == "postgresql" else func.json_object
    now = utcnow()
    session.execute(
        insert(Outbox).from_select(
            ["kind", "lane", "bill_id", "payload", "status", "attempts", "outcome_unknown", "available_at",
             "created_at"],
            select(
                literal(OutboxKind.THREAD_REPLY.value, String),
                literal(BILL_LANE, String) + cast(rows.c.bill_id, String),
                rows.c.bill_id,
                json_object("action_id", rows.c.id),
                literal(OutboxStatus.PENDING.value, String),
                literal(0),
                literal(False),
                literal(now, UTCDateTime),
                literal(now, UTCDateTime),
            ).order_by(rows.c.id),
        )
    )


def generation(session: Session, *, period: str, summary: list[str], created: int) -> None:
    """The month's summary in the bills channel, showing how many of its bills are posted so far."""
    add(
        session,
        OutboxKind.GENERATION,
        f"generation:{period}",
        payload={"period": period, "summary": summary, "created": created},
    )
    add(session, OutboxKind.HOMES, "homes")
    finish_current_job(session)


def refresh_bill(session: Session, bill_id: int) -> None:
    """Bring the bill's message up to date, without a thread reply (after a refused, stale click)."""
    add(session, OutboxKind.BILL_MESSAGE, bill_lane(bill_id), bill_id=bill_id)


def bills_shown_again(session: Session, bill_ids: Iterable[int]) -> None:
    """What these bills' messages and everyone's App Home show changed, not the bills: show them again."""
    for bill_id in bill_ids:
        refresh_bill(session, bill_id)
    add(session, OutboxKind.HOMES, "homes")


def refresh_home(session: Session, slack_user_id: str) -> None:
    add(session, OutboxKind.HOME, f"home:{slack_user_id}", slack_user_id=slack_user_id)


def respond(
    session: Session,
    slack_user_id: str | None,
    response_url: str | None,
    text: str,
    blocks: list[dict] | None = None,
) -> None:
    """An answer only this person sees: through the request's response_url, else in their DM."""
    add(
        session,
        OutboxKind.RESPOND,
        f"respond:{slack_user_id or response_url}",
        slack_user_id=slack_user_id,
        payload={"response_url": response_url, "text": text, "blocks": blocks},
    )


def reminder(session: Session, slack_user_id: str, day: str) -> bool:
    """Queue the person's reminder of `day`, once: False when it is already queued (another instance)."""
    key = f"reminder:{slack_user_id}:{day}"
    if session.scalar(select(Outbox.id).where(Outbox.dedupe_key == key)) is not None:
        return False
    add(session, OutboxKind.REMINDER, f"reminder:{slack_user_id}", slack_user_id=slack_user_id,
        payload={"day": day}, dedupe_key=key)
    return True


# --- jobs: the change a job causes and the job's completion commit together -----------------------


@contextmanager
def applying(job_id: int) -> Iterator[None]:
    """While a job is applied in this thread, the first change it causes also marks it done."""
    token = _current_job.set(job_id)
    try:
        yield
    finally:
        _current_job.reset(token)


def finish_current_job(session: Session) -> None:
    job_id = _current_job.get()
    if job_id is None:
        return
    session.execute(_finish(job_id))
    _current_job.set(None)


def _finish(job_id: int):
    return (
        update(Outbox)
        .where(Outbox.id == job_id, Outbox.status == OutboxStatus.PENDING)
        .values(status=OutboxStatus.DONE, finished_at=utcnow(), claimed_by=None, claimed_until=None,
                last_error=None)
    )


def finish_job(session: Session, job_id: int) -> bool:
    """Mark the job done unless its change already did; True when this call did it."""
    return session.execute(_finish(job_id)).rowcount == 1


# --- what operators and Finance see -----------------------------------------------------------------


@dataclass(frozen=True)
class Backlog:
    pending: int
    failed: int
    oldest_pending: datetime | None

    def lag(self, now: datetime) -> timedelta:
        """How far delivery is behind: the age of the oldest pending row."""
        return now - self.oldest_pending if self.oldest_pending else timedelta(0)


def backlog(*, session: Session) -> Backlog:
    counts = dict(
        session.execute(
            select(Outbox.status, func.count()).where(Outbox.status != OutboxStatus.DONE).group_by(Outbox.status)
        ).all()
    )
    oldest = session.scalar(select(func.min(Outbox.created_at)).where(Outbox.status == OutboxStatus.PENDING))
    return Backlog(counts.get(OutboxStatus.PENDING, 0), counts.get(OutboxStatus.FAILED, 0), oldest)


def unfinished(*, session: Session, limit: int = 200) -> list[Outbox]:
    """Pending and failed rows, failed first, oldest first."""
    return list(
        session.scalars(
            select(Outbox)
            .where(Outbox.status != OutboxStatus.DONE)
            .order_by((Outbox.status == OutboxStatus.FAILED).desc(), Outbox.id)
            .limit(limit)
        )
    )


def retry(*, session: Session, ids: list[int] | None = None) -> int:
    """Queue failed rows again (all, or those of `ids`); returns how many."""
    with session.begin():
        query = update(Outbox).where(Outbox.status == OutboxStatus.FAILED)
        if ids:
            query = query.where(Outbox.id.in_(ids))
        count = session.execute(
            query.values(status=OutboxStatus.PENDING, attempts=0, available_at=utcnow(), finished_at=None)
        ).rowcount
        if count:
            add(session, OutboxKind.HOMES, "homes")  # Finance's Home stops listing them once they are delivered
        return count
