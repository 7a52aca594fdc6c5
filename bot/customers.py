"""Reading customers: the list, one customer's terms, recent usage and bills, and its usage history."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload

from bot.errors import InvalidInput, NotFound
from bot.imports import NAME_MAX_LENGTH
from bot.periods import Period
from db.models import Bill, Customer, Usage

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


def customer_overview(*, session: Session, name: str, today: date) -> CustomerOverview:
    """Terms, the 12 months of usage ending last month, and the latest bills of the customer `name`."""
    customer = find_customer(session=session, name=name)
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
    customer = find_customer(session=session, name=name)
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
