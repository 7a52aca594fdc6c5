"""Importing customers and monthly usage from CSV files (SPEC §6): the whole file or nothing.

Every row is checked before anything is written; when any row is bad the file is rejected with
every problem found, each naming its row (the header is row 1), and the database is left as it was.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, TextIO, TypeVar

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from bot import corrections
from bot.billing import IMPORT_LOCK_NAMESPACE, IMPORT_LOCKS, MAX_CALLS, lock_months
from bot.corrections import CorrectedUsage, CorrectionSummary
from bot.errors import InvalidFields, InvalidInput
from bot.money import parse_currency
from bot.parsing import parse_email, parse_unit_cost
from bot.periods import Period
from bot.text import shown
from db.models import Customer, Role, Usage, User

CUSTOMER_COLUMNS = (
    "name",
    "billing_address",
    "billing_email",
    "monthly_api_limit",
    "overage_unit_cost",
    "start_date",
    "end_date",
    "require_csm_approval",
    "csm",
)
# A last column that may be left out: a file without it keeps each existing customer's currency.
OPTIONAL_CUSTOMER_COLUMNS = ("currency",)
USAGE_COLUMNS = ("customer", "year", "month", "api_usage")

MAX_COUNT = MAX_CALLS
NAME_MAX_LENGTH = 200
TRUE_WORDS = frozenset({"true", "yes", "1"})
FALSE_WORDS = frozenset({"false", "no", "0"})
PROBLEMS_SHOWN = 50
# Keeps the bound parameters of each lookup below SQLite's limit.
LOOKUP_CHUNK = 400
# PostgreSQL advisory lock keys: two imports of the same kind run one after the other.
LOCK_NAMESPACE = IMPORT_LOCK_NAMESPACE
CUSTOMERS_LOCK, USAGE_LOCK = IMPORT_LOCKS

_WHOLE_NUMBER = re.compile(r"[0-9]+")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_YEAR = re.compile(r"[0-9]{4}")
_MONTH = re.compile(r"[0-9]{1,2}")
# Characters no CSV text contains; finding one means the file is binary (an image, a spreadsheet).
_BINARY = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]")

T = TypeVar("T")


@dataclass
class ImportSummary:
    created: int
    updated: int
    # What a usage import did to the bills of months already billed (bot/corrections.py).
    corrections: CorrectionSummary = field(default_factory=CorrectionSummary)

    def line(self, noun: str) -> str:
        """E.g. "3 customers created, 1 updated"; `noun` may be given singular or plural."""
        singular = noun[:-1] if noun.endswith("s") else noun
        plural = noun if noun.endswith("s") else noun + "s"
        return f"{self.created} {singular if self.created == 1 else plural} created, {self.updated} updated"

    def lines(self, noun: str) -> list[str]:
        """The summary line, then what happened to bills, when anything did."""
        return [self.line(noun), *self.corrections.lines()]


class ImportRejected(InvalidInput):
    """A file that was not imported; `problems` lists every reason, each starting with its row."""

    def __init__(self, summary: str, problems: Sequence[str]):
        self.summary = summary
        self.problems = list(problems)
        shown = self.problems[:PROBLEMS_SHOWN]
        if len(self.problems) > PROBLEMS_SHOWN:
            shown.append(f"… and {len(self.problems) - PROBLEMS_SHOWN} more")
        super().__init__("\n".join([summary, *shown]))


def import_customers(*, session: Session, file: TextIO, source: str = "file") -> ImportSummary:
    """Create or update (by name) every customer in a customers CSV file, in one transaction."""
    records = _read_records(file, source, CUSTOMER_COLUMNS, OPTIONAL_CUSTOMER_COLUMNS)
    problems = _Problems(records.problems)
    rows = [row for row in (_parse_customer(record, problems) for record in records.rows) if row]
    # Names differing only in case are taken as the same customer typed twice, not as two customers.
    _reject_duplicates(rows, lambda row: row.name.lower(), lambda row: f"customer {shown(row.name)}", problems)

    with session.begin():
        _lock(session, CUSTOMERS_LOCK)
        csm_names = {row.csm for row in rows if row.csm}
        users, user_hints = _find_by_name(session, User, User.name, csm_names)
        existing, customer_hints = _find_by_name(session, Customer, Customer.name, {row.name for row in rows})
        for row in rows:
            if row.name not in existing and row.name.lower() in customer_hints:
                problems.add(
                    row.number,
                    f"name {shown(row.name)} differs only in upper and lower case from the existing customer "
                    f"{shown(customer_hints[row.name.lower()])}; spell it the same way to update that customer",
                )
            if row.csm:
                _check_csm(row, users, user_hints, problems)
        problems.raise_if_any(source)

        summary = ImportSummary(created=0, updated=0)
        for row in rows:
            customer = existing.get(row.name)
            if customer is None:
                customer = Customer(name=row.name)
                session.add(customer)
                summary.created += 1
            else:
                summary.updated += 1
            apply_customer(customer, row, users[row.csm].id if row.csm else None)
    return summary


def apply_customer(customer: Customer, row: CustomerRow, csm_id: int | None) -> None:
    """Give `customer` the terms of a checked row (its name aside)."""
    customer.billing_address = row.billing_address
    customer.billing_email = row.billing_email
    customer.monthly_api_limit = row.monthly_api_limit
    customer.overage_unit_cost = row.overage_unit_cost
    customer.start_date = row.start_date
    customer.end_date = row.end_date
    customer.require_csm_approval = row.require_csm_approval
    customer.csm_id = csm_id
    if row.currency is not None:  # a file without the currency column keeps the customer's
        customer.currency = row.currency


def import_usage(*, session: Session, file: TextIO, source: str = "file") -> ImportSummary:
    """Record each customer's API usage per month from a usage CSV file, replacing months already recorded.

    Bills of months already billed follow the new usage in the same transaction (bot/corrections.py).
    """
    records = _read_records(file, source, USAGE_COLUMNS)
    problems = _Problems(records.problems)
    rows = [row for row in (_parse_usage(record, problems) for record in records.rows) if row]
    _reject_duplicates(
        rows,
        lambda row: (row.customer, row.year, row.month),
        lambda row: f"usage of {shown(row.customer)} for {row.year:04d}-{row.month:02d}",
        problems,
    )

    with session.begin():
        # The months first, as generation takes them: a correction and a generation of one month queue.
        lock_months(session, {Period(row.year, row.month) for row in rows})
        _lock(session, USAGE_LOCK)
        customers, hints = _find_by_name(session, Customer, Customer.name, {row.customer for row in rows})
        for row in rows:
            if row.customer not in customers:
                problems.add(
                    row.number,
                    f"customer {shown(row.customer)} does not exist{_did_you_mean(hints, row.customer)}; "
                    "import it in a customers file first",
                )
        problems.raise_if_any(source)

        recorded = {
            (usage.customer_id, usage.year, usage.month): usage
            for usage in _recorded_usage(session, {customers[row.customer].id for row in rows}, rows)
        }
        summary = ImportSummary(created=0, updated=0)
        changed = []
        for row in rows:
            customer_id = customers[row.customer].id
            usage = recorded.get((customer_id, row.year, row.month))
            if usage is None:
                session.add(
                    Usage(customer_id=customer_id, year=row.year, month=row.month, api_usage=row.api_usage)
                )
                summary.created += 1
            else:
                summary.updated += 1
                usage.api_usage = row.api_usage
            # Every row, changed or not: a bill may no longer match its month's usage (an undone correction).
            changed.append(CorrectedUsage(customer_id, Period(row.year, row.month), row.api_usage))
        session.flush()
        summary.corrections = corrections.apply(session, changed, cause=f"usage import of {source}")
    return summary


# --- reading the file -------------------------------------------------------------------------


@dataclass
class _Record:
    number: int
    values: dict[str, str]


@dataclass
class _Records:
    rows: list[_Record]
    problems: list[tuple[int, str]]


def _read_records(file: TextIO, source: str, columns: Sequence[str], optional: Sequence[str] = ()) -> _Records:
    """The file's data rows keyed by column, after checking that it is CSV text with the right header.

    A row with the wrong number of values is a problem of that row; anything that makes the file
    unreadable as a whole rejects it at once.
    """
    try:
        text = file.read()
    except UnicodeDecodeError:
        raise _not_text(source, "it is not UTF-8 text") from None
    text = text.removeprefix("\ufeff")
    binary = _BINARY.search(text)
    if binary:
        line = text.count("\n", 0, binary.start()) + 1
        raise _not_text(source, f"line {line} contains binary data")
    records = list(_csv_records(text, source))
    if not records:
        raise ImportRejected(
            f"{source} rejected: the file is empty, nothing imported",
            [f"the file is empty; its first row must be the header {','.join(columns)}"],
        )
    header_number, header = records[0]
    columns = _check_header(header_number, header, columns, optional, source)
    rows, problems = [], []
    for number, values in records[1:]:
        if len(values) != len(columns):
            reason = f"there are {len(values)} values but the header has {len(columns)} columns"
            if len(values) > len(columns):
                reason += "; a value that contains a comma must be in double quotes"
            problems.append((number, reason))
            continue
        rows.append(_Record(number, {column: value.strip() for column, value in zip(columns, values)}))
    return _Records(rows, problems)


def _csv_records(text: str, source: str) -> Iterator[tuple[int, list[str]]]:
    """Each non-blank record with its row number; blank rows count, as they do in a spreadsheet."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    number = 0
    while True:
        number += 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            reason = {
                "unexpected end of data": "a quoted value is never closed",
                "',' expected after '\"'": (
                    'a quoted value must be followed by a comma; write a " inside one as ""'
                ),
                f"field larger than field limit ({csv.field_size_limit()})": (
                    f"a value is longer than {csv.field_size_limit():,} characters"
                ),
            }.get(str(error), str(error))
            raise ImportRejected(
                f"{source} rejected: not valid CSV, nothing imported", [f"row {number}: {reason}"]
            ) from None
        if any(value.strip() for value in values):
            yield number, values


def _check_header(
    number: int, header: list[str], columns: Sequence[str], optional: Sequence[str], source: str
) -> Sequence[str]:
    """The file's columns: `columns`, then any of the `optional` ones (in their order) that it has."""
    found = [name.strip().lower() for name in header]
    if found[: len(columns)] == list(columns) and found[len(columns) :] == list(optional[: len(found) - len(columns)]):
        return found
    columns = [*columns, *(name for name in optional if name in found)]
    missing = [column for column in columns if column not in found]
    unexpected = [original.strip() for original, name in zip(header, found) if name not in columns]
    repeated = sorted({name for name in found if name in columns and found.count(name) > 1})
    reasons = []
    if missing:
        reasons.append("missing " + ", ".join(missing))
    if unexpected:
        reasons.append("unexpected " + ", ".join(shown(name) for name in unexpected))
    if repeated:
        reasons.append("repeated " + ", ".join(repeated))
    if not reasons:
        reasons.append("the columns are in the wrong order")
    raise ImportRejected(
        f"{source} rejected: bad header row, nothing imported",
        [f"row {number}: the header must be {','.join(columns)}; " + "; ".join(reasons)],
    )


def _not_text(source: str, reason: str) -> ImportRejected:
    return ImportRejected(
        f"{source} rejected: not CSV text, nothing imported",
        [f"{reason}; save the spreadsheet as CSV (comma-separated, UTF-8) and import that file"],
    )


# --- checking rows ----------------------------------------------------------------------------


class _Problems:
    """Every problem found in a file, by row (and column, when it is about one value)."""

    def __init__(self, found: Iterable[tuple[int, str]] = ()):
        self._found = list(found)
        self.columns: list[tuple[str | None, str]] = []  # (column, reason), in the order found

    def add(self, row: int, reason: str, column: str | None = None) -> None:
        self._found.append((row, reason))
        self.columns.append((column, reason))

    def raise_if_any(self, source: str) -> None:
        if not self._found:
            return
        self._found.sort(key=lambda problem: problem[0])
        bad_rows = len({row for row, _ in self._found})
        raise ImportRejected(
            f"{source} rejected: {bad_rows} bad {'row' if bad_rows == 1 else 'rows'}, nothing imported",
            [f"row {row}: {reason}" for row, reason in self._found],
        )


class _BadValue(Exception):
    """One value that cannot be used; the message names the column."""


class _RowReader:
    """Parses a record's values one column at a time, noting each bad value as a problem of the row."""

    def __init__(self, record: _Record, problems: _Problems, labels: dict[str, str] | None = None):
        self.record = record
        self.problems = problems
        self.labels = labels or {}  # how messages name each column, when not by the column's own name
        self.ok = True

    def label(self, column: str) -> str:
        return self.labels.get(column, column)

    def get(self, column: str, parse: Callable[[str, str], T]) -> T:
        try:
            return parse(self.label(column), self.record.values[column])
        except _BadValue as bad:
            self.problems.add(self.record.number, str(bad), column)
            self.ok = False
            return None  # type: ignore[return-value]  # the row is discarded when not ok


@dataclass
class CustomerRow:
    number: int
    name: str
    billing_address: str
    billing_email: str
    monthly_api_limit: int
    overage_unit_cost: Decimal
    start_date: date
    end_date: date | None
    require_csm_approval: bool
    csm: str
    currency: str | None  # None: the file has no currency column


@dataclass
class _UsageRow:
    number: int
    customer: str
    year: int
    month: int
    api_usage: int


def _parse_customer(record: _Record, problems: _Problems, labels: dict[str, str] | None = None) -> CustomerRow | None:
    read = _RowReader(record, problems, labels)
    row = CustomerRow(
        number=record.number,
        name=read.get("name", _required_text(NAME_MAX_LENGTH)),
        billing_address=read.get("billing_address", _required_text(None)),
        billing_email=read.get("billing_email", _parsed(parse_email)),
        monthly_api_limit=read.get("monthly_api_limit", _whole_number),
        overage_unit_cost=read.get("overage_unit_cost", _parsed(parse_unit_cost)),
        start_date=read.get("start_date", _date),
        end_date=read.get("end_date", _optional(_date)),
        require_csm_approval=read.get("require_csm_approval", _boolean),
        csm=record.values["csm"],
        currency=read.get("currency", _currency) if "currency" in record.values else None,
    )
    if row.start_date and row.end_date and row.end_date < row.start_date:
        problems.add(
            record.number,
            f"{read.label('end_date')} {row.end_date} is before {read.label('start_date')} {row.start_date}",
            "end_date",
        )
        return None
    return row if read.ok else None


def _parse_usage(record: _Record, problems: _Problems) -> _UsageRow | None:
    read = _RowReader(record, problems)
    row = _UsageRow(
        number=record.number,
        customer=read.get("customer", _required_text(None)),
        year=read.get("year", _year),
        month=read.get("month", _month),
        api_usage=read.get("api_usage", _whole_number),
    )
    return row if read.ok else None


def _reject_duplicates(
    rows: list[Any], key: Callable[[Any], object], describe: Callable[[Any], str], problems: _Problems
) -> None:
    first_row: dict[object, int] = {}
    for row in rows:
        first = first_row.setdefault(key(row), row.number)
        if first != row.number:
            problems.add(row.number, f"{describe(row)} is already in row {first}")


def _check_csm(row: CustomerRow, users: dict[str, User], hints: dict[str, str], problems: _Problems) -> None:
    user = users.get(row.csm)
    if user is None:
        problems.add(row.number, f"csm {shown(row.csm)} is not a user{_did_you_mean(hints, row.csm)}")
    elif user.role != Role.CUSTOMER_SUCCESS:
        problems.add(
            row.number, f"csm {shown(row.csm)} is a {user.role.label} user, not {Role.CUSTOMER_SUCCESS.label}"
        )
    elif not user.active:
        problems.add(row.number, f"csm {shown(row.csm)} is deactivated")


# --- parsing values ---------------------------------------------------------------------------


def _required_text(max_length: int | None) -> Callable[[str, str], str]:
    def parse(column: str, text: str) -> str:
        if not text:
            raise _BadValue(f"{column} is empty")
        if max_length is not None and len(text) > max_length:
            raise _BadValue(f"{column} is longer than {max_length} characters")
        return text

    return parse


def _optional(parse: Callable[[str, str], T]) -> Callable[[str, str], T | None]:
    return lambda column, text: parse(column, text) if text else None


def _parsed(parse: Callable[[str, str], T]) -> Callable[[str, str], T]:
    """A bot.parsing parser, `parse(text, what)`, reading a column: its refusal becomes the row's problem."""

    def read(column: str, text: str) -> T:
        try:
            return parse(text, column)
        except InvalidInput as error:
            raise _BadValue(str(error)) from None

    return read


def _whole_number(column: str, text: str) -> int:
    if not _WHOLE_NUMBER.fullmatch(text):
        raise _BadValue(f"{column} must be a whole number ≥ 0, not {shown(text)}")
    # Leading zeros go and digits are counted before converting: int() refuses over 4,300 digits.
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(MAX_COUNT)) or int(digits) > MAX_COUNT:
        raise _BadValue(f"{column} {shown(text)} is too large; it can be at most {MAX_COUNT:,}")
    return int(digits)


def _date(column: str, text: str) -> date:
    if not _DATE.fullmatch(text):
        raise _BadValue(f"{column} must be a date written YYYY-MM-DD, not {shown(text)}")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _BadValue(f"{column} {shown(text)} is not a real date") from None


def _currency(column: str, text: str) -> str:
    try:
        return parse_currency(text)
    except InvalidInput as error:
        raise _BadValue(f"{column} {error}") from None


def _boolean(column: str, text: str) -> bool:
    word = text.lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise _BadValue(f"{column} must be true or false, not {shown(text)}")


def _year(column: str, text: str) -> int:
    if not _YEAR.fullmatch(text):
        raise _BadValue(f"{column} must be a 4-digit year such as 2026, not {shown(text)}")
    if int(text) < 1900:
        raise _BadValue(f"{column} {text} is out of range; it must be 1900 or later")
    return int(text)


def _month(column: str, text: str) -> int:
    if not _MONTH.fullmatch(text) or not 1 <= int(text) <= 12:
        raise _BadValue(f"{column} must be a whole number from 1 to 12, not {shown(text)}")
    return int(text)


# --- one customer, checked as a row of a customers file ------------------------------------------


def customer_row(values: dict[str, str], labels: dict[str, str] | None = None) -> CustomerRow:
    """One customer's values, given as a customers file would hold them, checked as the file's rows are.

    InvalidFields names every bad value by its column; `labels` says how messages name each column
    (`--email` on the command line).
    """
    problems = _Problems()
    text = {column: (values.get(column) or "").strip() for column in CUSTOMER_COLUMNS}
    text |= {column: values[column].strip() for column in OPTIONAL_CUSTOMER_COLUMNS if values.get(column) is not None}
    row = _parse_customer(_Record(0, text), problems, labels)
    if row is None:
        raise InvalidFields(problems.columns)
    return row


def check_csm(session: Session, row: CustomerRow, labels: dict[str, str] | None = None) -> int | None:
    """The id of the account `row` names as CSM (None for none); InvalidFields when it cannot be one."""
    if not row.csm:
        return None
    users, hints = _find_by_name(session, User, User.name, {row.csm})
    problems = _Problems()
    _check_csm(row, users, hints, problems)
    if problems.columns:
        label = (labels or {}).get("csm", "csm")
        raise InvalidFields([("csm", label + reason.removeprefix("csm")) for _, reason in problems.columns])
    return users[row.csm].id


def lock_customers(session: Session) -> None:
    """Changes to customers wait for each other (and for imports of customers) on PostgreSQL."""
    _lock(session, CUSTOMERS_LOCK)


# --- the database -----------------------------------------------------------------------------


def _lock(session: Session, kind: int) -> None:
    if session.get_bind().dialect.name == "postgresql":
        # Imports of the same kind wait for each other, so a name checked as new is still new when inserted.
        session.execute(select(func.pg_advisory_xact_lock(LOCK_NAMESPACE, kind)))
    # SQLite takes its write lock at BEGIN (see db.session), which serialises imports there.


def _chunks(values: Iterable[T]) -> Iterator[list[T]]:
    values = list(values)
    for start in range(0, len(values), LOOKUP_CHUNK):
        yield values[start : start + LOOKUP_CHUNK]


def _find_by_name(
    session: Session, model: type[T], name_column, names: set[str]
) -> tuple[dict[str, T], dict[str, str]]:
    """The rows of `model` named exactly one of `names`, and the existing names by their lowercase form.

    The second tells a name missing only because of upper and lower case; one query per few hundred names.
    """
    found: dict[str, T] = {}
    case_variants: dict[str, str] = {}
    for chunk in _chunks(sorted(names)):
        lowered = sorted({name.lower() for name in chunk})
        query = select(model).where(or_(name_column.in_(chunk), func.lower(name_column).in_(lowered)))
        for row in session.scalars(query):
            name = getattr(row, name_column.key)
            if name in names:
                found[name] = row
            case_variants.setdefault(name.lower(), name)
    return found, case_variants


def _did_you_mean(hints: dict[str, str], name: str) -> str:
    close = hints.get(name.lower())
    return f" (did you mean {shown(close)}?)" if close else ""


def _recorded_usage(session: Session, customer_ids: set[int], rows: list[_UsageRow]) -> list[Usage]:
    years = sorted({row.year for row in rows})
    found: list[Usage] = []
    for chunk in _chunks(sorted(customer_ids)):
        found.extend(session.scalars(select(Usage).where(Usage.customer_id.in_(chunk), Usage.year.in_(years))))
    return found
