"""Calendar months: parsing what people type, moving across year ends, and 'last month' in a time zone."""

from __future__ import annotations

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from bot.errors import InvalidInput
from bot.periods import Period

UTC = ZoneInfo("UTC")
AUCKLAND = ZoneInfo("Pacific/Auckland")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-10", Period(2026, 10)),
        ("2026-01", Period(2026, 1)),
        ("2026-1", Period(2026, 1)),
        ("2025-12", Period(2025, 12)),
        ("  2026-10\n", Period(2026, 10)),
        ("1900-01", Period(1900, 1)),
        ("9999-12", Period(9999, 12)),
    ],
)
def test_parse_reads_year_and_month(text, expected):
    assert Period.parse(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "   ", "2026", "2026-", "2026/10", "2026.10", "10-2026", "26-10", "2026-10-01", "2026-100",
     "October 2026", "2026-1O", "-2026-10"],
)
def test_parse_refuses_text_that_is_not_a_month(text):
    with pytest.raises(InvalidInput) as error:
        Period.parse(text)
    assert str(error.value) == f"{text!r} is not a month; write it as YYYY-MM, e.g. 2026-10"


@pytest.mark.parametrize(
    "text, message",
    [
        ("2026-13", "month must be between 1 and 12, not 13"),
        ("2026-00", "month must be between 1 and 12, not 0"),
        ("2026-0", "month must be between 1 and 12, not 0"),
        ("1899-12", "year 1899 is out of range"),
        ("0000-01", "year 0 is out of range"),
    ],
)
def test_parse_names_the_part_that_is_out_of_range(text, message):
    with pytest.raises(InvalidInput, match=f"^{message}$"):
        Period.parse(text)


def test_a_period_cannot_be_built_with_an_impossible_month():
    with pytest.raises(InvalidInput, match="not 13"):
        Period(2026, 13)


@pytest.mark.parametrize("period, text", [(Period(2026, 1), "2026-01"), (Period(2025, 12), "2025-12")])
def test_str_is_the_form_parse_reads(period, text):
    assert str(period) == text
    assert Period.parse(str(period)) == period


def test_label_is_month_name_and_year():
    assert Period(2024, 2).label == "February 2024"
    assert Period(2025, 12).label == "December 2025"


@pytest.mark.parametrize(
    "start, months, expected",
    [
        (Period(2025, 11), 0, Period(2025, 11)),
        (Period(2025, 11), 1, Period(2025, 12)),
        (Period(2025, 11), 2, Period(2026, 1)),
        (Period(2025, 12), 1, Period(2026, 1)),
        (Period(2026, 1), -1, Period(2025, 12)),
        (Period(2026, 2), -2, Period(2025, 12)),
        (Period(2026, 1), -13, Period(2024, 12)),
        (Period(2026, 1), 12, Period(2027, 1)),
        (Period(2026, 6), 30, Period(2028, 12)),
        (Period(2026, 6), -30, Period(2023, 12)),
    ],
)
def test_shifted_crosses_year_ends(start, months, expected):
    assert start.shifted(months) == expected


def test_shifted_out_of_the_supported_years_is_refused():
    with pytest.raises(InvalidInput, match="year 10000 is out of range"):
        Period(9999, 12).shifted(1)


def test_periods_sort_in_calendar_order():
    assert sorted([Period(2026, 1), Period(2025, 12), Period(2025, 2)]) == [
        Period(2025, 2), Period(2025, 12), Period(2026, 1),
    ]


@pytest.mark.parametrize(
    "period, first, last",
    [
        (Period(2024, 2), date(2024, 2, 1), date(2024, 2, 29)),
        (Period(2026, 2), date(2026, 2, 1), date(2026, 2, 28)),
        (Period(2000, 2), date(2000, 2, 1), date(2000, 2, 29)),
        (Period(1900, 2), date(1900, 2, 1), date(1900, 2, 28)),
        (Period(2026, 4), date(2026, 4, 1), date(2026, 4, 30)),
        (Period(2025, 12), date(2025, 12, 1), date(2025, 12, 31)),
        (Period(2026, 1), date(2026, 1, 1), date(2026, 1, 31)),
    ],
)
def test_first_and_last_day(period, first, last):
    assert period.first_day == first
    assert period.last_day == last


def test_containing_is_the_month_of_the_day():
    assert Period.containing(date(2024, 2, 29)) == Period(2024, 2)
    assert Period.containing(date(2025, 12, 31)) == Period(2025, 12)


@pytest.mark.parametrize(
    "zone, now, expected",
    [
        # 2026-11-30 11:30 UTC is already 1 December 00:30 in Auckland: November has ended there.
        (AUCKLAND, datetime(2026, 11, 30, 11, 30, tzinfo=timezone.utc), Period(2026, 11)),
        (UTC, datetime(2026, 11, 30, 11, 30, tzinfo=timezone.utc), Period(2026, 10)),
        # The same instant written in Auckland time gives the same answers.
        (AUCKLAND, datetime(2026, 12, 1, 0, 30, tzinfo=AUCKLAND), Period(2026, 11)),
        (UTC, datetime(2026, 12, 1, 0, 30, tzinfo=AUCKLAND), Period(2026, 10)),
        # Behind UTC: 1 November 02:00 UTC is still 31 October in Los Angeles.
        (LOS_ANGELES, datetime(2026, 11, 1, 2, 0, tzinfo=timezone.utc), Period(2026, 9)),
        (UTC, datetime(2026, 11, 1, 2, 0, tzinfo=timezone.utc), Period(2026, 10)),
        # Across the year end.
        (AUCKLAND, datetime(2025, 12, 31, 11, 30, tzinfo=timezone.utc), Period(2025, 12)),
        (UTC, datetime(2025, 12, 31, 11, 30, tzinfo=timezone.utc), Period(2025, 11)),
        (UTC, datetime(2026, 1, 1, 0, 0, tzinfo=timezone.utc), Period(2025, 12)),
    ],
)
def test_previous_is_the_last_ended_month_in_the_zone(zone, now, expected):
    assert Period.previous(zone, now) == expected


def test_previous_without_a_time_uses_the_current_month_in_the_zone():
    before = datetime.now(AUCKLAND)
    result = Period.previous(AUCKLAND)
    after = datetime.now(AUCKLAND)
    assert result in {Period.containing(before.date()).shifted(-1), Period.containing(after.date()).shifted(-1)}
