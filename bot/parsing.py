"""Reading values people type or import: a unit cost, a reason, an email address.

Each kind of value has one parser, used by Slack, the command line and the CSV imports alike, so the
same input gets the same answer everywhere. A refusal is an InvalidInput naming what is wrong.
"""

from __future__ import annotations

import re
from decimal import Decimal

from bot.errors import InvalidInput
from bot.text import shown, storable

MAX_UNIT_COST = Decimal(1000)  # per call: with it the largest amount still fits both databases' columns


UNIT_COST_PLACES = 6
UNIT_COST_STEP = Decimal(1).scaleb(-UNIT_COST_PLACES)
REASON_MAX_LENGTH = 2000
EMAIL_MAX_LENGTH = 254

_PLAIN_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?|\.[0-9]+")
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")


def parse_unit_cost(value: Decimal | str, what: str = "The unit cost") -> Decimal:
    """An exact, non-negative unit cost of at most MAX_UNIT_COST with at most 6 decimal places.

    `what` names the value in refusals ("The unit cost", or an import's column). Floats are refused.
    """
    if isinstance(value, (bool, float)):
        raise InvalidInput(f"{what} must be an exact decimal such as 0.0125, not a floating-point number")
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("-") and _PLAIN_DECIMAL.fullmatch(text[1:]):
            raise InvalidInput(f"{what} cannot be negative")
        if not _PLAIN_DECIMAL.fullmatch(text):
            raise InvalidInput(f"{what} must be a decimal number such as 0.0125, not {shown(value)}")
        cost = Decimal(text)
    elif isinstance(value, (Decimal, int)):
        cost = Decimal(value)
    else:
        raise InvalidInput(f"{what} must be a decimal number such as 0.0125, not {value!r}")
    if not cost.is_finite():
        raise InvalidInput(f"{what} must be a finite decimal number")
    if cost < 0:
        raise InvalidInput(f"{what} cannot be negative")
    if cost > MAX_UNIT_COST:
        raise InvalidInput(f"{what} {shown(str(value))} is too large; it can be at most {MAX_UNIT_COST:,} per call")
    if cost != cost.quantize(UNIT_COST_STEP):
        raise InvalidInput(f"{what} {shown(str(value))} has more than {UNIT_COST_PLACES} decimal places")
    return cost.quantize(UNIT_COST_STEP).copy_abs()  # copy_abs turns a -0 into 0; nothing else is negative here


def parse_reason(reason: str | None, *, required: bool, doing: str = "reject a bill") -> str | None:
    """A rejection, undo or credit reason, trimmed; 1–2000 characters when required, else empty means none."""
    text = storable((reason or "").strip(), "The reason")
    if not text:
        if required:
            raise InvalidInput(f"A reason is required to {doing}")
        return None
    if len(text) > REASON_MAX_LENGTH:
        raise InvalidInput(f"The reason is {len(text)} characters long; at most {REASON_MAX_LENGTH} are allowed")
    return text


def is_email(text: str) -> bool:
    """Whether `text` is an email address as the app accepts one: name@domain.tld, at most 254 characters."""
    return len(text) <= EMAIL_MAX_LENGTH and _EMAIL.fullmatch(text) is not None


def parse_email(text: str, what: str) -> str:
    """`text` as an email address, trimmed; `what` names it in the refusal ("The email", a column)."""
    address = text.strip()
    if not is_email(address):
        raise InvalidInput(f"{what} must be an email address such as billing@example.com, not {shown(address)}")
    return address
