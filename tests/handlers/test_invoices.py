"""Invoices in Slack: `/bill resend`, `/bill credit`, the Invoice PDF button, and a usage correction's
thread reply, through the real app, its delivery workers and the fake Slack."""

from __future__ import annotations

import io
from datetime import date
from zoneinfo import ZoneInfo

import pypdf
import pytest
from sqlalchemy import select

from bot import workflow
from bot.imports import import_usage
from bot.invoices import Invoicing
from bot.periods import Period
from bot.slack_ids import ActionId, bill_value
from db.models import ActionType, Bill, BillStatus, CreditNote, Role
from tests.factories import add_customer
from tests.slack_helpers import texts, wait_until

PERIOD = Period.previous(ZoneInfo("UTC"))
FINANCE, SALES = "UFIONA01", "USAM0001"


@pytest.fixture
def sent(slack) -> Bill:
    """A bill of PERIOD, posted in the channel, approved and sent."""
    fiona = slack.user("fiona", Role.FINANCE, FINANCE)
    sam = slack.user("sam", Role.SALES, SALES)
    with slack.db() as session:
        add_customer(session, "Acme", start=date(2020, 1, 1), usage={(PERIOD.year, PERIOD.month): 3000})
    slack.ask(FINANCE, "generate")
    with slack.db() as session:
        bill_id = session.scalar(select(Bill.id))
    with slack.db() as session:
        workflow.approve(session=session, bill_id=bill_id, actor=sam)
    with slack.db() as session:
        workflow.send(session=session, bill_id=bill_id, actor=fiona, deliver=slack_mailer(slack).send_bill,
                      invoicing=Invoicing())
    slack.settle()
    with slack.db() as session:
        return session.get(Bill, bill_id)


def slack_mailer(slack):
    from bot.mailer import Mailer

    return Mailer.from_settings(slack.settings)


def thread(slack, bill: Bill) -> list[str]:
    return [message["text"] for message in slack.fake.thread_replies(bill.slack_channel, bill.slack_ts)]


def test_resend_emails_the_same_invoice_to_the_address_given_and_tells_the_thread(slack, sent):
    answer = texts(slack.ask(FINANCE, f"resend {sent.id} <mailto:ap@acme.example|ap@acme.example>"))

    assert f"Bill #{sent.id}: invoice {sent.invoice_number} emailed again to ap@acme.example" in answer
    slack.settle()
    assert any(f"<@{FINANCE}> sent again bill #{sent.id} (invoice {sent.invoice_number} emailed again to"
               f" ap@acme.example" in text for text in thread(slack, sent))
    emails = sorted(slack.settings.mail_dir.glob("*.eml"))
    assert len(emails) == 2 and b"To: ap@acme.example" in emails[-1].read_bytes()


def test_credit_issues_a_numbered_note_and_tells_the_thread(slack, sent):
    answer = texts(slack.ask(FINANCE, f"credit {sent.id} 7.50 Outage on the 14th & 15th"))

    year = Invoicing().today().year
    assert answer == (
        f":receipt: Credit note CN-{year}-000001 for $7.50 issued against invoice {sent.invoice_number}"
        f" (bill #{sent.id}) and emailed to billing@acme.example."
    )
    with slack.db() as session:
        (note,) = session.scalars(select(CreditNote))
        assert (note.reason, note.emailed_at is not None) == ("Outage on the 14th & 15th", True)
    slack.settle()
    reply = next(text for text in thread(slack, sent) if "credit note" in text)
    assert f"<@{FINANCE}> issued credit note CN-{year}-000001 for $7.50 against invoice {sent.invoice_number}" in reply
    assert "Outage on the 14th &amp; 15th" in reply


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("credit 1", "`/bill credit` needs an amount. Usage: `/bill credit &lt;id&gt;"),
        ("credit 1 5", "`/bill credit` needs a reason."),
        ("credit 1 500 too much", "cannot exceed what is left of invoice"),
        ("resend 1 someone", "must be an email address such as billing@example.com, not 'someone'"),
    ],
)
def test_a_wrong_resend_or_credit_says_why_and_changes_nothing(slack, sent, text, expected):
    answer = texts(slack.ask(FINANCE, text.replace(" 1", f" {sent.id}", 1)))
    assert expected in answer
    with slack.db() as session:
        assert session.get(Bill, sent.id).actions[-1].action is ActionType.SEND
        assert session.scalars(select(CreditNote)).all() == []


def test_only_finance_resends_or_credits(slack, sent):
    assert "Only Finance can credit bills" in texts(slack.ask(SALES, f"credit {sent.id} 1 goodwill"))
    assert "Only Finance can resend bills" in texts(slack.ask(SALES, f"resend {sent.id}"))


def test_the_pdf_button_uploads_the_invoice_to_the_clickers_direct_messages(slack, sent):
    response = slack.click(SALES, ActionId.PDF.value, bill_value(sent.id))
    assert response.status == 200

    completed = slack.fake.wait_for("files.completeUploadExternal")
    assert completed[0]["channel_id"] == slack.fake.dm_channel(SALES)
    assert slack.fake.last("files.getUploadURLExternal")["filename"] == f"{sent.invoice_number}.pdf"
    (content,) = slack.fake.uploads.values()
    text = pypdf.PdfReader(io.BytesIO(content)).pages[0].extract_text()
    assert sent.invoice_number in text and "$20.00" in text and "Acme" in text
    assert "I sent you" in texts(slack.replies(SALES)[-1])


def test_show_offers_the_pdf_and_a_bill_without_an_invoice_has_none(slack, sent):
    answer = slack.ask(SALES, f"show {sent.id}")
    buttons = [element for block in answer["blocks"] if block["type"] == "actions" for element in block["elements"]]
    assert [(button["action_id"], button["value"]) for button in buttons] == [
        (ActionId.PDF.value, bill_value(sent.id))
    ]
    with slack.db() as session:
        other = add_customer(session, "Globex", start=date(2020, 1, 1), usage={(PERIOD.year, PERIOD.month): 2000})
    slack.ask(FINANCE, "generate")
    with slack.db() as session:
        draft = session.scalar(select(Bill.id).where(Bill.customer_id == other.id))
    slack.click(SALES, ActionId.PDF.value, bill_value(draft))
    assert "has no invoice yet" in texts(slack.replies(SALES, 2)[-1])


def test_a_usage_correction_updates_the_bill_message_and_says_what_changed_in_its_thread(slack):
    slack.user("fiona", Role.FINANCE, FINANCE)
    with slack.db() as session:
        add_customer(session, "Acme", start=date(2020, 1, 1), usage={(PERIOD.year, PERIOD.month): 3000})
    slack.ask(FINANCE, "generate")
    slack.settle()

    with slack.db() as session:
        text = f"customer,year,month,api_usage\nAcme,{PERIOD.year},{PERIOD.month},2000\n"
        import_usage(session=session, file=io.StringIO(text), source="late.csv")
    slack.settle()

    with slack.db() as session:
        bill = session.scalar(select(Bill))
    assert bill.status is BillStatus.DRAFT
    reply = wait_until(lambda: [t for t in thread(slack, bill) if "recomputed" in t], 1, "the correction's reply")[0]
    assert reply.startswith(
        f":arrows_counterclockwise: A usage import recomputed bill #{bill.id}: usage import of late.csv:"
        " usage 3,000 → 2,000 calls, amount $20.00 → $10.00; approvals start over."
    )
    message = next(m for m in slack.fake.messages() if m.get("ts") == bill.slack_ts)
    assert "$10.00" in texts(message)
