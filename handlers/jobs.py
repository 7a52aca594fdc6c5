"""Clicks and commands that change bills: recorded before Slack's acknowledgement, applied afterwards.

Recording is one short insert, so acknowledgements stay fast; the delivery workers (bot/delivery.py)
apply each job, and the change it causes marks the job done in the change's own transaction, so a job
is applied exactly once whichever process dies when.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.middleware import Middleware
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from bot import outbox
from db.models import Outbox, OutboxKind, OutboxStatus, utcnow
from db.session import GroupCommit, execute_committing, insert_once, stored_once
from handlers.errors import is_database_outage, refuse
from handlers.verification import SIGNED, Replayed, SignedRequest


class JobType(str, enum.Enum):
    CLICK = "click"  # a click on a bill's Approve, Send, Send again, Mark as sent or Undo button
    COMMAND = "command"  # a `/bill` subcommand that changes something


@dataclass(frozen=True)
class Job:
    """What a request asks to be done after its acknowledgement, as it is stored."""

    type: JobType
    slack_user_id: str
    bill_id: int | None  # the bill it names: jobs on one bill are applied in the order they came
    fields: dict


def record_job(job: Job, context) -> None:
    """Store the job durably, with its request's signature (none in Socket Mode); raises Replayed for a
    signature seen before, and what the database raised when it cannot take it (the person is then told)."""
    payload = {"type": job.type.value, **job.fields}
    lane = outbox.job_lane(job.slack_user_id, job.bill_id)
    if not context["services"].recorder.record(lane, job.slack_user_id, payload, signed=context.get(SIGNED)):
        raise Replayed()


class RecordJobs(Middleware):
    """Records the job a request asks for, then acknowledges it; other requests go on to the next middleware.

    It runs in the request's own thread, before any listener: the acknowledgement waits for the commit
    and for nothing else (a listener would run in Bolt's thread pool, its acknowledgement polled for).
    `readers` each return the job a request asks for, or None (actions.SERVICES and commands.CHANGING say which).
    """

    def __init__(self, *readers: Callable[[dict], Job | None]):
        self.readers = readers

    def process(self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]):
        for read in self.readers:
            job = read(req.body)
            if job is not None:
                record_job(job, req.context)
                return BoltResponse(status=200, body="")
        return next()


def register(app: App) -> None:
    from handlers import actions, commands  # they import this module

    app.use(RecordJobs(actions.click_job, commands.command_job))


class JobRecorder:
    """Records jobs, each under its request's signature as its unique key (a replay finds the key taken);
    requests that arrive together share one insert, on PostgreSQL a single statement committing itself."""

    def __init__(self, engine: Engine):
        if engine.dialect.name == "postgresql":
            self._commit = GroupCommit(engine, _insert_on_postgresql, name="job-recorder", autocommit=True)
        else:
            self._commit = GroupCommit(engine, _insert, name="job-recorder")

    def record(self, lane: str, slack_user_id: str, payload: dict, *, signed: SignedRequest | None = None) -> bool:
        """Store the job durably; False (and nothing stored) when its signature was seen before."""
        key = f"request:{signed.digest}" if signed is not None else None  # none in Socket Mode
        now = utcnow()  # status, attempts and outcome_unknown: the outbox's defaults (on PostgreSQL, the statement's)
        row = {"kind": OutboxKind.JOB, "lane": lane, "slack_user_id": slack_user_id, "payload": payload,
               "dedupe_key": key, "available_at": now, "created_at": now}
        return self._commit.submit(row)


def _insert(connection: Connection, rows: Sequence[dict]) -> list[bool]:
    return insert_once(connection, Outbox.__table__, "dedupe_key", rows)


# One statement whatever the number of rows, the jobs in one JSON parameter, so nothing in them needs escaping
# beyond JSON's own. Each payload travels as JSON text inside it: json_to_recordset decodes the strings it reads,
# and would refuse a NUL or a lone surrogate that a json column keeps as written.
_INSERT_ON_POSTGRESQL = """
INSERT INTO outbox (kind, lane, slack_user_id, payload, dedupe_key, status, attempts, outcome_unknown,
                    available_at, created_at)
SELECT CAST($2 AS varchar), job.lane, job.slack_user_id, CAST(job.payload AS json), job.dedupe_key,
       CAST($3 AS varchar), 0, false, job.at, job.at
FROM json_to_recordset(CAST($1 AS json))
     AS job(lane varchar, slack_user_id varchar, payload text, dedupe_key varchar, at timestamptz)
ON CONFLICT (dedupe_key) DO NOTHING
RETURNING dedupe_key
"""


def _insert_on_postgresql(connection: Connection, rows: Sequence[dict]) -> list[bool]:
    def insert(new: list[dict]) -> list[str | None]:
        jobs = [{"lane": row["lane"], "slack_user_id": row["slack_user_id"], "payload": json.dumps(row["payload"]),
                 "dedupe_key": row["dedupe_key"], "at": row["created_at"].isoformat()} for row in new]
        return execute_committing(connection, _INSERT_ON_POSTGRESQL, json.dumps(jobs), OutboxKind.JOB.value,
                                  OutboxStatus.PENDING.value)

    return stored_once(rows, itemgetter("dedupe_key"), insert)


def run_job(services, row: Outbox) -> None:
    """Apply one recorded job (the delivery workers' job runner)."""
    # The surfaces read and apply their jobs with this module's help: imported here, not at its top.
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
