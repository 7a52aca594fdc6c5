"""Emailing bills to customers: through the SMTP server in SMTP_URL, or as .eml files in MAIL_DIR."""

from __future__ import annotations

import email.policy
import logging
import os
import smtplib
import socket
import ssl
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from html import escape
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from bot.errors import BillProcessError, DeliveryFailed, DeliveryUncertain
from bot.formatting import bill_amount, bill_period, calls, money, unit_cost
from bot.invoices import Document, credit_note_document, invoice_document
from bot.pdf import document_pdf
from bot.settings import Settings, SettingsError
from db.models import Bill, CreditNote

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"smtp": 25, "smtps": 465}
TRUE_WORDS = {"true", "1", "yes"}
FALSE_WORDS = {"false", "0", "no"}
Figures = list[tuple[str, str]]
URL_FORMS = "smtp://host:25, smtp://user:password@host:587?starttls=true or smtps://user:password@host:465"


# --- the messages -----------------------------------------------------------------------------


def bill_email(
    bill: Bill, *, mail_from: str, paper_size: str = "A4", to: str | None = None, again: bool = False
) -> EmailMessage:
    """The bill's invoice as an email to the customer (or `to`): plain text and HTML, with the invoice as a PDF
    and, `again`, the credit notes issued against it.

    The bill must have its invoice (bot/invoices.py). The first email of a bill and every retry of it carry
    one Message-ID; an email sent `again` on purpose gets one of its own, so that no mail system drops it
    as a copy.
    """
    customer = bill.customer
    period = bill_period(bill).label
    document = invoice_document(bill)
    title = f"{document.title} — API overage, {period}"
    figures = [
        ("Invoice number", document.number),
        *document.dates[:2],
        ("Period", period),
        ("API calls", calls(bill.api_usage)),
        ("Monthly limit", calls(bill.monthly_api_limit)),
        ("Overage", f"{calls(bill.overage_units)} calls"),
        ("Unit cost", f"{unit_cost(bill.overage_unit_cost, bill.currency)} per call"),
        ("Amount due", bill_amount(bill)),
    ]
    notes = list(bill.credit_notes) if again else []
    closing = [
        f"This invoice covers the API calls above your plan's monthly limit in {period}.",
        f"The invoice is attached as {document.filename}."
        + (f" So are the credit notes issued against it: {', '.join(note.number for note in notes)}." if notes else ""),
        f"Questions about it? Reply to this email and quote {document.number}.",
    ]
    message = _message(
        title, to or customer.billing_email, mail_from, document.issuer, document.bill_to, figures, closing
    )
    # The same on every attempt, so that a mail system receiving the bill twice can tell it is one email.
    if not again:
        message["Message-ID"] = f"<bill-{bill.id}@{mail_domain(mail_from)}>"
    _attach(message, document, paper_size)
    for note in notes:
        _attach(message, credit_note_document(note), paper_size)
    return message


def credit_note_email(note: CreditNote, *, mail_from: str, paper_size: str = "A4") -> EmailMessage:
    """A credit note as an email to the bill's customer, with the note as a PDF."""
    bill = note.bill
    document = credit_note_document(note)
    title = f"{document.title} — invoice {bill.invoice_number}"
    figures = [
        ("Credit note number", note.number),
        ("Issue date", document.dates[0][1]),
        ("Invoice", bill.invoice_number or ""),
        ("Period", bill_period(bill).label),
        ("Reason", note.reason),
        ("Amount credited", money(note.amount, note.currency)),
    ]
    closing = [
        f"This credit note reduces the amount of invoice {bill.invoice_number} by {document.total}.",
        f"The credit note is attached as {document.filename}.",
    ]
    message = _message(
        title, bill.customer.billing_email, mail_from, document.issuer, document.bill_to, figures, closing
    )
    message["Message-ID"] = f"<credit-note-{note.id}@{mail_domain(mail_from)}>"
    _attach(message, document, paper_size)
    return message


def mail_domain(mail_from: str) -> str:
    """The domain of MAIL_FROM's address, which names the app's Message-IDs."""
    return parseaddr(mail_from)[1].rpartition("@")[2] or "billprocess.invalid"


def _message(
    title: str, to: str, mail_from: str, issuer: dict, bill_to: dict, figures: Figures, closing: list[str]
) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = title
    message["From"] = mail_from
    message["To"] = to
    message.set_content(_text_body(title, issuer, bill_to, figures, closing))
    message.add_alternative(_html_body(title, issuer, bill_to, figures, closing), subtype="html")
    return message


def _attach(message: EmailMessage, document: Document, paper_size: str) -> None:
    pdf = document_pdf(document, paper_size=paper_size)
    message.add_attachment(pdf, maintype="application", subtype="pdf", filename=document.filename)


def _party_lines(party: dict) -> list[str]:
    lines = [party.get("name") or "", *(party.get("address") or [])]
    if party.get("tax_id"):
        lines.append(f"Tax ID: {party['tax_id']}")
    if party.get("email"):
        lines.append(party["email"])
    return [line for line in lines if line]


def _text_body(title: str, issuer: dict, bill_to: dict, figures: Figures, closing: list[str]) -> str:
    width = max(len(label) for label, _ in figures) + 2
    lines = [title, ""]
    for heading, party in (("From", issuer), ("Bill to", bill_to)):
        if _party_lines(party):
            lines += [f"{heading}:", *(f"  {line}" for line in _party_lines(party)), ""]
    lines += [f"{label + ':':<{width}} {value}" for label, value in figures]
    lines += ["", *closing]
    return "\n".join(lines) + "\n"


def _html_body(title: str, issuer: dict, bill_to: dict, figures: Figures, closing: list[str]) -> str:
    cell = "padding: 4px 24px 4px 0; text-align: left; border-bottom: 1px solid #ddd;"
    rows = "\n".join(
        f'<tr><th scope="row" style="{cell} font-weight: normal;">{escape(label)}</th>'
        f'<td style="{cell} text-align: right;">{_bold_if(label == figures[-1][0], escape(value))}</td></tr>'
        for label, value in figures
    )
    parties = "\n".join(
        f"<p><strong>{heading}</strong><br>\n" + "<br>\n".join(escape(line) for line in _party_lines(party)) + "</p>"
        for heading, party in (("From", issuer), ("Bill to", bill_to))
        if _party_lines(party)
    )
    ending = "\n".join(f"<p>{escape(line)}</p>" for line in closing)
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{escape(title)}</title></head>
<body style="font-family: Arial, Helvetica, sans-serif; color: #1d1c1d; line-height: 1.4;">
<h1 style="font-size: 20px;">{escape(title)}</h1>
{parties}
<table style="border-collapse: collapse;">
{rows}
</table>
{ending}
</body>
</html>
"""


def _bold_if(condition: bool, html: str) -> str:
    return f"<strong>{html}</strong>" if condition else html


# --- where it goes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpServer:
    """The mail server named by SMTP_URL. `password` never appears in its repr."""

    scheme: str
    host: str
    port: int
    starttls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def public_url(self) -> str:
        """The URL without credentials or options: safe to show and log."""
        return f"{self.scheme}://{self.address}"

    def redact(self, text: str) -> str:
        """`text` with the password, in any spelling the URL allowed, blotted out."""
        if not self.password:
            return text
        for spelling in {self.password, quote(self.password), quote(self.password, safe="")}:
            text = text.replace(spelling, "***")
        return text


def parse_smtp_url(url: str) -> SmtpServer:
    """Read SMTP_URL. Errors name the variable but never repeat its value, which holds a password."""
    try:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        # An unencoded / ? or # in the password ends the host part early and spills the rest,
        # up to the @, into the path or query; refuse that rather than connect to a wrong host.
        if "@" in parts.path + parts.query + parts.fragment:
            raise SettingsError(
                "SMTP_URL: percent-encode special characters in the user name and password (/ as %2F, ? as %3F)"
            )
        host = parts.hostname
        port = parts.port
    except ValueError:
        raise SettingsError(f"SMTP_URL is not a mail server URL; write it as {URL_FORMS}") from None
    if scheme not in DEFAULT_PORTS:
        raise SettingsError(f"SMTP_URL must start with smtp:// or smtps://, e.g. {URL_FORMS}")
    if not host:
        raise SettingsError("SMTP_URL names no mail server host")
    if parts.path not in ("", "/") or parts.fragment:
        raise SettingsError("SMTP_URL must not have a path after the host and port")

    starttls = False
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name.lower() != "starttls":
            raise SettingsError("SMTP_URL accepts only one option, starttls=true")
        if value.lower() not in TRUE_WORDS | FALSE_WORDS:
            raise SettingsError("SMTP_URL: starttls must be true or false")
        starttls = value.lower() in TRUE_WORDS
    if starttls and scheme == "smtps":
        raise SettingsError("SMTP_URL: smtps:// is encrypted from the start; drop starttls, or use smtp://")

    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is not None and not username:
        raise SettingsError("SMTP_URL has a password but no user name")
    if username and password is None:
        raise SettingsError("SMTP_URL has a user name but no password (write user:password@host)")
    return SmtpServer(scheme, host, port or DEFAULT_PORTS[scheme], starttls, username, password)


class Mailer:
    """Sends emails through one SMTP server, opening a connection per message; or writes .eml files."""

    def __init__(
        self,
        *,
        smtp_url: str | None,
        mail_dir: Path,
        mail_from: str,
        paper_size: str = "A4",
        timeout: float = 30,
        ssl_context: ssl.SSLContext | None = None,
    ):
        self.server = parse_smtp_url(smtp_url) if smtp_url and smtp_url.strip() else None
        self.mail_dir = Path(mail_dir)
        self.mail_from = mail_from
        self.paper_size = paper_size
        self.timeout = timeout
        uses_tls = self.server is not None and (self.server.scheme == "smtps" or self.server.starttls)
        self._ssl_context = ssl_context or (ssl.create_default_context() if uses_tls else None)
        if self.server and self.server.username and self.server.scheme == "smtp" and not self.server.starttls:
            log.warning("SMTP_URL sends the mail password unencrypted; add ?starttls=true or use smtps://")

    @classmethod
    def from_settings(cls, settings: Settings) -> Mailer:
        smtp_url = settings.smtp_url.get_secret_value() if settings.smtp_url else None
        return cls(
            smtp_url=smtp_url, mail_dir=settings.mail_dir, mail_from=settings.mail_from, paper_size=settings.paper_size
        )

    @property
    def destination(self) -> str:
        """Where emails go, without credentials: the server's URL or the mail folder."""
        return self.server.public_url if self.server else str(self.mail_dir)

    def __repr__(self) -> str:
        return f"Mailer(destination={self.destination!r})"

    def send_bill(self, bill: Bill) -> str:
        """Email the bill's invoice to its customer; returns, once the message has been accepted, where it went.

        Raises DeliveryFailed when it was not accepted, DeliveryUncertain when that cannot be known.
        """
        self._check_address(bill.customer.name, bill.customer.billing_email)
        message = bill_email(bill, mail_from=self.mail_from, paper_size=self.paper_size)
        return self._where(self.deliver(message, file_prefix=f"bill-{bill.id}"))

    def resend_bill(self, bill: Bill, to: str) -> str:
        """Email the bill's invoice, with its credit notes, once more to `to`; like `send_bill` otherwise."""
        self._check_address(bill.customer.name, to)
        message = bill_email(bill, mail_from=self.mail_from, paper_size=self.paper_size, to=to, again=True)
        return self._where(self.deliver(message, file_prefix=f"bill-{bill.id}-again"))

    def send_credit_note(self, note: CreditNote) -> str:
        """Email a credit note to the customer of its bill; like `send_bill` otherwise."""
        customer = note.bill.customer
        self._check_address(customer.name, customer.billing_email)
        message = credit_note_email(note, mail_from=self.mail_from, paper_size=self.paper_size)
        return self._where(self.deliver(message, file_prefix=f"credit-note-{note.id}"))

    @staticmethod
    def _check_address(name: str, address: str) -> None:
        if "@" not in parseaddr(address)[1]:
            raise DeliveryFailed(f"{name} has no usable billing email address ({address!r})")

    def _where(self, where: str) -> str:
        if self.server is None:  # a file: say which, without the server's folders
            return f"{Path(where).name} in MAIL_DIR (no SMTP server configured)"
        return where

    def deliver(self, message: EmailMessage, *, file_prefix: str = "message") -> str:
        """Hand the message over and say where it went; adds Date and Message-ID when missing."""
        if "Date" not in message:
            message["Date"] = format_datetime(datetime.now(timezone.utc))
        if "Message-ID" not in message:
            message["Message-ID"] = make_msgid(domain=mail_domain(self.mail_from))
        try:
            where = self._send(message) if self.server else str(self._write_eml(message, file_prefix))
        except (DeliveryFailed, DeliveryUncertain) as failure:
            # INFO: the caller reports the failure to the person who asked; this is the trail.
            log.info("email %r to %s was not delivered: %s", message["Subject"], message["To"], failure)
            raise
        log.info("email %r to %s delivered to %s", message["Subject"], message["To"], where)
        return where

    # SMTP

    def _send(self, message: EmailMessage) -> str:
        server = self.server
        assert server is not None
        stage = "connect"
        smtp: _Conversation | None = None
        deadline = time.monotonic() + self.timeout
        try:
            if server.scheme == "smtps":
                smtp = _SmtpsConversation(
                    server.host, server.port, timeout=self.timeout, deadline=deadline, context=self._ssl_context
                )
            else:
                smtp = _Conversation(server.host, server.port, timeout=self.timeout, deadline=deadline)
            try:
                if server.starttls:
                    stage = "starttls"
                    smtp.starttls(context=self._ssl_context)
                if server.username:
                    stage = "login"
                    smtp.login(server.username, server.password or "")
                stage = "send"
                refused = smtp.send_message(message)
                if refused:
                    raise smtplib.SMTPRecipientsRefused(refused)
            except BaseException:
                smtp.close()
                raise
        except (smtplib.SMTPException, OSError) as exc:
            error = exc
        else:
            _quit(smtp)
            return server.public_url
        # Raised outside the except block, so that an error whose text holds a secret is not kept as context.
        explanation = _explain(error, server, stage, self.timeout)
        if smtp is not None and smtp.handed_over and not isinstance(error, smtplib.SMTPResponseException):
            # No answer to the complete message: the server may have accepted it, or may not.
            failure: BillProcessError = DeliveryUncertain(
                server.redact(f"{explanation} after the email was handed over; it may have been accepted")
            )
        else:
            failure = DeliveryFailed(server.redact(explanation))
        error_text = f"{error!r} {error}"
        if server.redact(error_text) != error_text:
            raise failure
        raise failure from error

    # .eml files

    def _write_eml(self, message: EmailMessage, file_prefix: str) -> Path:
        """Write the message whole or not at all: to a temporary file first, then renamed into place."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        try:
            self.mail_dir.mkdir(parents=True, exist_ok=True)
            path = self.mail_dir / f"{file_prefix}-{stamp}.eml"
            number = 1
            while path.exists():
                number += 1
                path = self.mail_dir / f"{file_prefix}-{stamp}-{number}.eml"
            descriptor, temporary = tempfile.mkstemp(dir=self.mail_dir, prefix=f".{path.stem}.", suffix=".tmp")
            try:
                with os.fdopen(descriptor, "wb") as file:
                    file.write(message.as_bytes(policy=email.policy.SMTP))
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temporary, path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise DeliveryFailed(f"could not write the email to {self.mail_dir}: {exc.strerror or exc}") from exc
        return path


class _Conversation(smtplib.SMTP):
    """An SMTP client with one deadline for the whole conversation, which notes when the complete
    message has been handed over (from then on, silence does not mean the server refused it)."""

    handed_over = False
    _sending_message = False

    def __init__(self, *args, deadline: float, **kwargs):
        self.deadline = deadline  # time.monotonic() by which the whole conversation ends
        super().__init__(*args, **kwargs)

    def _limit(self) -> None:
        # smtplib gives every read and write the full timeout; the deadline bounds the whole exchange.
        if self.sock is not None:
            self.sock.settimeout(max(self.deadline - time.monotonic(), 0.001))

    def send(self, s) -> None:
        self._limit()
        super().send(s)
        if self._sending_message:  # the message and its final "." are with the server now
            self.handed_over = True

    def getreply(self):
        self._limit()
        code, reply = super().getreply()
        self._sending_message = code == 354  # the server asked for the message: the next send is it
        return code, reply


class _SmtpsConversation(_Conversation, smtplib.SMTP_SSL):
    pass


def _quit(smtp: smtplib.SMTP) -> None:
    """Say goodbye politely; the message is already accepted, so a failure here changes nothing."""
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()


def _reply(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())


def _explain(exc: BaseException, server: SmtpServer, stage: str, timeout: float) -> str:
    """One sentence saying what went wrong, for the person who pressed Send."""
    at = f"the mail server at {server.address}"
    match exc:
        case smtplib.SMTPAuthenticationError(smtp_code=code, smtp_error=reply):
            return f"{at} rejected the user name or password in SMTP_URL: {code} {_reply(reply)}"
        case smtplib.SMTPSenderRefused(smtp_code=code, smtp_error=reply, sender=sender):
            return f"{at} refused the sender {sender}: {code} {_reply(reply)}"
        case smtplib.SMTPRecipientsRefused(recipients=recipients) if recipients:
            recipient, (code, reply) = next(iter(recipients.items()))
            return f"{at} refused the recipient {recipient}: {code} {_reply(reply)}"
        case smtplib.SMTPDataError(smtp_code=code, smtp_error=reply):
            return f"{at} refused the message: {code} {_reply(reply)}"
        case smtplib.SMTPConnectError(smtp_code=code, smtp_error=reply):
            return f"{at} refused the connection: {code} {_reply(reply)}"
        case smtplib.SMTPResponseException(smtp_code=code, smtp_error=reply):
            return f"{at} answered {code} {_reply(reply)}"
        case smtplib.SMTPNotSupportedError() if stage == "starttls":
            return f"{at} does not offer STARTTLS, which SMTP_URL asks for"
        case smtplib.SMTPNotSupportedError() if stage == "login":
            return f"{at} does not offer a login here (does it need ?starttls=true in SMTP_URL?)"
        case smtplib.SMTPServerDisconnected() if isinstance(exc.__context__, TimeoutError):
            return f"{at} did not answer within {timeout:g} seconds"
        case smtplib.SMTPServerDisconnected():
            return f"{at} closed the connection unexpectedly"
        case smtplib.SMTPException():
            return f"sending through {at} failed: {exc}"
        case ssl.SSLCertVerificationError():
            return f"{at} did not present a trusted certificate: {exc.verify_message or exc.reason}"
        case ssl.SSLError():
            return f"could not set up an encrypted connection with {at}: {exc.reason or exc}"
        case TimeoutError():
            return f"{at} did not answer within {timeout:g} seconds"
        case ConnectionRefusedError():
            return f"could not connect to {at}: connection refused"
        case socket.gaierror():
            return f"could not find the mail server {server.host}: {exc.strerror or exc}"
        case OSError():
            return f"could not reach {at}: {exc.strerror or exc}"
    return f"sending through {at} failed: {exc}"
