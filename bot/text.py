"""Text a person typed: what of it can be stored or looked up, and how much of it a message repeats."""

from __future__ import annotations

import re

from bot.errors import InvalidInput

EMAIL_MAX_LENGTH = 254
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")
SHOWN_MAX = 40  # characters of a person's input repeated in a message about it
# PostgreSQL text cannot hold NUL, and no database encoding can hold half of a UTF-16 surrogate pair.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str, what: str) -> str:
    """`text` as given; InvalidInput naming `what` ("The reason") when it holds a character no database stores."""
    found = _UNSTORABLE.search(text)
    if found:
        character = "a NUL character (\\0)" if found[0] == "\x00" else "half of a UTF-16 surrogate pair"
        raise InvalidInput(f"{what} contains {character}, which cannot be stored; type it again without it")
    return text


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, with an ellipsis when it was longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shown(value: str, limit: int = SHOWN_MAX) -> str:
    """A value quoted in a message, shortened when long, so that a message never grows with its input."""
    return repr(clip(value, limit))


def is_email_address(text: str) -> bool:
    """True for one plain address such as billing@example.com."""
    return len(text) <= EMAIL_MAX_LENGTH and _EMAIL.fullmatch(text) is not None


def parse_email_address(text: str | None, what: str = "The email address") -> str:
    address = (text or "").strip()
    if not is_email_address(address):
        raise InvalidInput(f"{what} {shown(address)} is not an email address such as billing@example.com")
    return address
