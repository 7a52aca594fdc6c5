"""Clicks on a bill's buttons: Approve, Reject (opens the reason modal), Send, Send again, Mark as sent and Undo.

A button says which bill it is for and the version of the bill it was shown with (its latest effective
action); every click reloads the bill, checks the clicking person's rights in the workflow service, and
is refused when the bill changed since. Every click but Reject is recorded in the outbox, then
acknowledged (click_job, read by handlers/jobs.py before any listener runs), and applied by the
delivery workers, which tell the person about a refusal; Reject opens its modal at once, since Slack's
trigger_id expires within three seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient
from sqlalchemy.orm import Session

from bot import workflow
from bot.bills import get_bill
from bot.blocks.bill import reject_modal
from bot.errors import BillProcessError
from bot.slack_ids import ActionId, parse_bill_value, parse_undo_value
from db.models import ActionType, Bill, User
from handlers.errors import clicked_in_home, refuse
from handlers.identity import linked_user
from handlers.jobs import Job, JobType


@dataclass(frozen=True)
class Click:
    """One click on a bill's button, as much of it as applying it needs (it is stored with the job)."""

    action_id: str
    slack_user_id: str
    value: str | None
    response_url: str | None
    from_home: bool = False  # clicked in the App Home tab, which is refreshed after a refusal

    @classmethod
    def read(cls, body: dict) -> Click:
        action = (body.get("actions") or [{}])[0]
        return cls(
            action.get("action_id", ""),
            body["user"]["id"],
            action.get("value"),
            body.get("response_url"),
            from_home=clicked_in_home(body),
        )

    @property
    def bill_id(self) -> int | None:
        """The bill the button names, when it names one (clicks on one bill are applied in order)."""
        try:
            return parse_bill_value(self.value)[0]
        except BillProcessError:
            return None


def _approve(session: Session, user: User, value: str | None, services) -> Bill:
    bill_id, seen_action_id = parse_bill_value(value)
    return workflow.approve(session=session, bill_id=bill_id, actor=user, seen_action_id=seen_action_id)


def _send(session: Session, user: User, value: str | None, services, *, again: bool = False) -> Bill:
    bill_id, seen_action_id = parse_bill_value(value)
    return workflow.send(
        session=session,
        bill_id=bill_id,
        actor=user,
        deliver=services.mailer.send_bill,
        seen_action_id=seen_action_id,
        again=again,
        invoicing=services.invoicing,
    )


def _send_again(session: Session, user: User, value: str | None, services) -> Bill:
    return _send(session, user, value, services, again=True)


def _mark_sent(session: Session, user: User, value: str | None, services) -> Bill:
    bill_id, seen_action_id = parse_bill_value(value)
    return workflow.mark_delivered(session=session, bill_id=bill_id, actor=user, seen_action_id=seen_action_id)


def _undo(session: Session, user: User, value: str | None, services) -> Bill:
    # The button names the action the person saw; if another undo or action came first, nothing is undone.
    bill_id, action_id = parse_undo_value(value)
    return workflow.undo(session=session, bill_id=bill_id, actor=user, action_id=action_id)


SERVICES: dict[str, Callable[..., Bill]] = {
    ActionId.APPROVE.value: _approve,
    ActionId.SEND.value: _send,
    ActionId.SEND_AGAIN.value: _send_again,
    ActionId.MARK_SENT.value: _mark_sent,
    ActionId.UNDO.value: _undo,
}


def apply_click(services, job_id: int, click: Click) -> None:
    """Apply one recorded click: its service commits the change with the job's end; a refusal is answered."""
    try:
        user = linked_user(services, services.client, click.slack_user_id)
        with services.sessions() as session:
            SERVICES[click.action_id](session, user, click.value, services)
    except BillProcessError as error:
        refuse(services, job_id, click.slack_user_id, click.response_url, error, from_home=click.from_home)


def click_job(body: dict) -> Job | None:
    """The job a click on a button of SERVICES records, before its acknowledgement (handlers/jobs.py)."""
    actions = body.get("actions")
    first = actions[0] if isinstance(actions, list) and actions else None
    if body.get("type") != "block_actions" or not isinstance(first, dict) or first.get("action_id") not in SERVICES:
        return None
    click = Click.read(body)
    return Job(JobType.CLICK, click.slack_user_id, click.bill_id, asdict(click))


def reject_clicked(ack: Ack, body: dict, client: WebClient, context: BoltContext) -> None:
    """Open the modal asking for the reason, unless the person may not reject the bill now."""
    ack()
    services = context["services"]
    user = linked_user(services, client, body["user"]["id"])
    bill_id, seen_action_id = parse_bill_value(Click.read(body).value)
    with services.sessions() as session:
        bill = get_bill(session=session, bill_id=bill_id)
        # Refused clicks get the workflow's reason instead of a modal; the submission checks again,
        # against the version the modal shows.
        workflow.check(bill, user, ActionType.REJECT)
        workflow.check_unchanged(bill, seen_action_id, "rejecting")
        view = reject_modal(bill)
    client.views_open(trigger_id=body.get("trigger_id"), view=view)


def register(app: App) -> None:
    app.action(ActionId.REJECT.value)(reject_clicked)
