"""Money in a currency: ISO 4217 codes, rounding to the currency's minor unit, and amounts shown to people.

Babel's CLDR data says how many decimal places each currency has (JPY 0, USD 2, KWD 3) and how an
amount is written. Amounts are rounded half-up to that unit; totals are kept per currency, since
amounts in different currencies are never added.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_UP, Decimal

from babel.numbers import (
    NumberFormatError,
    format_currency,
    format_decimal,
    get_currency_precision,
    get_currency_symbol,
    list_currencies,
    parse_decimal,
)

from bot.errors import InvalidInput
from bot.text import shown
from db.models import DEFAULT_CURRENCY

# How amounts are written for people: the app speaks English, with the currency's own symbol and places.
LOCALE = "en_US"
# The most decimal places any currency has; bill amounts are stored with this many.
MAX_PLACES = 3

_CODE = re.compile(r"[A-Za-z]{3}")
_CURRENCIES = frozenset(code for code in list_currencies() if get_currency_precision(code) <= MAX_PLACES)


def is_currency(code: str) -> bool:
    return code in _CURRENCIES


def parse_currency(text: str | None) -> str:
    """An ISO 4217 code such as USD (any case); empty means USD."""
    code = (text or "").strip().upper()
    if not code:
        return DEFAULT_CURRENCY
    if not _CODE.fullmatch(code) or code not in _CURRENCIES:
        raise InvalidInput(f"{shown(text or '')} is not an ISO 4217 currency code (e.g. USD, EUR, JPY)")
    return code


def places(currency: str) -> int:
    """The decimal places of the currency's minor unit: JPY 0, USD 2, KWD 3."""
    return get_currency_precision(currency)


def minor_unit(currency: str) -> Decimal:
    """The currency's smallest amount: 0.01 for USD, 1 for JPY, 0.001 for KWD."""
    return Decimal(1).scaleb(-places(currency))


def rounded(amount: Decimal, currency: str) -> Decimal:
    """The amount rounded half-up to the currency's minor unit."""
    return Decimal(amount).quantize(minor_unit(currency), rounding=ROUND_HALF_UP)


def overage_amount(units: int, unit_cost: Decimal, currency: str) -> Decimal:
    """units × unit cost, rounded half-up to the currency's minor unit."""
    return rounded(Decimal(units) * unit_cost, currency)


def format_money(amount: Decimal, currency: str) -> str:
    """The amount as people read it, with its currency: $1,500.00, ¥1,500, KWD1.500."""
    return format_currency(rounded(amount, currency), currency, locale=LOCALE)


def format_unit_price(price: Decimal, currency: str) -> str:
    """A price per call with every significant place and at least the currency's: $0.000125, ¥0.5, $0.02."""
    digits = max(places(currency), -price.normalize().as_tuple().exponent)
    pattern = "¤#,##0" + ("." + "0" * digits if digits else "")
    return format_currency(price, currency, format=pattern, currency_digits=False, locale=LOCALE)


def format_amount(amount: Decimal) -> str:
    """An amount in no particular currency, as people read it: 10,000.00 (an approval policy's limits)."""
    return format_decimal(amount, format="#,##0.00", locale=LOCALE)


def plain(amount: Decimal, currency: str) -> str:
    """The amount as a plain number with the currency's places (1500.00, 1500, 1.500): for files read by programs."""
    return f"{rounded(amount, currency):f}"


def parse_amount(text: str, currency: str, *, what: str = "The amount") -> Decimal:
    """A positive amount typed by a person (1500, 1,500.50, $12.30 for USD), exact to the currency's minor unit.

    Read with Babel as written in LOCALE (a comma groups thousands); only the currency's own symbol or code
    may come before it.
    """
    typed = (text or "").strip()
    for prefix in (currency, currency.lower(), get_currency_symbol(currency, locale=LOCALE)):
        if typed.startswith(prefix):
            typed = typed[len(prefix) :].strip()
            break
    try:
        amount = parse_decimal(typed, locale=LOCALE, strict=True)
    except NumberFormatError:
        raise InvalidInput(
            f"{what} {shown(text or '')} is not an amount in {currency}; write a number such as 1,250.50"
        ) from None
    if not amount.is_finite():
        raise InvalidInput(f"{what} {shown(text or '')} is not an amount in {currency}")
    if amount <= 0:
        raise InvalidInput(f"{what} must be more than zero")
    if amount != rounded(amount, currency):
        digits = places(currency)
        unit = "no decimal places" if digits == 0 else f"at most {digits} decimal places"
        raise InvalidInput(f"{what} {shown(text)} has too many decimal places: {currency} amounts have {unit}")
    return rounded(amount, currency)


def add_up(amounts: Iterable[tuple[str, Decimal]]) -> dict[str, Decimal]:
    """Totals per currency, in order of the currency code."""
    totals: dict[str, Decimal] = {}
    for currency, amount in amounts:
        totals[currency] = totals.get(currency, Decimal(0)) + amount
    return {currency: rounded(totals[currency], currency) for currency in sorted(totals)}


def add_totals(totals: Iterable[Mapping[str, Decimal]]) -> dict[str, Decimal]:
    """Several totals per currency together, still per currency."""
    return add_up((currency, amount) for some in totals for currency, amount in some.items())


def format_totals(totals: Mapping[str, Decimal], *, none: str = "nothing") -> str:
    """Totals per currency as one phrase: "$1,500.00 + €200.00"; never summed across currencies."""
    if not totals:
        return none
    return " + ".join(format_money(amount, currency) for currency, amount in sorted(totals.items()))
