"""Invoices, currencies, resends and credit notes on the database: the real services, the real mailer
writing .eml files, and the PDFs read back as a customer's accounts-payable department would."""

from __future__ import annotations

import email
import email.policy
import io
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pypdf
import pytest
from sqlalchemy import select

from bot import workflow
from bot.billing import generate_month
from bot.errors import InvalidInput, InvalidTransition, NotAllowed
from bot.formatting import invoice_line
from bot.invoices import (
    CREDIT_NOTE,
    INVOICE,
    Invoicing,
    Issuer,
    check_number_format,
    next_number,
)
from bot.mailer import Mailer
from bot.periods import Period
from bot.settings import SettingsError, load_settings
from db.models import (
    ActionType,
    Bill,
    BillAction,
    BillStatus,
    CreditNote,
    Customer,
    Outbox,
    OutboxKind,
    Role,
)
from tests.factories import add_customer, add_user

PERIOD = Period(2026, 10)
TODAY = date(2026, 11, 3)
MAIL_FROM = "Billing <billing@vendor.example>"
ISSUER = Issuer("Vendor Cloud Ltd", "2 Harbour Road\nDublin D02\nIreland", "IE1234567X", "accounts@vendor.example")
INVOICING = Invoicing(issuer=ISSUER, payment_terms_days=14)


@pytest.fixture
def people(session):
    return {
        "fiona": add_user(session, "fiona", Role.FINANCE),
        "sam": add_user(session, "sam", Role.SALES),
    }


@pytest.fixture
def mailer(tmp_path) -> Mailer:
    return Mailer(smtp_url=None, mail_dir=tmp_path / "mail", mail_from=MAIL_FROM, paper_size="Letter")


def final_bill(session, db, people, name="Acme", *, usage=1500, unit_cost="0.01", currency="USD") -> int:
    """An approved (FINAL) bill of October for `name`."""
    customer = add_customer(
        session, name, unit_cost=unit_cost, usage={(PERIOD.year, PERIOD.month): usage}
    )
    with db() as s, s.begin():
        s.get(Customer, customer.id).currency = currency
    with db() as s:
        generate_month(session=s, period=PERIOD, actor=people["fiona"], today=TODAY)
    with db() as s:
        bill_id = s.scalar(select(Bill.id).where(Bill.customer_id == customer.id))
    with db() as s:
        workflow.approve(session=s, bill_id=bill_id, actor=people["sam"])
    return bill_id


def send(db, bill_id, people, mailer) -> Bill:
    with db() as s:
        return workflow.send(
            session=s, bill_id=bill_id, actor=people["fiona"], deliver=mailer.send_bill, invoicing=INVOICING
        )


def emails(mailer: Mailer) -> list[email.message.EmailMessage]:
    paths = sorted(Path(mailer.mail_dir).glob("*.eml"), key=lambda path: path.stat().st_mtime_ns)
    return [email.message_from_bytes(path.read_bytes(), policy=email.policy.default) for path in paths]


def pdfs(message) -> dict[str, str]:
    """Each PDF attached to the message, by file name, as the text a reader extracts from it."""
    found = {}
    for part in message.iter_attachments():
        assert part.get_content_type() == "application/pdf"
        reader = pypdf.PdfReader(io.BytesIO(part.get_content()))
        found[part.get_filename()] = "\n".join(page.extract_text() for page in reader.pages)
    return found


def today() -> date:
    return INVOICING.today()


# --- numbers -------------------------------------------------------------------------------------------


def test_sending_gives_each_bill_the_next_invoice_number_and_its_dates(db, session, people, mailer):
    first = final_bill(session, db, people, "Acme")
    second = final_bill(session, db, people, "Globex")

    sent = [send(db, bill_id, people, mailer) for bill_id in (second, first)]

    year = today().year
    assert [bill.invoice_number for bill in sent] == [f"BP-{year}-000001", f"BP-{year}-000002"]
    for bill in sent:
        assert bill.status is BillStatus.SENT
        assert bill.issue_date == today()
        assert bill.due_date == today() + timedelta(days=14)
        assert bill.issuer == {
            "name": "Vendor Cloud Ltd",
            "address": ["2 Harbour Road", "Dublin D02", "Ireland"],
            "tax_id": "IE1234567X",
            "email": "accounts@vendor.example",
        }
        assert bill.bill_to["name"] == bill.customer.name
        assert bill.bill_to["address"] == ["1 Main Street, Springfield"]


def test_the_sequence_restarts_each_year_and_follows_the_format(db, session):
    with db() as s, s.begin():
        numbers = [next_number(s, INVOICE, 2026) for _ in range(3)]
        numbers += [next_number(s, INVOICE, 2027), next_number(s, CREDIT_NOTE, 2026)]
    assert numbers == [1, 2, 3, 1, 1]
    assert Invoicing(invoice_number_format="INV/{year}/{seq:04d}").invoice_number_format.format(
        year=2027, seq=7
    ) == "INV/2027/0007"


def test_a_rolled_back_transaction_gives_its_number_back(db, session):
    with db() as s:
        with s.begin():
            assert next_number(s, INVOICE, 2026) == 1
        s.begin()
        assert next_number(s, INVOICE, 2026) == 2
        s.rollback()
        with s.begin():
            assert next_number(s, INVOICE, 2026) == 2


def test_a_refused_send_keeps_the_number_for_the_retry_and_no_other_bill_takes_it(db, session, people, mailer, tmp_path):
    first = final_bill(session, db, people, "Acme")
    second = final_bill(session, db, people, "Globex")
    broken = Mailer(smtp_url=None, mail_dir=tmp_path / "not-a-folder", mail_from=MAIL_FROM)
    (tmp_path / "not-a-folder").write_text("a file where the folder should be")

    with pytest.raises(workflow.DeliveryFailed), db() as s:
        workflow.send(session=s, bill_id=first, actor=people["fiona"], deliver=broken.send_bill, invoicing=INVOICING)
    other = send(db, second, people, mailer)
    retried = send(db, first, people, mailer)

    year = today().year
    assert (retried.invoice_number, other.invoice_number) == (f"BP-{year}-000001", f"BP-{year}-000002")
    assert [message["Subject"].split()[1] for message in emails(mailer)] == [f"BP-{year}-000002", f"BP-{year}-000001"]


def test_a_send_retried_later_after_a_refusal_is_dated_and_addressed_as_of_the_retry(db, session, people, mailer,
                                                                                     tmp_path):
    bill_id = final_bill(session, db, people, "Acme")
    broken = Mailer(smtp_url=None, mail_dir=tmp_path / "not-a-folder", mail_from=MAIL_FROM)
    (tmp_path / "not-a-folder").write_text("a file where the folder should be")
    with pytest.raises(workflow.DeliveryFailed), db() as s:
        workflow.send(session=s, bill_id=bill_id, actor=people["fiona"], deliver=broken.send_bill, invoicing=INVOICING)
    with db() as s, s.begin():  # as if that refused send had been weeks ago, and the customer has moved since
        bill = s.get(Bill, bill_id)
        assert bill.invoice_number is not None and bill.status is BillStatus.FINAL
        bill.issue_date, bill.due_date = today() - timedelta(days=40), today() - timedelta(days=26)
        bill.customer.billing_address = "9 New Road, Springfield"
    with db() as s:
        assert "not sent yet" in invoice_line(s.get(Bill, bill_id))

    sent = send(db, bill_id, people, mailer)  # weeks later, with today's INVOICING

    assert sent.issue_date == today() and sent.due_date == today() + timedelta(days=14)
    assert sent.bill_to["address"] == ["9 New Road, Springfield"]


@pytest.mark.parametrize(
    ("pattern", "complaint"),
    [
        ("BP-{seq:06d}", "must contain {year}"),
        ("BP-{year}", "must contain {seq}"),
        ("BP-{year}-{number}", "only {year} and {seq}"),
        ("BP-{year-{seq}", "only {year} and {seq}"),
        ("X" * 60 + "{year}{seq}", "longer than 64"),
    ],
)
def test_a_number_format_that_cannot_make_distinct_numbers_is_refused_at_start(pattern, complaint):
    with pytest.raises(ValueError, match=complaint.replace("{", r"\{").replace("}", r"\}")):
        check_number_format(pattern)
    with pytest.raises(SettingsError, match="^INVOICE_NUMBER_FORMAT "):
        load_settings(_env_file=None, invoice_number_format=pattern)


def test_sending_email_needs_the_issuer_details_and_a_known_paper_size():
    with pytest.raises(SettingsError, match="ISSUER_ADDRESS, ISSUER_TAX_ID must be set when SMTP_URL is set"):
        load_settings(_env_file=None, smtp_url="smtp://mail.example:25", issuer_name="V", issuer_email="a@v.example")
    with pytest.raises(SettingsError, match="^ISSUER_EMAIL 'nobody' is not an email address"):
        load_settings(_env_file=None, issuer_email="nobody")
    with pytest.raises(SettingsError, match="^PAPER_SIZE must be A4 or Letter"):
        load_settings(_env_file=None, paper_size="A3")
    with pytest.raises(SettingsError, match="^PAYMENT_TERMS_DAYS"):
        load_settings(_env_file=None, payment_terms_days=-1)
    settings = load_settings(
        _env_file=None, smtp_url="smtp://mail.example:25", issuer_name="V", issuer_address="1 Road\\nTown",
        issuer_tax_id="T1", issuer_email="a@v.example", paper_size="letter",
    )
    assert Invoicing.from_settings(settings).issuer.as_stored()["address"] == ["1 Road", "Town"]
    assert settings.paper_size == "Letter"


# --- the document --------------------------------------------------------------------------------------


def test_the_email_carries_the_invoice_as_a_pdf_with_number_dates_amounts_and_both_addresses(
    db, session, people, mailer
):
    bill_id = final_bill(session, db, people, "Acme", usage=1_251_000, unit_cost="0.000125")
    bill = send(db, bill_id, people, mailer)

    (message,) = emails(mailer)
    number = bill.invoice_number
    assert message["Subject"] == f"Invoice {number} — API overage, October 2026"
    assert message["Message-ID"] == f"<bill-{bill_id}@vendor.example>"
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    assert "$156.25" in text and "$156.25" in html  # 1,250,000 over × $0.000125
    (name, content) = next(iter(pdfs(message).items()))
    assert name == f"{number}.pdf"
    issued = f"{today():%B} {today().day}, {today().year}"
    due_day = today() + timedelta(days=14)
    due = f"{due_day:%B} {due_day.day}, {due_day.year}"
    for expected in [
        "INVOICE", number, issued, due, "October 2026",
        "Vendor Cloud Ltd", "2 Harbour Road", "Dublin D02", "IE1234567X", "accounts@vendor.example",
        "Acme", "1 Main Street, Springfield", "billing@acme.example",
        "1,251,000 calls", "limit 1,000", "1,250,000", "$0.000125", "Total (USD)", "$156.25",
    ]:
        assert expected in content, expected


def test_the_pdf_is_the_paper_size_asked_for(db, session, people, tmp_path):
    a4 = Mailer(smtp_url=None, mail_dir=tmp_path / "a4", mail_from=MAIL_FROM, paper_size="A4")
    letter = Mailer(smtp_url=None, mail_dir=tmp_path / "letter", mail_from=MAIL_FROM, paper_size="Letter")
    sizes = []
    for mailer, name in ((a4, "Acme"), (letter, "Globex")):
        send(db, final_bill(session, db, people, name), people, mailer)
        (message,) = emails(mailer)
        attachment = next(message.iter_attachments())
        box = pypdf.PdfReader(io.BytesIO(attachment.get_content())).pages[0].mediabox
        sizes.append((round(float(box.width)), round(float(box.height))))
    assert sizes == [(595, 842), (612, 792)]  # points: A4 is 210 × 297 mm, Letter 8.5 × 11 in


# --- currencies ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "usage", "unit_cost", "amount", "shown"),
    [
        ("JPY", 1003, "0.5", Decimal(2), "¥2"),  # 1.5 rounds half-up to 2
        ("KWD", 1001, "0.0015", Decimal("0.002"), "KWD0.002"),  # 0.0015 half-up to 3 places
        ("KWD", 1003, "1.234567", Decimal("3.704"), "KWD3.704"),  # 3.703701
        ("USD", 1001, "0.005", Decimal("0.01"), "$0.01"),  # 0.005 half-up to the cent
        ("EUR", 1700, "0.333333", Decimal("233.33"), "€233.33"),
    ],
)
def test_amounts_round_half_up_to_the_currencys_minor_unit_and_stay_exact(
    db, session, people, mailer, currency, usage, unit_cost, amount, shown
):
    bill_id = final_bill(session, db, people, usage=usage, unit_cost=unit_cost, currency=currency)

    with db() as s:
        bill = s.get(Bill, bill_id)
        assert (bill.currency, bill.overage_amount) == (currency, amount)
        assert str(bill.overage_amount.normalize()) == str(amount.normalize())
    send(db, bill_id, people, mailer)
    (message,) = emails(mailer)
    content = next(iter(pdfs(message).values()))
    assert f"Total ({currency})" in content and shown in content


def test_an_amount_below_the_currencys_smallest_unit_is_not_billed(db, session, people):
    customer = add_customer(session, "Yen", unit_cost="0.4", usage={(PERIOD.year, PERIOD.month): 1001})
    with db() as s, s.begin():
        s.get(Customer, customer.id).currency = "JPY"
    with db() as s:
        summary = generate_month(session=s, period=PERIOD, actor=None, today=TODAY)
    assert summary.created == 0  # ¥0.4 rounds to ¥0


def test_totals_are_kept_per_currency(db, session, people):
    for name, currency in (("Acme", "USD"), ("Globex", "EUR"), ("Initech", "USD")):
        customer = add_customer(session, name, usage={(PERIOD.year, PERIOD.month): 1500})
        with db() as s, s.begin():
            s.get(Customer, customer.id).currency = currency
    with db() as s:
        summary = generate_month(session=s, period=PERIOD, actor=None, today=TODAY)
    assert summary.totals == {"EUR": Decimal("5.00"), "USD": Decimal("10.00")}
    assert summary.lines()[0] == "October 2026: 3 bills created, total €5.00 + $10.00"


# --- resend ------------------------------------------------------------------------------------------------


def test_a_sent_invoice_is_emailed_again_unchanged_to_another_address(db, session, people, mailer):
    bill_id = final_bill(session, db, people)
    sent = send(db, bill_id, people, mailer)

    with db() as s:
        again = workflow.resend(
            session=s, bill_id=bill_id, actor=people["fiona"], deliver=mailer.resend_bill, to="ap@acme.example"
        )

    assert again.invoice_number == sent.invoice_number and again.status is BillStatus.SENT
    first, second = emails(mailer)
    assert second["To"] == "ap@acme.example"
    assert second["Subject"] == first["Subject"]
    assert second["Message-ID"] != first["Message-ID"]  # sent on purpose: no mail system drops it as a copy
    assert list(pdfs(second)) == [f"{sent.invoice_number}.pdf"]
    action = again.actions[-1]
    assert (action.action, action.stakeholder.name) == (ActionType.RESEND, "fiona")
    assert action.comment.startswith(f"invoice {sent.invoice_number} emailed again to ap@acme.example via ")
    with db() as s:
        reply = s.scalar(select(Outbox).where(Outbox.kind == OutboxKind.THREAD_REPLY).order_by(Outbox.id.desc()))
        assert reply.payload == {"action_id": action.id}  # written in the resend's transaction


def test_resend_is_for_finance_and_sent_bills_and_a_real_address(db, session, people, mailer):
    bill_id = final_bill(session, db, people)
    with pytest.raises(InvalidTransition, match="is FINAL; only a SENT bill's invoice can be sent again"), db() as s:
        workflow.resend(session=s, bill_id=bill_id, actor=people["fiona"], deliver=mailer.resend_bill)
    send(db, bill_id, people, mailer)
    with pytest.raises(NotAllowed, match="Only Finance can resend bills"), db() as s:
        workflow.resend(session=s, bill_id=bill_id, actor=people["sam"], deliver=mailer.resend_bill)
    with pytest.raises(InvalidInput, match="must be an email address such as billing@example.com, not 'ap at acme'"), db() as s:
        workflow.resend(session=s, bill_id=bill_id, actor=people["fiona"], deliver=mailer.resend_bill, to="ap at acme")
    assert len(emails(mailer)) == 1
    with db() as s:
        assert [a.action for a in s.get(Bill, bill_id).actions][-1] is ActionType.SEND


# --- credit notes -----------------------------------------------------------------------------------------


def credit(db, bill_id, people, mailer, amount, reason="Outage on October 14"):
    with db() as s:
        return workflow.credit(
            session=s, bill_id=bill_id, actor=people["fiona"], amount=amount, reason=reason,
            deliver=mailer.send_credit_note, invoicing=INVOICING,
        )


def test_a_credit_note_is_numbered_emailed_with_its_pdf_and_recorded(db, session, people, mailer):
    bill_id = final_bill(session, db, people, usage=3000)  # 2,000 over × $0.01 = $20.00
    invoice = send(db, bill_id, people, mailer).invoice_number

    first = credit(db, bill_id, people, mailer, "7.50")
    second = credit(db, bill_id, people, mailer, Decimal("2.5"), reason="Goodwill")

    year = today().year
    assert (first.note.number, second.note.number) == (f"CN-{year}-000001", f"CN-{year}-000002")
    assert first.email_error is None and first.note.emailed_at is not None
    message = emails(mailer)[1]
    assert message["Subject"] == f"Credit note CN-{year}-000001 — invoice {invoice}"
    content = pdfs(message)[f"CN-{year}-000001.pdf"]
    for expected in ["CREDIT NOTE", f"CN-{year}-000001", invoice, "Reason: Outage on October 14", "$7.50",
                     "Vendor Cloud Ltd", "Acme", "1 Main Street, Springfield"]:
        assert expected in content, expected
    with db() as s:
        bill = s.get(Bill, bill_id)
        assert bill.status is BillStatus.SENT and bill.overage_amount == Decimal("20.00")
        assert [(note.amount, note.reason) for note in bill.credit_notes] == [
            (Decimal("7.50"), "Outage on October 14"), (Decimal("2.50"), "Goodwill")
        ]
        credits = [action for action in bill.actions if action.action is ActionType.CREDIT]
        assert [action.credit_note_id for action in credits] == [first.note.id, second.note.id]
        assert credits[0].comment == f"credit note CN-{year}-000001 for $7.50: Outage on October 14"


def test_credit_notes_never_add_up_to_more_than_the_invoice(db, session, people, mailer):
    bill_id = final_bill(session, db, people)  # $5.00
    send(db, bill_id, people, mailer)
    credit(db, bill_id, people, mailer, "4.00")

    with pytest.raises(InvalidInput, match=r"at most \$1.00 \(the invoice is for \$5.00, \$4.00 of it credited"):
        credit(db, bill_id, people, mailer, "1.01")
    credit(db, bill_id, people, mailer, "1")
    with pytest.raises(InvalidTransition, match="is credited in full already"):
        credit(db, bill_id, people, mailer, "0.01")
    with db() as s:
        assert sum(note.amount for note in s.scalars(select(CreditNote))) == Decimal("5.00")


@pytest.mark.parametrize(
    ("amount", "complaint"),
    [
        ("0", "must be more than zero"),
        ("-3", "must be more than zero"),
        ("1.005", "too many decimal places: USD amounts have at most 2"),
        ("lots", "is not an amount"),
        ("1,50", "is not an amount in USD"),  # a comma groups thousands: never read as 150
        ("€1.00", "is not an amount in USD"),  # another currency's symbol
    ],
)
def test_a_wrong_credit_changes_nothing(db, session, people, mailer, amount, complaint):
    bill_id = final_bill(session, db, people)
    send(db, bill_id, people, mailer)
    with pytest.raises(InvalidInput, match=complaint):
        credit(db, bill_id, people, mailer, amount)
    with pytest.raises(InvalidInput, match="A reason is required to issue a credit note"):
        credit(db, bill_id, people, mailer, "1", reason="  ")
    with db() as s:
        assert s.scalars(select(CreditNote)).all() == []
        assert [a.action for a in s.get(Bill, bill_id).actions][-1] is ActionType.SEND


def test_sends_resends_and_credit_notes_cannot_be_undone(db, session, people, mailer):
    bill_id = final_bill(session, db, people)
    send(db, bill_id, people, mailer)
    credit(db, bill_id, people, mailer, "1")
    with db() as s:
        workflow.resend(session=s, bill_id=bill_id, actor=people["fiona"], deliver=mailer.resend_bill)
    with pytest.raises(InvalidTransition, match="a sent bill cannot be undone"), db() as s:
        workflow.undo(session=s, bill_id=bill_id, actor=people["fiona"])
    with db() as s:
        actions = s.scalars(select(BillAction.action).where(BillAction.bill_id == bill_id)).all()
    assert actions[-3:] == [ActionType.SEND, ActionType.CREDIT, ActionType.RESEND]
    # The invoice sent again carries the credit note issued against it.
    assert len(pdfs(emails(mailer)[-1])) == 2
