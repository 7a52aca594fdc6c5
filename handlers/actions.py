"""Clicks on a bill's buttons: Approve, Reject (opens the reason modal), Send and Undo.

A button only says which bill it is for; every click reloads the bill and checks the clicking person's
rights in the workflow service. Refusals are raised and shown by handlers.errors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient
from sqlalchemy.orm import Session

from bot import workflow
from bot.bills import get_bill
from bot.blocks.bill import already_done_text, reject_modal
from bot.errors import AlreadyDone
from bot.slack_ids import ActionId, parse_bill_value, parse_undo_value
from db.models import ActionType, Bill, User
from handlers.identity import linked_user


@dataclass(frozen=True)
class Click:
    """One click on a bill's button: who clicked (their account) and the value the button carried."""

    services: object  # handlers.app.Services
    client: WebClient
    user: User
    value: str | None
    trigger_id: str | None

    @classmethod
    def read(cls, body: dict, client: WebClient, context: BoltContext) -> Click:
        services = context["services"]
        user = linked_user(services, client, body["user"]["id"])
        action = (body.get("actions") or [{}])[0]
        return cls(services, client, user, action.get("value"), body.get("trigger_id"))


@contextmanager
def showing_the_winner(services, bill_id: int) -> Iterator[None]:
    """When someone else's action got there first: refresh the bill's message and name them."""
    try:
        yield
    except AlreadyDone as refusal:
        services.notifier.refresh_message(bill_id)
        raise AlreadyDone(
            already_done_text(refusal),
            bill_id=refusal.bill_id,
            action=refusal.action,
            user_id=refusal.user_id,
            user_name=refusal.user_name,
            slack_user_id=refusal.slack_user_id,
            at=refusal.at,
        ) from refusal


def _change(click: Click, bill_id: int, service: Callable[[Session], Bill]) -> None:
    """Run one workflow service in a fresh session, then tell Slack about the change."""
    with showing_the_winner(click.services, bill_id):
        with click.services.sessions() as session:
            bill = service(session)
    # The service appended exactly one action: the one to post in the bill's thread.
    click.services.notifier.bill_changed(bill.id, action_id=bill.actions[-1].id)


def approve_clicked(ack: Ack, body: dict, client: WebClient, context: BoltContext) -> None:
    ack()
    click = Click.read(body, client, context)
    bill_id = parse_bill_value(click.value)
    _change(click, bill_id, lambda session: workflow.approve(session=session, bill_id=bill_id, actor=click.user))


def send_clicked(ack: Ack, body: dict, client: WebClient, context: BoltContext) -> None:
    ack()
    click = Click.read(body, client, context)
    bill_id = parse_bill_value(click.value)
    deliver = click.services.mailer.send_bill
    _change(
        click,
        bill_id,
        lambda session: workflow.send(session=session, bill_id=bill_id, actor=click.user, deliver=deliver),
    )


def undo_clicked(ack: Ack, body: dict, client: WebClient, context: BoltContext) -> None:
    ack()
    click = Click.read(body, client, context)
    # The button names the action the person saw; if another undo or action came first, nothing is undone.
    bill_id, action_id = parse_undo_value(click.value)
    _change(
        click,
        bill_id,
        lambda session: workflow.undo(session=session, bill_id=bill_id, actor=click.user, action_id=action_id),
    )


def reject_clicked(ack: Ack, body: dict, client: WebClient, context: BoltContext) -> None:
    """Open the modal asking for the reason, unless the person may not reject the bill now."""
    ack()
    click = Click.read(body, client, context)
    bill_id = parse_bill_value(click.value)
    with showing_the_winner(click.services, bill_id):
        with click.services.sessions() as session:
            bill = get_bill(session=session, bill_id=bill_id)
            # Refused clicks get the workflow's reason instead of a modal; the submission checks again.
            workflow.check(bill, click.user, ActionType.REJECT)
            view = reject_modal(bill)
    click.client.views_open(trigger_id=click.trigger_id, view=view)


def register(app: App) -> None:
    app.action(ActionId.APPROVE.value)(approve_clicked)
    app.action(ActionId.REJECT.value)(reject_clicked)
    app.action(ActionId.SEND.value)(send_clicked)
    app.action(ActionId.UNDO.value)(undo_clicked)
