"""Customers: the list, one customer's terms, recent usage and bills, its usage history; and adding or
changing one customer without a file, checked exactly as a row of a customers file is (bot/imports.py)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload

from bot import outbox
from bot.errors import Conflict, InvalidInput, NotFound
from bot.imports import CUSTOMER_COLUMNS, NAME_MAX_LENGTH, OPTIONAL_CUSTOMER_COLUMNS, apply_customer, check_csm, customer_row, lock_customers
from bot.periods import Period
from db.models import Bill, BillStatus, Customer, Usage

OVERVIEW_MONTHS = 12
MAX_OVERVIEW_BILLS = 12
MAX_SUGGESTIONS = 3
_QUOTES = "\"'“”‘’"


@dataclass(frozen=True)
class MonthUsage:
    """One month's recorded API calls against the customer's monthly limit."""

    period: Period
    api_usage: int | None  # None: no usage recorded for the month
    limit: int

    @property
    def over_limit(self) -> bool:
        return self.api_usage is not None and self.api_usage > self.limit

    @property
    def overage(self) -> int:
        return max(0, (self.api_usage or 0) - self.limit)


@dataclass(frozen=True)
class CustomerOverview:
    customer: Customer  # with its CSM loaded
    months: list[MonthUsage]  # the 12 months ending last month, oldest first
    bills: list[Bill]  # the latest first, at most MAX_OVERVIEW_BILLS
    bill_count: int

    @property
    def months_over_limit(self) -> list[MonthUsage]:
        return [month for month in self.months if month.over_limit]


@dataclass(frozen=True)
class UsageHistory:
    customer: Customer
    year: int | None  # None: every recorded month
    months: list[MonthUsage]  # oldest first


def list_customers(*, session: Session) -> list[Customer]:
    """Every customer with its CSM, by name."""
    return list(session.scalars(select(Customer).options(joinedload(Customer.csm)).order_by(Customer.name)))


def find_customer(*, session: Session, name: str) -> Customer:
    """The customer called `name`, matched exactly or else ignoring case; unknown names get suggestions."""
    wanted = _clean(name)
    if not wanted:
        raise InvalidInput("Which customer? Give its name, e.g. Acme")
    if len(wanted) > NAME_MAX_LENGTH:
        raise NotFound(f"There is no customer with a name that long; names have at most {NAME_MAX_LENGTH} characters.")
    customer = session.scalar(select(Customer).where(Customer.name == wanted).options(joinedload(Customer.csm)))
    if customer is not None:
        return customer
    names = list(session.scalars(select(Customer.name)))
    by_key: dict[str, list[str]] = {}
    for known in names:
        by_key.setdefault(_key(known), []).append(known)
    same = by_key.get(_key(wanted), [])
    if len(same) == 1:
        return session.scalar(select(Customer).where(Customer.name == same[0]).options(joinedload(Customer.csm)))
    raise NotFound(_unknown_customer(wanted, same or _close_matches(wanted, by_key)))


def get_customer(*, session: Session, customer_id: int) -> Customer:
    """The customer with that id, with its CSM."""
    customer = session.scalar(select(Customer).where(Customer.id == customer_id).options(joinedload(Customer.csm)))
    if customer is None:
        raise NotFound(f"there is no customer #{customer_id}")
    return customer


def customer_overview(*, session: Session, name: str, today: date) -> CustomerOverview:
    """Terms, the 12 months of usage ending last month, and the latest bills of the customer `name`."""
    return overview(session=session, customer=find_customer(session=session, name=name), today=today)


def overview(*, session: Session, customer: Customer, today: date) -> CustomerOverview:
    """Terms, the 12 months of usage ending last month, and the latest bills of `customer`."""
    last = Period.containing(today).shifted(-1)
    periods = [last.shifted(offset) for offset in range(1 - OVERVIEW_MONTHS, 1)]
    recorded = _recorded_usage(session, customer, periods[0], periods[-1])
    months = [MonthUsage(period, recorded.get(period), customer.monthly_api_limit) for period in periods]
    bills = list(
        session.scalars(
            select(Bill)
            .where(Bill.customer_id == customer.id)
            .order_by(Bill.year.desc(), Bill.month.desc())
            .limit(MAX_OVERVIEW_BILLS)
        )
    )
    bill_count = session.scalar(select(func.count()).select_from(Bill).where(Bill.customer_id == customer.id)) or 0
    return CustomerOverview(customer=customer, months=months, bills=bills, bill_count=bill_count)


def usage_history(*, session: Session, name: str, year: int | None) -> UsageHistory:
    """The twelve months of `year` (unrecorded ones included), or every recorded month when no year is given."""
    return usage_of(session=session, customer=find_customer(session=session, name=name), year=year)


def usage_of(*, session: Session, customer: Customer, year: int | None) -> UsageHistory:
    """The usage of `customer` in `year`, or every recorded month (see usage_history)."""
    limit = customer.monthly_api_limit
    if year is None:
        rows = session.execute(
            select(Usage.year, Usage.month, Usage.api_usage)
            .where(Usage.customer_id == customer.id)
            .order_by(Usage.year, Usage.month)
        )
        months = [MonthUsage(Period(row.year, row.month), row.api_usage, limit) for row in rows]
        return UsageHistory(customer=customer, year=None, months=months)
    if not 1900 <= year <= 9999:
        raise InvalidInput(f"{year} is not a year BillProcess can hold usage for")
    first, last = Period(year, 1), Period(year, 12)
    recorded = _recorded_usage(session, customer, first, last)
    months = [MonthUsage(period, recorded.get(period), limit) for period in (first.shifted(n) for n in range(12))]
    return UsageHistory(customer=customer, year=year, months=months)


def _recorded_usage(session: Session, customer: Customer, first: Period, last: Period) -> dict[Period, int]:
    index = Usage.year * 12 + Usage.month - 1
    rows = session.execute(
        select(Usage.year, Usage.month, Usage.api_usage).where(
            Usage.customer_id == customer.id,
            index.between(first.year * 12 + first.month - 1, last.year * 12 + last.month - 1),
        )
    )
    return {Period(row.year, row.month): row.api_usage for row in rows}


# --- adding and changing one customer --------------------------------------------------------------


def add_customer(*, session: Session, values: dict[str, str], labels: dict[str, str] | None = None) -> Customer:
    """Add the customer `values` describes, given as a customers file's columns would hold them.

    `labels` says how messages name each column (`--email` on the command line); InvalidFields names each
    bad value.
    """
    row = customer_row(values, labels)
    with session.begin():
        lock_customers(session)
        same = session.scalar(select(Customer.name).where(func.lower(Customer.name) == row.name.lower()))
        if same == row.name:
            raise Conflict(f"a customer named {same} already exists; change it with `billprocess customers edit`")
        if same is not None:
            raise Conflict(f"a customer named {same} already exists (the same name in other upper and lower case)")
        customer = Customer(name=row.name)
        apply_customer(customer, row, check_csm(session, row, labels))
        session.add(customer)
        session.flush()
        _ = customer.csm
    return customer


def edit_customer(
    *, session: Session, customer: str | int, changes: dict[str, str], labels: dict[str, str] | None = None
) -> Customer:
    """Change some of a customer's terms (by name, or id); every value is checked again as in a file.

    `changes` holds the new values by column, as a customers file would hold them (an empty `end_date`
    or `csm` removes it). The customer's CSM is checked only when it is changed.
    """
    unknown = sorted(set(changes) - set(CUSTOMER_COLUMNS) - set(OPTIONAL_CUSTOMER_COLUMNS) - {"name"})
    if unknown or "name" in changes:
        raise InvalidInput(f"a customer's {', '.join(unknown) or 'name'} cannot be changed here")
    if not changes:
        described = ", ".join(
            (labels or {}).get(column, column) for column in CUSTOMER_COLUMNS[1:] + OPTIONAL_CUSTOMER_COLUMNS
        )
        raise InvalidInput(f"nothing to change: give at least one of {described}")
    with session.begin():
        lock_customers(session)
        found = (
            get_customer(session=session, customer_id=customer)
            if isinstance(customer, int)
            else find_customer(session=session, name=customer)
        )
        row = customer_row({**_as_file_values(found), **changes}, labels)
        csm_id = check_csm(session, row, labels) if "csm" in changes else found.csm_id
        approvers = (found.csm_id, found.require_csm_approval)
        apply_customer(found, row, csm_id)
        session.flush()
        if (found.csm_id, found.require_csm_approval) != approvers:  # whom its drafts wait for changed
            drafts = select(Bill.id).where(Bill.customer_id == found.id, Bill.status == BillStatus.DRAFT)
            outbox.bills_shown_again(session, list(session.scalars(drafts)))
        session.refresh(found, ["csm"])
    return found


def _as_file_values(customer: Customer) -> dict[str, str]:
    """The customer's terms as a customers file holds them."""
    return {
        "name": customer.name,
        "billing_address": customer.billing_address,
        "billing_email": customer.billing_email,
        "monthly_api_limit": str(customer.monthly_api_limit),
        "overage_unit_cost": f"{customer.overage_unit_cost:f}",
        "start_date": customer.start_date.isoformat(),
        "end_date": customer.end_date.isoformat() if customer.end_date else "",
        "require_csm_approval": "true" if customer.require_csm_approval else "false",
        "csm": customer.csm.name if customer.csm else "",
        "currency": customer.currency,
    }


def _clean(name: str) -> str:
    """The name as typed, without surrounding quotes and with runs of spaces made single."""
    return " ".join(name.strip().strip(_QUOTES).split())


def _key(name: str) -> str:
    return " ".join(name.split()).casefold()


def _close_matches(wanted: str, by_key: dict[str, list[str]]) -> list[str]:
    """Names that contain what was typed, then names that look like it; at most MAX_SUGGESTIONS."""
    key = _key(wanted)
    containing = sorted(name for known, names in by_key.items() if key in known for name in names)
    similar = [
        name
        for known in difflib.get_close_matches(key, list(by_key), n=MAX_SUGGESTIONS, cutoff=0.6)
        for name in by_key[known]
    ]
    return list(dict.fromkeys(containing + similar))[:MAX_SUGGESTIONS]


def _unknown_customer(wanted: str, suggestions: list[str]) -> str:
    message = f"There is no customer named “{wanted}”."
    if suggestions:
        message += " Did you mean " + _or(suggestions) + "?"
    return message + " `/bill customers` lists every customer."


def _or(names: list[str]) -> str:
    quoted = [f"“{name}”" for name in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
