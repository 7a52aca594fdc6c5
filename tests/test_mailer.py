"""Emailing bills: the message itself, SMTP_URL, and delivery to real SMTP servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import traceback
from datetime import date
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from bot import workflow
from bot.errors import (
    BillProcessError,
    DeliveryFailed,
    DeliveryUncertain,
    InvalidTransition,
    SendInProgress,
    SendUncertain,
)
from bot.invoices import Invoicing, Issuer, bill_to
from bot.mailer import Mailer, SmtpServer, bill_email, parse_smtp_url
from bot.settings import Settings, SettingsError
from db.models import Bill, BillStatus, Customer, Role
from tests.factories import add_customer, add_user

MAIL_FROM = "Billing <billing@vendor.example>"
ISSUER = Issuer("Vendor Cloud Ltd", "2 Harbour Road\nDublin", "IE1234567X", "billing@vendor.example")
USER = "billing-bot"
PASSWORD = "p@ss:w/rd%Zq9-secret"
PASSWORD_IN_URL = "p%40ss%3Aw%2Frd%25Zq9-secret"
ROOT = Path(__file__).resolve().parents[1]

# Some test servers take a password over plain SMTP on purpose; aiosmtpd warns about that.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")


def make_bill(*, name: str = "Acme", address: str = "1 Main Street\nSpringfield", **figures) -> Bill:
    customer = Customer(
        id=3,
        name=name,
        billing_address=address,
        billing_email="billing@acme.example",
        monthly_api_limit=1_000_000,
        overage_unit_cost=Decimal("0.000125"),
        start_date=date(2024, 1, 1),
        require_csm_approval=False,
    )
    values = dict(
        api_usage=1_500_000,
        monthly_api_limit=1_000_000,
        overage_units=500_000,
        overage_unit_cost=Decimal("0.000125"),
        overage_amount=Decimal("62.50"),
    )
    values.update(figures)
    return Bill(
        id=12,
        customer=customer,
        year=2026,
        month=10,
        status=BillStatus.FINAL,
        currency="USD",
        invoice_number="BP-2026-000012",
        issue_date=date(2026, 11, 3),
        due_date=date(2026, 12, 3),
        issuer=ISSUER.as_stored(),
        bill_to=bill_to(customer),
        **values,
    )


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


def parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


# --- the message ------------------------------------------------------------------------------


def test_bill_email_is_text_and_html_alternatives_addressed_to_the_billing_email():
    message = bill_email(make_bill(), mail_from=MAIL_FROM)

    assert message.get_content_type() == "multipart/mixed"
    body, attachment = message.iter_parts()
    assert [part.get_content_type() for part in body.iter_parts()] == ["text/plain", "text/html"]
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_filename() == "BP-2026-000012.pdf"
    assert message["To"] == "billing@acme.example"
    assert message["From"] == MAIL_FROM
    assert message["Subject"] == "Invoice BP-2026-000012 — API overage, October 2026"


@pytest.mark.parametrize("part", ["text", "html"])
def test_every_figure_of_the_bill_is_in_both_parts(part):
    text, html = parts(bill_email(make_bill(), mail_from=MAIL_FROM))
    body = text if part == "text" else html

    for figure in [
        "BP-2026-000012", "November 3, 2026", "December 3, 2026", "Acme", "October 2026", "1,500,000",
        "1,000,000", "500,000", "$0.000125", "$62.50", "Vendor Cloud Ltd", "2 Harbour Road", "IE1234567X",
    ]:
        assert figure in body
    assert "1 Main Street" in body and "Springfield" in body


def test_the_text_part_reads_as_a_statement():
    text, _ = parts(bill_email(make_bill(), mail_from=MAIL_FROM))

    assert "From:\n  Vendor Cloud Ltd\n  2 Harbour Road\n  Dublin\n  Tax ID: IE1234567X\n" in text
    assert "Bill to:\n  Acme\n  1 Main Street\n  Springfield\n  billing@acme.example\n" in text
    assert re.search(r"^Issue date: +November 3, 2026$", text, re.MULTILINE)
    assert re.search(r"^Due date: +December 3, 2026$", text, re.MULTILINE)
    assert re.search(r"^Unit cost: +\$0\.000125 per call$", text, re.MULTILINE)
    assert re.search(r"^Amount due: +\$62\.50$", text, re.MULTILINE)


@pytest.mark.parametrize(
    ("unit_cost", "amount", "shown_cost", "shown_amount"),
    [
        ("0.000125", "62.50", "$0.000125", "$62.50"),
        ("0.010000", "5000.00", "$0.01", "$5,000.00"),
        ("1.500000", "750000.00", "$1.50", "$750,000.00"),
        ("2.000000", "1000000.00", "$2.00", "$1,000,000.00"),
        ("0.000001", "0.50", "$0.000001", "$0.50"),
        ("0.123457", "61728.50", "$0.123457", "$61,728.50"),
    ],
)
def test_money_is_printed_exactly(unit_cost, amount, shown_cost, shown_amount):
    bill = make_bill(overage_unit_cost=Decimal(unit_cost), overage_amount=Decimal(amount))
    text, html = parts(bill_email(bill, mail_from=MAIL_FROM))

    assert f"{shown_cost} per call" in text and f"{shown_cost} per call" in html
    assert re.search(rf"^Amount due: +{re.escape(shown_amount)}$", text, re.MULTILINE)
    assert f"<strong>{shown_amount}</strong>" in html


def test_html_escapes_what_the_customer_typed():
    bill = make_bill(name='Smith & <Sons> "Ltd"', address="<b>Unit 4</b>\nO'Hare & Co")
    text, html = parts(bill_email(bill, mail_from=MAIL_FROM))

    assert "Smith &amp; &lt;Sons&gt; &quot;Ltd&quot;" in html
    assert "&lt;b&gt;Unit 4&lt;/b&gt;<br>" in html
    assert "O&#x27;Hare &amp; Co" in html
    assert "<Sons>" not in html and "<b>" not in html
    assert 'Smith & <Sons> "Ltd"' in text and "<b>Unit 4</b>" in text


def test_the_message_survives_the_wire_with_non_ascii_text():
    bill = make_bill(name="Müller Straße GmbH", address="Königsallee 1\nDüsseldorf")
    message = bill_email(bill, mail_from=MAIL_FROM)

    received = parse(message.as_bytes(policy=email.policy.SMTP))

    assert received["Subject"] == "Invoice BP-2026-000012 — API overage, October 2026"
    text, html = parts(received)
    assert "Müller Straße GmbH" in text and "Königsallee 1" in html


# --- SMTP_URL ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mx.example", SmtpServer("smtp", "mx.example", 25)),
        ("smtp://mx.example:2525", SmtpServer("smtp", "mx.example", 2525)),
        ("smtp://u:pw@mx.example:587?starttls=true", SmtpServer("smtp", "mx.example", 587, True, "u", "pw")),
        ("smtp://u:pw@mx.example:587?starttls=1", SmtpServer("smtp", "mx.example", 587, True, "u", "pw")),
        ("smtp://u:pw@mx.example:587?starttls=YES", SmtpServer("smtp", "mx.example", 587, True, "u", "pw")),
        ("smtp://mx.example?starttls=false", SmtpServer("smtp", "mx.example", 25)),
        ("smtps://u:pw@mx.example", SmtpServer("smtps", "mx.example", 465, False, "u", "pw")),
        ("SMTPS://u:pw@MX.Example:4650/", SmtpServer("smtps", "mx.example", 4650, False, "u", "pw")),
        (f"smtp://{USER}:{PASSWORD_IN_URL}@127.0.0.1", SmtpServer("smtp", "127.0.0.1", 25, False, USER, PASSWORD)),
        ("smtp://me%40corp.example:pw@[::1]:25", SmtpServer("smtp", "::1", 25, False, "me@corp.example", "pw")),
    ],
)
def test_smtp_url_forms(url, expected):
    assert parse_smtp_url(url) == expected


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("mail.example.com:25", "must start with smtp:// or smtps://"),
        ("https://u:hunter2secret@mail.example.com", "must start with smtp:// or smtps://"),
        ("smtp://", "names no mail server host"),
        ("smtp://u:hunter2secret@mail.example.com:99999", "is not a mail server URL"),
        ("smtp://u:hunter2secret@mail.example.com:abc", "is not a mail server URL"),
        ("smtp://u:hunter2/secret@mail.example.com", "percent-encode"),
        ("smtp://u:hunter2?secret@mail.example.com", "percent-encode"),
        ("smtp://u:hunter2#secret@mail.example.com", "percent-encode"),
        ("smtp://u:hunter2secret@mail.example.com/inbox", "must not have a path"),
        ("smtp://u:hunter2secret@mail.example.com?tls=1", "only one option"),
        ("smtp://u:hunter2secret@mail.example.com?starttls=maybe", "starttls must be true or false"),
        ("smtps://u:hunter2secret@mail.example.com?starttls=true", "drop starttls"),
        ("smtp://:hunter2secret@mail.example.com", "password but no user name"),
        ("smtp://u@mail.example.com", "user name but no password"),
    ],
)
def test_a_wrong_smtp_url_is_refused_without_repeating_it(url, complaint):
    with pytest.raises(SettingsError) as caught:
        Mailer(smtp_url=url, mail_dir=Path("mail"), mail_from=MAIL_FROM)

    assert complaint in str(caught.value)
    assert "SMTP_URL" in str(caught.value)
    assert "hunter2" not in str(caught.value) and "hunter2" not in repr(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__


def test_the_mailer_never_shows_its_password():
    url = f"smtps://{USER}:{PASSWORD_IN_URL}@mail.example.com"
    mailer = Mailer(smtp_url=url, mail_dir=Path("mail"), mail_from=MAIL_FROM)

    assert mailer.destination == "smtps://mail.example.com:465"
    for text in (repr(mailer), repr(mailer.server), str(mailer.server), str(vars(mailer))):
        assert PASSWORD not in text and PASSWORD_IN_URL not in text


def test_from_settings(tmp_path):
    smtp = Settings(
        _env_file=None,
        smtp_url="smtp://u:pw@mail.example.com:587?starttls=true",
        mail_from=MAIL_FROM,
        issuer_name=ISSUER.name,
        issuer_address=ISSUER.address,
        issuer_tax_id=ISSUER.tax_id,
        issuer_email=ISSUER.email,
        paper_size="letter",
    )
    files = Settings(_env_file=None, smtp_url=None, mail_dir=tmp_path / "outbox")
    blank = Settings(_env_file=None, smtp_url="", mail_dir=tmp_path / "outbox")

    assert Mailer.from_settings(smtp).destination == "smtp://mail.example.com:587"
    assert Mailer.from_settings(smtp).mail_from == MAIL_FROM
    assert Mailer.from_settings(smtp).paper_size == "Letter"
    assert Mailer.from_settings(files).destination == str(tmp_path / "outbox")
    assert Mailer.from_settings(blank).server is None


# --- SMTP servers on 127.0.0.1 ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Inbox:
    """An SMTP handler that keeps what it accepts, or answers DATA / RCPT with a refusal."""

    def __init__(self, *, refuse_data: str | None = None, refuse_rcpt: str | None = None):
        self.received: list = []
        self.refuse_data = refuse_data
        self.refuse_rcpt = refuse_rcpt

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse_rcpt:
            return self.refuse_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.refuse_data:
            return self.refuse_data
        self.received.append(envelope)
        return "250 Message accepted for delivery"


def accept_only(user: str, password: str):
    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data == (user.encode(), password.encode())
        return AuthResult(success=ok, handled=False)

    return authenticator


@pytest.fixture
def smtp_server():
    """Start aiosmtpd servers on 127.0.0.1 and free ports; all are stopped after the test."""
    started: list[Controller] = []

    def start(handler: Inbox, **options) -> Controller:
        controller = Controller(handler, hostname="127.0.0.1", port=free_port(), **options)
        controller.start()
        started.append(controller)
        return controller

    yield start
    for controller in started:
        controller.stop()


@pytest.fixture(scope="session")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, and its key."""
    assert shutil.which("openssl"), "the TLS tests need the openssl command to make a test certificate"
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def server_tls(certificate) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


@pytest.fixture
def trusting_test_cert(certificate) -> ssl.SSLContext:
    """A verifying client context whose only trusted certificate is the test server's."""
    return ssl.create_default_context(cafile=str(certificate[0]))


@pytest.fixture
def final_bill(session) -> Bill:
    customer = add_customer(session, "Acme", limit=1_000_000, unit_cost="0.000125")
    bill = Bill(
        customer_id=customer.id,
        year=2026,
        month=10,
        api_usage=1_500_000,
        monthly_api_limit=1_000_000,
        overage_units=500_000,
        overage_unit_cost=Decimal("0.000125"),
        overage_amount=Decimal("62.50"),
        status=BillStatus.FINAL,
    )
    session.add(bill)
    session.flush()
    Invoicing(issuer=ISSUER).issue_invoice(session, bill)
    session.commit()
    return bill


def mailer_for(url: str, **options) -> Mailer:
    options.setdefault("timeout", 5)
    return Mailer(smtp_url=url, mail_dir=Path("unused"), mail_from=MAIL_FROM, **options)


def our_log(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What was logged, leaving out aiosmtpd's own log ("mail.log"): that belongs to the test server."""
    return [record.getMessage() for record in caplog.records if record.name != "mail.log"]


def assert_secret_kept(caught: pytest.ExceptionInfo, caplog: pytest.LogCaptureFixture, *secrets: str) -> None:
    """Neither the error, nor anything chained to it, nor our log mentions a secret."""
    texts = [str(caught.value), repr(caught.value), "".join(traceback.format_exception(caught.value))]
    error: BaseException | None = caught.value
    while error is not None:
        texts += [str(error), repr(error), repr(error.args)]
        error = error.__cause__ or error.__context__
    texts += our_log(caplog)
    for secret in secrets:
        for text in texts:
            assert secret not in text


def test_an_accepted_bill_reaches_the_server_as_text_and_html(smtp_server, final_bill):
    inbox = Inbox()
    server = smtp_server(inbox)
    mailer = mailer_for(f"smtp://127.0.0.1:{server.port}")

    mailer.send_bill(final_bill)

    (envelope,) = inbox.received
    assert envelope.mail_from == "billing@vendor.example"
    assert envelope.rcpt_tos == ["billing@acme.example"]
    received = parse(envelope.original_content)
    assert received.get_content_type() == "multipart/mixed"
    assert [part.get_content_type() for part in received.walk()][1:] == [
        "multipart/alternative", "text/plain", "text/html", "application/pdf"
    ]
    assert received["To"] == "billing@acme.example"
    assert received["From"] == MAIL_FROM
    number = final_bill.invoice_number
    assert received["Subject"] == f"Invoice {number} — API overage, October 2026"
    assert received["Message-ID"] and received["Date"]
    figures = [number, "Acme", "October 2026", "1,500,000", "1,000,000", "500,000", "$0.000125", "$62.50"]
    for body in parts(received):
        for figure in figures:
            assert figure in body
        assert "1 Main Street, Springfield" in body


def test_deliver_says_where_the_message_went_without_credentials(smtp_server):
    inbox = Inbox()
    server = smtp_server(inbox, authenticator=accept_only(USER, PASSWORD), auth_require_tls=False)
    mailer = mailer_for(f"smtp://{USER}:{PASSWORD_IN_URL}@127.0.0.1:{server.port}")

    where = mailer.deliver(bill_email(make_bill(), mail_from=MAIL_FROM))

    assert where == f"smtp://127.0.0.1:{server.port}"
    assert len(inbox.received) == 1


def test_a_server_refusing_the_message_fails_delivery_and_names_server_and_reply(smtp_server, final_bill, db):
    server = smtp_server(Inbox(refuse_data="550 mailbox unavailable"))
    mailer = mailer_for(f"smtp://127.0.0.1:{server.port}")
    fiona = _finance(db)

    with pytest.raises(DeliveryFailed) as caught, db() as session:
        workflow.send(session=session, bill_id=final_bill.id, actor=fiona, deliver=mailer.send_bill)

    assert str(caught.value) == (
        f"the mail server at 127.0.0.1:{server.port} refused the message: 550 mailbox unavailable"
    )
    assert isinstance(caught.value, BillProcessError)
    with db() as session:
        bill = session.get(Bill, final_bill.id)
        assert bill.status == BillStatus.FINAL and bill.actions == []  # no SEND recorded


def test_a_bill_becomes_sent_once_the_server_accepted_its_one_email(smtp_server, final_bill, db):
    inbox = Inbox()
    server = smtp_server(inbox)
    mailer = mailer_for(f"smtp://127.0.0.1:{server.port}")

    with db() as session:
        bill = workflow.send(session=session, bill_id=final_bill.id, actor=_finance(db), deliver=mailer.send_bill)

    assert bill.status == BillStatus.SENT
    assert len(inbox.received) == 1
    assert bill.actions[-1].comment == (
        f"invoice {final_bill.invoice_number} emailed to billing@acme.example via smtp://127.0.0.1:{server.port}"
    )


def _finance(db):
    with db() as session:
        return add_user(session, "fiona", Role.FINANCE)


def test_a_refused_recipient_names_the_address(smtp_server):
    server = smtp_server(Inbox(refuse_rcpt="550 5.1.1 no such user"))

    with pytest.raises(DeliveryFailed, match=r"refused the recipient billing@acme\.example: 550 5\.1\.1 no such user"):
        mailer_for(f"smtp://127.0.0.1:{server.port}").send_bill(make_bill())


def test_nobody_listening_fails_delivery():
    port = free_port()

    with pytest.raises(DeliveryFailed) as caught:
        mailer_for(f"smtp://127.0.0.1:{port}").send_bill(make_bill())

    assert str(caught.value) == f"could not connect to the mail server at 127.0.0.1:{port}: connection refused"


def test_a_server_that_never_answers_times_out():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]

        with pytest.raises(DeliveryFailed) as caught:
            mailer_for(f"smtp://127.0.0.1:{port}", timeout=0.5).send_bill(make_bill())

    assert str(caught.value) == f"the mail server at 127.0.0.1:{port} did not answer within 0.5 seconds"


def test_login_with_user_and_password(smtp_server, caplog):
    inbox = Inbox()
    server = smtp_server(inbox, authenticator=accept_only(USER, PASSWORD), auth_require_tls=False, auth_required=True)

    mailer_for(f"smtp://{USER}:{PASSWORD_IN_URL}@127.0.0.1:{server.port}").send_bill(make_bill())

    assert len(inbox.received) == 1
    assert "SMTP_URL sends the mail password unencrypted" in caplog.text


def test_a_wrong_password_fails_delivery_without_showing_any_password(smtp_server, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "Wr0ng/pa$$word"
    server = smtp_server(Inbox(), authenticator=accept_only(USER, PASSWORD), auth_require_tls=False)
    url = f"smtp://{USER}:Wr0ng%2Fpa%24%24word@127.0.0.1:{server.port}"

    with pytest.raises(DeliveryFailed) as caught:
        mailer_for(url).send_bill(make_bill())

    assert str(caught.value).startswith(
        f"the mail server at 127.0.0.1:{server.port} rejected the user name or password in SMTP_URL: 535"
    )
    assert_secret_kept(caught, caplog, wrong, "Wr0ng%2Fpa%24%24word", url, PASSWORD)
    assert "was not delivered" in caplog.text


def test_a_server_that_offers_no_login_is_reported(smtp_server):
    # With auth_require_tls left on and no TLS, the server does not advertise AUTH.
    server = smtp_server(Inbox(), authenticator=accept_only(USER, PASSWORD))

    with pytest.raises(DeliveryFailed, match="does not offer a login here"):
        mailer_for(f"smtp://{USER}:{PASSWORD_IN_URL}@127.0.0.1:{server.port}").send_bill(make_bill())


def test_a_server_that_needs_login_refuses_an_anonymous_sender(smtp_server):
    server = smtp_server(Inbox(), authenticator=accept_only(USER, PASSWORD), auth_require_tls=False, auth_required=True)

    with pytest.raises(DeliveryFailed, match=r"refused the sender billing@vendor\.example: 530"):
        mailer_for(f"smtp://127.0.0.1:{server.port}").send_bill(make_bill())


def test_starttls_with_login(smtp_server, server_tls, trusting_test_cert, caplog):
    caplog.set_level(logging.DEBUG)
    inbox = Inbox()
    server = smtp_server(
        inbox,
        tls_context=server_tls,
        require_starttls=True,
        authenticator=accept_only(USER, PASSWORD),
        auth_required=True,
    )
    url = f"smtp://{USER}:{PASSWORD_IN_URL}@127.0.0.1:{server.port}?starttls=true"
    mailer = mailer_for(url, ssl_context=trusting_test_cert)

    assert mailer.deliver(bill_email(make_bill(), mail_from=MAIL_FROM)) == f"smtp://127.0.0.1:{server.port}"
    assert len(inbox.received) == 1
    assert our_log(caplog)
    assert not any(PASSWORD in line or PASSWORD_IN_URL in line for line in our_log(caplog))


def test_starttls_verifies_the_certificate_by_default(smtp_server, server_tls, caplog):
    server = smtp_server(
        Inbox(), tls_context=server_tls, require_starttls=True, authenticator=accept_only(USER, PASSWORD)
    )

    with pytest.raises(DeliveryFailed) as caught:
        mailer_for(f"smtp://{USER}:{PASSWORD_IN_URL}@127.0.0.1:{server.port}?starttls=yes").send_bill(make_bill())

    assert str(caught.value).startswith(
        f"the mail server at 127.0.0.1:{server.port} did not present a trusted certificate"
    )
    assert "self-signed" in str(caught.value)
    assert_secret_kept(caught, caplog, PASSWORD, PASSWORD_IN_URL)


def test_starttls_asked_for_but_not_offered(smtp_server, trusting_test_cert):
    server = smtp_server(Inbox())

    with pytest.raises(DeliveryFailed, match="does not offer STARTTLS, which SMTP_URL asks for"):
        mailer = mailer_for(f"smtp://127.0.0.1:{server.port}?starttls=true", ssl_context=trusting_test_cert)
        mailer.send_bill(make_bill())


def test_smtps_with_login(smtp_server, server_tls, trusting_test_cert):
    inbox = Inbox()
    # aiosmtpd counts only STARTTLS as TLS for AUTH; this connection is encrypted from its first byte.
    server = smtp_server(
        inbox,
        ssl_context=server_tls,
        authenticator=accept_only(USER, PASSWORD),
        auth_require_tls=False,
        auth_required=True,
    )
    mailer = mailer_for(f"smtps://{USER}:{PASSWORD_IN_URL}@127.0.0.1:{server.port}", ssl_context=trusting_test_cert)

    assert mailer.deliver(bill_email(make_bill(), mail_from=MAIL_FROM)) == f"smtps://127.0.0.1:{server.port}"
    (envelope,) = inbox.received
    assert parse(envelope.original_content)["Subject"] == "Invoice BP-2026-000012 — API overage, October 2026"


def test_smtps_verifies_the_certificate_by_default(smtp_server, server_tls, caplog):
    server = smtp_server(Inbox(), ssl_context=server_tls, authenticator=accept_only(USER, PASSWORD))

    with pytest.raises(DeliveryFailed, match="did not present a trusted certificate") as caught:
        mailer_for(f"smtps://{USER}:{PASSWORD_IN_URL}@127.0.0.1:{server.port}").send_bill(make_bill())

    assert_secret_kept(caught, caplog, PASSWORD, PASSWORD_IN_URL)


def test_smtps_to_a_server_that_speaks_plain_smtp(smtp_server, trusting_test_cert):
    server = smtp_server(Inbox())

    expected = f"could not set up an encrypted connection with the mail server at 127.0.0.1:{server.port}"
    with pytest.raises(DeliveryFailed, match=re.escape(expected)):
        mailer_for(f"smtps://127.0.0.1:{server.port}", ssl_context=trusting_test_cert).send_bill(make_bill())


def test_a_server_echoing_the_password_is_blotted_out_and_not_chained(smtp_server, caplog):
    class Echo(Inbox):
        async def handle_DATA(self, server, session, envelope):
            return f"554 rejected for {PASSWORD}"

    server = smtp_server(Echo(), authenticator=accept_only(USER, PASSWORD), auth_require_tls=False)

    with pytest.raises(DeliveryFailed) as caught:
        mailer_for(f"smtp://{USER}:{PASSWORD_IN_URL}@127.0.0.1:{server.port}").send_bill(make_bill())

    assert str(caught.value).endswith("refused the message: 554 rejected for ***")
    assert caught.value.__cause__ is None and caught.value.__context__ is None
    assert_secret_kept(caught, caplog, PASSWORD)


# --- .eml files -------------------------------------------------------------------------------


def test_without_smtp_the_email_is_written_as_an_eml_file(tmp_path):
    outbox = tmp_path / "mail" / "outbox"
    mailer = Mailer(smtp_url=None, mail_dir=outbox, mail_from=MAIL_FROM)

    mailer.send_bill(make_bill())

    (written,) = outbox.iterdir()
    assert re.fullmatch(r"bill-12-\d{8}T\d{6}Z\.eml", written.name)
    received = parse(written.read_bytes())
    assert received["To"] == "billing@acme.example"
    assert received["Subject"] == "Invoice BP-2026-000012 — API overage, October 2026"
    text, html = parts(received)
    assert "62.50" in text and "62.50" in html


def test_deliver_returns_the_eml_path_and_never_overwrites(tmp_path):
    mailer = Mailer(smtp_url=None, mail_dir=tmp_path, mail_from=MAIL_FROM)

    paths = [mailer.deliver(bill_email(make_bill(), mail_from=MAIL_FROM), file_prefix="bill-12") for _ in range(3)]

    assert len(set(paths)) == 3
    assert sorted(str(path) for path in tmp_path.iterdir()) == sorted(paths)
    assert all(Path(path).name.startswith("bill-12-") and path.endswith(".eml") for path in paths)


def test_an_unwritable_mail_dir_fails_delivery(tmp_path):
    blocker = tmp_path / "mail"
    blocker.write_text("a file where the folder should be")

    with pytest.raises(DeliveryFailed, match=f"could not write the email to {re.escape(str(blocker))}"):
        Mailer(smtp_url=None, mail_dir=blocker, mail_from=MAIL_FROM).send_bill(make_bill())


def test_a_customer_without_a_usable_billing_email_is_not_mailed(tmp_path):
    bill = make_bill()
    bill.customer.billing_email = "  "

    with pytest.raises(DeliveryFailed, match="Acme has no usable billing email address"):
        Mailer(smtp_url=None, mail_dir=tmp_path, mail_from=MAIL_FROM).send_bill(bill)
    assert not any(tmp_path.iterdir())


# --- a bill's email goes out once ----------------------------------------------------------------


class SilentInbox(Inbox):
    """Takes the first `hold` messages whole, then keeps the answer back until released (or a client gave up)."""

    def __init__(self, *, hold: int = 1):
        super().__init__()
        self.hold = hold
        self.arrived = threading.Event()
        self.release = threading.Event()

    async def handle_DATA(self, server, session, envelope):
        self.received.append(envelope)
        if len(self.received) <= self.hold:
            self.arrived.set()
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 60)
        return "250 Message accepted for delivery"


@pytest.fixture
def silent_server(smtp_server):
    """An SMTP server that takes the first message and does not answer; released after the test."""
    inbox = SilentInbox()
    server = smtp_server(inbox)
    yield inbox, server
    inbox.release.set()


def message_ids(inbox: Inbox) -> list[str]:
    return [parse(envelope.original_content)["Message-ID"] for envelope in inbox.received]


def marker(db, bill_id: int) -> tuple:
    with db() as session:
        bill = session.get(Bill, bill_id)
        return bill.status, bill.sending_started_at is not None, bill.sending_error


def test_every_email_of_a_bill_carries_the_same_message_id(tmp_path):
    first, second = (bill_email(make_bill(), mail_from=MAIL_FROM) for _ in range(2))
    assert first["Message-ID"] == second["Message-ID"] == "<bill-12@vendor.example>"

    Mailer(smtp_url=None, mail_dir=tmp_path, mail_from=MAIL_FROM).send_bill(make_bill())
    (written,) = tmp_path.iterdir()
    assert parse(written.read_bytes())["Message-ID"] == "<bill-12@vendor.example>"


def test_no_answer_after_the_message_was_handed_over_is_an_unknown_outcome(silent_server):
    inbox, server = silent_server

    with pytest.raises(DeliveryUncertain) as caught:
        mailer_for(f"smtp://127.0.0.1:{server.port}", timeout=0.5).send_bill(make_bill())

    assert str(caught.value) == (
        f"the mail server at 127.0.0.1:{server.port} did not answer within 0.5 seconds"
        " after the email was handed over; it may have been accepted"
    )
    assert len(inbox.received) == 1


def test_a_bill_the_server_took_without_answering_is_uncertain_and_not_sent_twice(silent_server, final_bill, db):
    inbox, server = silent_server
    mailer = mailer_for(f"smtp://127.0.0.1:{server.port}", timeout=0.5)
    fiona = _finance(db)

    def send(**options):
        with db() as session:
            return workflow.send(session=session, bill_id=final_bill.id, actor=fiona, deliver=mailer.send_bill,
                                 **options)

    with pytest.raises(SendUncertain) as caught:
        send()
    assert f"Sending of bill #{final_bill.id} is uncertain: fiona started emailing it at " in str(caught.value)
    assert "did not answer within 0.5 seconds after the email was handed over" in str(caught.value)
    assert f"`/bill send {final_bill.id} again`" in str(caught.value)
    status, marked, error = marker(db, final_bill.id)
    assert (status, marked) == (BillStatus.FINAL, True) and "did not answer" in error

    # A repeated click, the job run again, the command typed again: refused, and nothing is emailed.
    with pytest.raises(SendUncertain, match="The customer may have received it"):
        send()
    assert len(inbox.received) == 1

    inbox.release.set()
    bill = send(again=True)

    assert bill.status is BillStatus.SENT
    assert message_ids(inbox) == [f"<bill-{final_bill.id}@vendor.example>"] * 2
    assert marker(db, final_bill.id) == (BillStatus.SENT, False, None)


def test_a_refused_connection_clears_the_record_and_a_plain_send_works_later(smtp_server, final_bill, db):
    fiona = _finance(db)
    with pytest.raises(DeliveryFailed, match="connection refused"), db() as session:
        workflow.send(session=session, bill_id=final_bill.id, actor=fiona,
                      deliver=mailer_for(f"smtp://127.0.0.1:{free_port()}").send_bill)
    assert marker(db, final_bill.id) == (BillStatus.FINAL, False, None)

    inbox = Inbox()
    server = smtp_server(inbox)
    with db() as session:
        bill = workflow.send(session=session, bill_id=final_bill.id, actor=fiona,
                             deliver=mailer_for(f"smtp://127.0.0.1:{server.port}").send_bill)
    assert bill.status is BillStatus.SENT and len(inbox.received) == 1


def test_a_send_killed_while_the_server_holds_its_answer_is_never_repeated_by_a_plain_send(
    silent_server, final_bill, db, database_url, tmp_path
):
    inbox, server = silent_server
    fiona = _finance(db)
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SMTP_URL": f"smtp://127.0.0.1:{server.port}",
        "MAIL_FROM": MAIL_FROM,
        "MAIL_DIR": str(tmp_path / "mail"),
        "ISSUER_NAME": ISSUER.name,
        "ISSUER_ADDRESS": ISSUER.address,
        "ISSUER_TAX_ID": ISSUER.tax_id,
        "ISSUER_EMAIL": ISSUER.email,
    }
    sending = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "bills", "send", str(final_bill.id), "--as", "fiona"],
        env=environment, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        assert inbox.arrived.wait(30), "the email never reached the mail server"
        # The send is recorded, and nothing is locked while the mail server keeps its answer.
        assert marker(db, final_bill.id) == (BillStatus.FINAL, True, None)
        with db() as session:
            add_user(session, "fred", Role.FINANCE)
    finally:
        sending.send_signal(signal.SIGKILL)
        sending.wait(10)

    mailer = mailer_for(f"smtp://127.0.0.1:{server.port}")
    with pytest.raises(SendInProgress, match=f"Bill #{final_bill.id} is being sent by fiona since "), db() as session:
        workflow.send(session=session, bill_id=final_bill.id, actor=fiona, deliver=mailer.send_bill)
    with pytest.raises(InvalidTransition, match="cannot be undone now"), db() as session:
        workflow.undo(session=session, bill_id=final_bill.id, actor=fiona)

    # Once the send could no longer be running, it is uncertain: a plain send (the job re-run) is refused.
    with db() as session, session.begin():
        session.get(Bill, final_bill.id).sending_started_at -= workflow.SEND_IN_PROGRESS_FOR
    with pytest.raises(SendUncertain, match="the outcome was never confirmed. The customer may"), db() as session:
        workflow.send(session=session, bill_id=final_bill.id, actor=fiona, deliver=mailer.send_bill)
    assert len(inbox.received) == 1

    inbox.release.set()
    with db() as session:
        workflow.send(session=session, bill_id=final_bill.id, actor=fiona, deliver=mailer.send_bill, again=True)
    assert message_ids(inbox) == [f"<bill-{final_bill.id}@vendor.example>"] * 2
    assert marker(db, final_bill.id) == (BillStatus.SENT, False, None)
