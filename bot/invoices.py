"""Invoices and credit notes: gapless yearly numbers, what a document says, and who issues it.

A bill gets its invoice when it is first sent: its number, issue and due dates, and the issuer and the
customer as they are then, all kept on the bill and never changed, so that every later copy (a resend,
`bills pdf`) is the same document. A number comes from a counter row per kind and year, incremented in
the transaction that gives it (`next_number`): a rolled-back transaction gives its number back, and
concurrent transactions wait for each other on the row, so numbers run 1, 2, 3… without a gap.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from babel.dates import format_date
from sqlalchemy import literal
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bot.money import LOCALE, format_money, format_unit_price
from bot.periods import Period
from db.models import Bill, CreditNote, Customer, NumberSequence

INVOICE = "invoice"
CREDIT_NOTE = "credit_note"
NUMBER_MAX_LENGTH = 64
_FIELDS = {"year", "seq"}


# --- numbers -----------------------------------------------------------------------------------------


def check_number_format(pattern: str) -> None:
    """Raise ValueError unless `pattern` makes distinct numbers from {year} and {seq} (e.g. BP-{year}-{seq:06d})."""
    example = "such as BP-{year}-{seq:06d}"
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(pattern) if name is not None}
        if not names <= _FIELDS:
            raise ValueError
        first, second = pattern.format(year=2026, seq=1), pattern.format(year=2026, seq=2)
        next_year = pattern.format(year=2027, seq=1)
        longest = pattern.format(year=9999, seq=2**31 - 1)
    except (ValueError, IndexError, KeyError):
        raise ValueError(f"must be a pattern using only {{year}} and {{seq}}, {example}") from None
    if first == second:
        raise ValueError(f"must contain {{seq}}, the number in the year's sequence, {example}")
    if first == next_year:
        raise ValueError(f"must contain {{year}}: the sequence restarts each year, {example}")
    if len(longest) > NUMBER_MAX_LENGTH or not first.strip():
        raise ValueError(f"makes numbers longer than {NUMBER_MAX_LENGTH} characters")


def next_number(session: Session, kind: str, year: int) -> int:
    """The next number of the (kind, year) sequence, taken in the caller's transaction.

    The counter row stays locked until that transaction ends; if it rolls back, the number is given again.
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(NumberSequence).values(kind=kind, year=year, last_number=1)
    statement = statement.on_conflict_do_update(
        index_elements=[NumberSequence.kind, NumberSequence.year],
        set_={"last_number": NumberSequence.last_number + literal(1)},
    ).returning(NumberSequence.last_number)
    return session.execute(statement).scalar_one()


# --- the parties -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Issuer:
    """Who issues the invoices (ISSUER_NAME, ISSUER_ADDRESS, ISSUER_TAX_ID, ISSUER_EMAIL)."""

    name: str = ""
    address: str = ""
    tax_id: str = ""
    email: str = ""

    def as_stored(self) -> dict:
        return {"name": self.name, "address": _lines(self.address), "tax_id": self.tax_id, "email": self.email}


def bill_to(customer: Customer) -> dict:
    """The customer as an invoice names it, kept with the invoice."""
    return {"name": customer.name, "address": _lines(customer.billing_address), "email": customer.billing_email}


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace("\\n", "\n").splitlines() if line.strip()]


@dataclass(frozen=True)
class Invoicing:
    """How invoices and credit notes are numbered and dated, and who issues them (from the settings)."""

    invoice_number_format: str = "BP-{year}-{seq:06d}"
    credit_note_number_format: str = "CN-{year}-{seq:06d}"
    payment_terms_days: int = 30
    issuer: Issuer = field(default_factory=Issuer)
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))

    @classmethod
    def from_settings(cls, settings) -> Invoicing:
        issuer = Issuer(settings.issuer_name, settings.issuer_address, settings.issuer_tax_id, settings.issuer_email)
        return cls(
            settings.invoice_number_format,
            settings.credit_note_number_format,
            settings.payment_terms_days,
            issuer,
            settings.zone,
        )

    def today(self) -> date:
        return datetime.now(self.zone).date()

    def issue_invoice(self, session: Session, bill: Bill, *, again: bool = False) -> bool:
        """Give the bill its invoice (number, dates, parties) unless it has one; True when this call did.

        A bill numbered by an earlier send that the mail server refused keeps its number, and takes today's
        dates and parties; one sent `again` after an uncertain send keeps them all, as the customer may
        have that email already.
        """
        today = self.today()
        if bill.invoice_number is not None:
            if not again:
                self._date(bill, today)
            return False
        sequence = next_number(session, INVOICE, today.year)
        bill.invoice_number = self.invoice_number_format.format(year=today.year, seq=sequence)
        self._date(bill, today)
        return True

    def _date(self, bill: Bill, today: date) -> None:
        """Date the invoice today and name its parties as they are now."""
        bill.issue_date = today
        bill.due_date = today + timedelta(days=self.payment_terms_days)
        bill.issuer = self.issuer.as_stored()
        bill.bill_to = bill_to(bill.customer)

    def credit_note_number(self, session: Session, today: date) -> str:
        return self.credit_note_number_format.format(year=today.year, seq=next_number(session, CREDIT_NOTE, today.year))


# --- what a document says ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    description: str
    quantity: str
    unit_price: str
    amount: str


@dataclass(frozen=True)
class Document:
    """An invoice or a credit note as people read it, whatever it is rendered into (email, PDF)."""

    kind: str  # "Invoice" or "Credit note"
    number: str
    dates: list[tuple[str, str]]  # ("Issue date", "November 3, 2026"), …
    issuer: dict
    bill_to: dict
    lines: list[Line]
    total_label: str
    total: str
    currency: str
    notes: list[str]

    @property
    def title(self) -> str:
        return f"{self.kind} {self.number}"

    @property
    def filename(self) -> str:
        return f"{self.number}.pdf"


def invoice_document(bill: Bill) -> Document:
    """The bill's invoice; the bill must have been given one (`Invoicing.issue_invoice`)."""
    assert bill.invoice_number is not None and bill.issue_date and bill.due_date
    period = Period(bill.year, bill.month)
    currency = bill.currency
    line = Line(
        f"API calls over the monthly limit, {period.label}: {bill.api_usage:,} calls,"
        f" limit {bill.monthly_api_limit:,}",
        f"{bill.overage_units:,}",
        format_unit_price(bill.overage_unit_cost, currency),
        format_money(bill.overage_amount, currency),
    )
    notes = [
        f"Payment due by {format_day(bill.due_date)}. Please quote {bill.invoice_number} with your payment.",
    ]
    notes += [
        f"Credit note {note.number} of {format_day(note.issue_date)}: {format_money(note.amount, note.currency)}."
        for note in bill.credit_notes
    ]
    return Document(
        kind="Invoice",
        number=bill.invoice_number,
        dates=[("Issue date", format_day(bill.issue_date)), ("Due date", format_day(bill.due_date)),
               ("Period", period.label)],
        issuer=bill.issuer or {},
        bill_to=bill.bill_to or {},
        lines=[line],
        total_label=f"Total ({currency})",
        total=format_money(bill.overage_amount, currency),
        currency=currency,
        notes=notes,
    )


def credit_note_document(note: CreditNote) -> Document:
    bill = note.bill
    period = Period(bill.year, bill.month)
    amount = format_money(note.amount, note.currency)
    return Document(
        kind="Credit note",
        number=note.number,
        dates=[("Issue date", format_day(note.issue_date)), ("Invoice", bill.invoice_number or f"bill #{bill.id}"),
               ("Period", period.label)],
        issuer=note.issuer,
        bill_to=note.bill_to,
        lines=[Line(f"Credit against invoice {bill.invoice_number}, {period.label}", "1", amount, amount)],
        total_label=f"Total credited ({note.currency})",
        total=amount,
        currency=note.currency,
        notes=[
            f"Reason: {note.reason}",
            f"This credit note reduces the amount of invoice {bill.invoice_number} by {amount}.",
        ],
    )


def credited(bill: Bill) -> Decimal:
    """The total of the bill's credit notes."""
    return sum((note.amount for note in bill.credit_notes), Decimal(0))


def format_day(day: date) -> str:
    """A date as people read it: November 3, 2026."""
    return format_date(day, format="long", locale=LOCALE)
