"""Block Kit for customers: the list, one customer's view, and a usage history, each ≤ 50 blocks; the export's summary."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby
from typing import TYPE_CHECKING

from slack_sdk.models.blocks import Block, DividerBlock

from bot.approval import customer_terms
from bot.blocks import (
    MAX_MESSAGE_BLOCKS,
    context,
    escape,
    fields,
    header,
    mention,
    packed,
    section,
)
from bot.customers import CustomerOverview, MonthUsage, UsageHistory
from bot.formatting import bill_amount, bill_period, calls, unit_cost
from bot.money import add_totals, format_totals
from bot.periods import Period
from db.models import Customer

if TYPE_CHECKING:
    from bot.home import StatusTotal

OVER_MARK = "◀ over by"


def contract(customer: Customer) -> str:
    return f"{customer.start_date:%Y-%m-%d} → {f'{customer.end_date:%Y-%m-%d}' if customer.end_date else 'open-ended'}"


def _csm(customer: Customer) -> str:
    return mention(customer.csm) if customer.csm else "none"


def _sections(lines: Sequence[str], max_blocks: int) -> tuple[list[Block], int]:
    """Pack lines into at most `max_blocks` sections within Slack's text limit; also how many lines did not fit."""
    texts = packed(lines)
    left_out = sum(text.count("\n") + 1 for text in texts[max_blocks:])
    return [section(text) for text in texts[:max_blocks]], left_out


def _table(rows: Sequence[Sequence[str]], right: Sequence[bool]) -> list[str]:
    """Rows of cells as aligned monospace lines; `right` says which columns are right-aligned."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return [
        "  ".join(
            cell.rjust(width) if align_right else cell.ljust(width)
            for cell, width, align_right in zip(row, widths, right)
        ).rstrip()
        for row in rows
    ]


def _usage_lines(months: Sequence[MonthUsage]) -> list[str]:
    rows = [("Month", "API calls", "Limit", "")]
    for month in months:
        if month.api_usage is None:
            rows.append((str(month.period), "—", calls(month.limit), "no usage recorded"))
        else:
            mark = f"{OVER_MARK} {calls(month.overage)}" if month.over_limit else ""
            rows.append((str(month.period), calls(month.api_usage), calls(month.limit), mark))
    return _table(rows, right=(False, True, True, False))


def _over_summary(months: Sequence[MonthUsage]) -> str:
    over = sum(month.over_limit for month in months)
    recorded = sum(month.api_usage is not None for month in months)
    total = sum(month.api_usage or 0 for month in months)
    return (
        f"Over the limit in {over} of {len(months)} months · {recorded} months recorded, "
        f"{calls(total)} calls in all"
    )


def customers_list(customers: Sequence[Customer]) -> list[Block]:
    if not customers:
        return [
            header("Customers"),
            section("No customers yet. Operators add them with `billprocess customers import FILE`."),
        ]
    lines = [
        f"*{escape(customer.name)}* — {calls(customer.monthly_api_limit)} calls a month, then "
        f"{unit_cost(customer.overage_unit_cost, customer.currency)} per call · {customer_terms(customer)}"
        f" · CSM {_csm(customer)} · "
        f"contract {contract(customer)}"
        for customer in customers
    ]
    sections, left_out = _sections(lines, MAX_MESSAGE_BLOCKS - 3)
    blocks: list[Block] = [header(f"Customers ({len(customers)})"), *sections]
    if left_out:
        blocks.append(context(f"…and {left_out} more that do not fit in one message."))
    blocks.append(context("`/bill customer NAME` shows one customer's terms, usage, bills and chart."))
    return blocks


def customer_view(overview: CustomerOverview) -> list[Block]:
    customer = overview.customer
    months = overview.months
    blocks: list[Block] = [
        header(customer.name),
        fields(
            [
                f"*Monthly limit*\n{calls(customer.monthly_api_limit)} calls",
                f"*Overage unit cost*\n{unit_cost(customer.overage_unit_cost, customer.currency)} per call",
                f"*Contract*\n{contract(customer)}",
                f"*Approval*\n{customer_terms(customer)}",
                f"*CSM*\n{_csm(customer)}",
                f"*Billing email*\n{escape(customer.billing_email)}",
            ]
        ),
        DividerBlock(),
        section(
                f"*API usage, {months[0].period.label} – {months[-1].period.label}*\n"
                "```" + escape("\n".join(_usage_lines(months))) + "```"
        ),
        context(_over_summary(months)),
        DividerBlock(),
    ]
    if not overview.bills:
        blocks.append(section("*Bills*\nNo bills yet."))
        return blocks
    lines = [
        f"`#{bill.id}` {bill_period(bill).label} · {bill.status.value} · "
        f"{calls(bill.overage_units)} over × {unit_cost(bill.overage_unit_cost, bill.currency)} = *{bill_amount(bill)}*"
        for bill in overview.bills
    ]
    blocks.append(section(f"*Bills* ({overview.bill_count}), latest first\n" + "\n".join(lines)))
    if overview.bill_count > len(overview.bills):
        blocks.append(context(f"…and {overview.bill_count - len(overview.bills)} older bills."))
    return blocks


def usage_history(history: UsageHistory) -> list[Block]:
    customer = history.customer
    title = f"API usage — {customer.name}" + (f", {history.year}" if history.year else "")
    blocks: list[Block] = [header(title)]
    if not history.months:
        blocks.append(section(f"No usage is recorded for {escape(customer.name)} yet."))
        return blocks
    limit_note = f"Marked against the current limit of {calls(customer.monthly_api_limit)} calls a month."
    if history.year is not None:
        blocks += [
            section("```" + escape("\n".join(_usage_lines(history.months))) + "```"),
            context(f"{_over_summary(history.months)} · {limit_note}"),
        ]
        return blocks
    years = [(year, list(months)) for year, months in groupby(history.months, key=lambda month: month.period.year)]
    room = MAX_MESSAGE_BLOCKS - 3
    for year, months in reversed(years[-room:]):
        lines = "\n".join(_usage_lines(months))
        blocks.append(section(f"*{year}*\n```{escape(lines)}```"))
    if len(years) > room:
        blocks.append(context(f"…and {len(years) - room} earlier years: `/bill usage {escape(customer.name)} YEAR`."))
    blocks.append(context(f"{_over_summary(history.months)} · {limit_note}"))
    return blocks


def export_summary(period: Period, totals: Sequence[StatusTotal]) -> str:
    """What `/bill export` says of the month's CSV: "October 2026: 3 bills, $1,500.00 in all (DRAFT 1, FINAL 2)"."""
    count = sum(total.count for total in totals)
    if not count:
        return f"There are no bills for {period.label}, so there is nothing to export."
    amount = format_totals(add_totals(total.totals for total in totals))
    by_status = ", ".join(f"{total.status.value} {total.count}" for total in totals if total.count)
    return f"{period.label}: {count} {'bill' if count == 1 else 'bills'}, {amount} in all ({by_status})"
