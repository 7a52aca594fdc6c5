"""Modal submissions: the reason for rejecting a bill.

The rejection runs before the acknowledgement (it is one short transaction), so that a refusal is
shown inside the modal, on the reason field, and the modal stays open; once Slack shows the modal as
submitted, the rejection is recorded.
"""

from __future__ import annotations

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from bot import outbox, workflow
from bot.errors import AlreadyDone, BillProcessError
from bot.parsing import parse_reason
from bot.slack_ids import BlockId, CallbackId, InputId, parse_bill_value
from handlers.identity import linked_user


def _reason(view: dict) -> str | None:
    values = view.get("state", {}).get("values", {})
    return (values.get(BlockId.REJECT_REASON.value, {}).get(InputId.REJECT_REASON.value) or {}).get("value")


def reject_submitted(ack: Ack, body: dict, view: dict, client: WebClient, context: BoltContext) -> None:
    services = context["services"]
    bill_id = None
    try:
        reason = parse_reason(_reason(view), required=True)
        user = linked_user(services, client, body["user"]["id"])
        bill_id, seen_action_id = parse_bill_value(view.get("private_metadata"))
        with services.sessions() as session:
            workflow.reject(
                session=session, bill_id=bill_id, actor=user, reason=reason, seen_action_id=seen_action_id
            )
    except BillProcessError as refusal:
        # Shown on the reason field; the person can cancel, or change the reason and try again.
        ack(response_action="errors", errors={BlockId.REJECT_REASON.value: str(refusal)})
        if isinstance(refusal, AlreadyDone) and bill_id is not None:
            services.queue(lambda session: outbox.refresh_bill(session, bill_id))
        return
    # The rejection and what Slack must show of it committed together (bot/outbox.py) before this.
    ack()


def register(app: App) -> None:
    app.view(CallbackId.REJECT_MODAL.value)(reject_submitted)
