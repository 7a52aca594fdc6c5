"""Clicks and commands that change bills: recorded before Slack's acknowledgement, applied afterwards.

Recording is one short insert, so acknowledgements stay fast; the delivery workers (bot/delivery.py)
apply each job, and the change it causes marks the job done in the change's own transaction, so a job
is applied exactly once whichever process dies when.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from sqlalchemy import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from bot import outbox
from db.models import Outbox, OutboxKind, OutboxStatus, utcnow
from db.session import GroupCommit
from handlers.errors import is_database_outage, refuse
from handlers.verification import UNSTORED_SIGNATURE, Replayed, SignedRequest, store_signatures


class JobType(str, enum.Enum):
    CLICK = "click"  # a click on a bill's Approve, Send or Undo button
    COMMAND = "command"  # a `/bill` subcommand that changes something


def record_job(services, job_type: JobType, slack_user_id: str, bill_id: int | None, fields: dict, context) -> None:
    """Store the job durably, with its request's signature; raises Replayed for a signature seen before,
    and what the database raised when it cannot take it (the person is then told)."""
    payload = {"type": job_type.value, **fields}
    if not services.recorder.record(outbox.job_lane(slack_user_id, bill_id), slack_user_id, payload,
                                    signed=context.get(UNSTORED_SIGNATURE)):
        raise Replayed()


class JobRecorder:
    """Records jobs and their requests' signatures; requests that arrive together share one commit."""

    def __init__(self, sessions: sessionmaker[Session]):
        self._commit = GroupCommit(sessions, _record, name="job-recorder")

    def record(self, lane: str, slack_user_id: str, payload: dict, *, signed: SignedRequest | None = None) -> bool:
        """Store the job durably; False (and nothing stored) when its signature was seen before."""
        now = utcnow()
        row = {
            "kind": OutboxKind.JOB, "lane": lane, "slack_user_id": slack_user_id, "payload": payload,
            "status": OutboxStatus.PENDING, "attempts": 0, "outcome_unknown": False, "available_at": now,
            "created_at": now,
        }
        return self._commit.submit((row, signed))


def _record(session: Session, items: Sequence[tuple[dict, SignedRequest | None]]) -> list[bool]:
    signatures = [signed for _, signed in items if signed is not None]
    first_uses = iter(store_signatures(session, signatures) if signatures else [])
    accepted = [next(first_uses) if signed is not None else True for _, signed in items]
    rows = [row for (row, _), ok in zip(items, accepted) if ok]
    if rows:
        session.execute(insert(Outbox), rows)
    return accepted


def run_job(services, row: Outbox) -> None:
    """Apply one recorded job (the delivery workers' job runner)."""
    # The surfaces record their jobs through this module, so they are imported when a job runs.
    from handlers import actions, commands

    fields = dict(row.payload or {})
    job_type = JobType(fields.pop("type"))
    try:
        if job_type is JobType.CLICK:
            actions.apply_click(services, row.id, actions.Click(**fields))
        else:
            commands.run_command(services, row.id, commands.RecordedCommand(**fields))
    except DBAPIError as error:
        if is_database_outage(error):
            raise  # the job is tried again once the database is back
        refuse(services, row.id, row.slack_user_id, fields.get("response_url"), error)
    except Exception as error:  # anything else is a bug: the person is told, with the id the log shows
        refuse(services, row.id, row.slack_user_id, fields.get("response_url"), error)
