"""Calendar months, the unit everything is billed by."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from bot.errors import InvalidInput
from bot.text import shown

_MONTH_PATTERN = re.compile(r"([0-9]{4})-([0-9]{1,2})")


@dataclass(frozen=True, order=True)
class Period:
    year: int
    month: int

    def __post_init__(self) -> None:
        if not 1 <= self.month <= 12:
            raise InvalidInput(f"month must be between 1 and 12, not {self.month}")
        if not 1900 <= self.year <= 9999:
            raise InvalidInput(f"year {self.year} is out of range")

    @classmethod
    def parse(cls, text: str) -> Period:
        """Read `YYYY-MM`, e.g. 2026-10."""
        match = _MONTH_PATTERN.fullmatch(text.strip())
        if not match:
            raise InvalidInput(f"{shown(text)} is not a month; write it as YYYY-MM, e.g. 2026-10")
        return cls(int(match[1]), int(match[2]))

    @classmethod
    def containing(cls, day: date) -> Period:
        return cls(day.year, day.month)

    @classmethod
    def previous(cls, zone: ZoneInfo, now: datetime | None = None) -> Period:
        """The last calendar month that has ended, in the given time zone."""
        today = (now or datetime.now(zone)).astimezone(zone).date()
        return cls.containing(today).shifted(-1)

    def shifted(self, months: int) -> Period:
        index = self.year * 12 + (self.month - 1) + months
        return Period(index // 12, index % 12 + 1)

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last_day(self) -> date:
        return date(self.year, self.month, calendar.monthrange(self.year, self.month)[1])

    @property
    def label(self) -> str:
        return f"{calendar.month_name[self.month]} {self.year}"

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"
