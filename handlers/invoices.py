"""The Invoice PDF button (on a bill's message and in `/bill show`): the invoice, uploaded to the direct
messages of whoever clicked it. Reading a document changes nothing, so it is answered at once after the
acknowledgement rather than recorded as a job."""

from __future__ import annotations

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient

from bot.bills import get_bill
from bot.pdf import invoice_pdf
from bot.slack_ids import ActionId, parse_bill_value
from handlers.identity import linked_user


def pdf_clicked(ack: Ack, body: dict, client: WebClient, respond: Respond, context: BoltContext) -> None:
    ack()
    services = context["services"]
    slack_user_id = body["user"]["id"]
    linked_user(services, client, slack_user_id)  # any linked account may read bills
    action = (body.get("actions") or [{}])[0]
    bill_id, _ = parse_bill_value(action.get("value"))
    with services.sessions() as session:
        bill = get_bill(session=session, bill_id=bill_id)
        filename, content = invoice_pdf(bill, paper_size=services.settings.paper_size)
        title = f"Invoice {bill.invoice_number} · {bill.customer.name}"
    channel = client.conversations_open(users=slack_user_id)["channel"]["id"]
    client.files_upload_v2(
        channel=channel,
        file=content,
        filename=filename,
        title=title,
        initial_comment=f"The invoice of bill #{bill_id}, as the customer received it.",
    )
    if body.get("response_url"):
        respond(
            text=f"I sent you `{filename}` in our direct messages.",
            response_type="ephemeral",
            replace_original=False,
        )


def register(app: App) -> None:
    app.action(ActionId.PDF.value)(pdf_clicked)
