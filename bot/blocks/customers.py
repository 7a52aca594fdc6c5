"""Block Kit for customers: the list, one customer's view, and a usage history, each ≤ 50 blocks."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby

from slack_sdk.models.blocks import (
    Block,
    DividerBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.blocks import MAX_MESSAGE_BLOCKS, context, escape, header, mention
from bot.customers import CustomerOverview, MonthUsage, UsageHistory
from bot.formatting import bill_amount, bill_period, calls, unit_cost
from db.models import Customer

MAX_SECTION_TEXT = 3000
OVER_MARK = "◀ over by"


def _text(markdown: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=markdown)






def approval_kind(customer: Customer) -> str:
    return "Two-step: the CSM, then Sales" if customer.require_csm_approval else "One-step: Customer Success or Sales"


def contract(customer: Customer) -> str:
    return f"{customer.start_date:%Y-%m-%d} → {f'{customer.end_date:%Y-%m-%d}' if customer.end_date else 'open-ended'}"


def _csm(customer: Customer) -> str:
    return mention(customer.csm) if customer.csm else "none"


def _sections(lines: Sequence[str], max_blocks: int) -> tuple[list[Block], int]:
    """Pack lines into at most `max_blocks` sections within Slack's text limit; also how many lines did not fit."""
    blocks: list[Block] = []
    chunk: list[str] = []
    used = 0
    for index, line in enumerate(lines):
        if chunk and used + len(line) > MAX_SECTION_TEXT:
            blocks.append(SectionBlock(text=_text("\n".join(chunk))))
            if len(blocks) == max_blocks:
                return blocks, len(lines) - index
            chunk, used = [], 0
        chunk.append(line)
        used += len(line) + 1
    if chunk:
        blocks.append(SectionBlock(text=_text("\n".join(chunk))))
    return blocks, 0


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
            SectionBlock(text=_text("No customers yet. Operators add them with `billprocess customers import FILE`.")),
        ]
    lines = [
        f"*{escape(customer.name)}* — {calls(customer.monthly_api_limit)} calls a month, then "
        f"{unit_cost(customer.overage_unit_cost, customer.currency)} per call · {approval_kind(customer)} · CSM {_csm(customer)} · "
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
        SectionBlock(
            fields=[
                _text(f"*Monthly limit*\n{calls(customer.monthly_api_limit)} calls"),
                _text(f"*Overage unit cost*\n{unit_cost(customer.overage_unit_cost, customer.currency)} per call"),
                _text(f"*Contract*\n{contract(customer)}"),
                _text(f"*Approval*\n{approval_kind(customer)}"),
                _text(f"*CSM*\n{_csm(customer)}"),
                _text(f"*Billing email*\n{escape(customer.billing_email)}"),
            ]
        ),
        DividerBlock(),
        SectionBlock(
            text=_text(
                f"*API usage, {months[0].period.label} – {months[-1].period.label}*\n"
                "```" + escape("\n".join(_usage_lines(months))) + "```"
            )
        ),
        context(_over_summary(months)),
        DividerBlock(),
    ]
    if not overview.bills:
        blocks.append(SectionBlock(text=_text("*Bills*\nNo bills yet.")))
        return blocks
    lines = [
        f"`#{bill.id}` {bill_period(bill).label} · {bill.status.value} · "
        f"{calls(bill.overage_units)} over × {unit_cost(bill.overage_unit_cost, bill.currency)} = *{bill_amount(bill)}*"
        for bill in overview.bills
    ]
    blocks.append(SectionBlock(text=_text(f"*Bills* ({overview.bill_count}), latest first\n" + "\n".join(lines))))
    if overview.bill_count > len(overview.bills):
        blocks.append(context(f"…and {overview.bill_count - len(overview.bills)} older bills."))
    return blocks


def usage_history(history: UsageHistory) -> list[Block]:
    customer = history.customer
    title = f"API usage — {customer.name}" + (f", {history.year}" if history.year else "")
    blocks: list[Block] = [header(title)]
    if not history.months:
        blocks.append(SectionBlock(text=_text(f"No usage is recorded for {escape(customer.name)} yet.")))
        return blocks
    limit_note = f"Marked against the current limit of {calls(customer.monthly_api_limit)} calls a month."
    if history.year is not None:
        blocks += [
            SectionBlock(text=_text("```" + escape("\n".join(_usage_lines(history.months))) + "```")),
            context(f"{_over_summary(history.months)} · {limit_note}"),
        ]
        return blocks
    years = [(year, list(months)) for year, months in groupby(history.months, key=lambda month: month.period.year)]
    room = MAX_MESSAGE_BLOCKS - 3
    for year, months in reversed(years[-room:]):
        lines = "\n".join(_usage_lines(months))
        blocks.append(SectionBlock(text=_text(f"*{year}*\n```{escape(lines)}```")))
    if len(years) > room:
        blocks.append(context(f"…and {len(years) - room} earlier years: `/bill usage {escape(customer.name)} YEAR`."))
    blocks.append(context(f"{_over_summary(history.months)} · {limit_note}"))
    return blocks
