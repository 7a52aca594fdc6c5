"""Clicks and commands that change bills: recorded before Slack's acknowledgement, applied afterwards.

Recording is one short insert, so acknowledgements stay fast; the delivery workers (bot/delivery.py)
apply each job, and the change it causes marks the job done in the change's own transaction, so a job
is applied exactly once whichever process dies when.
"""

from __future__ import annotations

import enum

from sqlalchemy.exc import DBAPIError

from bot import outbox
from db.models import Outbox
from handlers.errors import is_database_outage, refuse


class JobType(str, enum.Enum):
    CLICK = "click"  # a click on a bill's Approve, Send or Undo button
    COMMAND = "command"  # a `/bill` subcommand that changes something


def record_job(services, job_type: JobType, slack_user_id: str, bill_id: int | None, fields: dict) -> None:
    """Store the job durably; raises when the database cannot take it (the person is then told)."""
    services.recorder.record(outbox.job_lane(slack_user_id, bill_id), slack_user_id, {"type": job_type.value, **fields})


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
