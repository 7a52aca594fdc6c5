"""`/bill customers`, `customer`, `usage` and `export`: reading customers, and Finance's CSV of a month.

The `/bill` listener (handlers/commands.py) acknowledges first and then calls these, so the chart and the
CSV are made after the acknowledgement. Wrong input raises InvalidInput with the usage line; the app's
error handler shows it.
"""

from __future__ import annotations

import re
from datetime import date, datetime

from bot import charts, customers as customer_service, export as export_service
from bot.blocks import message_blocks
from bot.blocks import customers as customer_blocks
from bot.blocks import escape
from bot.errors import InvalidInput
from bot.money import add_totals, format_totals
from bot.home import status_totals
from bot.periods import Period
from handlers.requests import CommandRequest

USAGE = {
    "customers": "/bill customers",
    "customer": "/bill customer <name>",
    "usage": "/bill usage <customer> [year]",
    "export": "/bill export [YYYY-MM]",
}
_YEAR = re.compile(r"[0-9]{4}")


def _usage_error(subcommand: str, problem: str) -> InvalidInput:
    return InvalidInput(f"{problem} Usage: `{USAGE[subcommand]}`")


def customers(request: CommandRequest) -> None:
    request.account()
    if request.args:
        raise _usage_error("customers", "`/bill customers` takes no arguments.")
    with request.services.sessions() as session:
        found = customer_service.list_customers(session=session)
        blocks = message_blocks(customer_blocks.customers_list(found))
    request.reply(f"{len(found)} customers", blocks)


def customer(request: CommandRequest) -> None:
    """The customer's terms, usage and bills as a reply, then its usage chart in the caller's direct messages.

    The reply is ephemeral, so the chart is not shown in the channel either.
    """
    request.account()
    name = request.text.strip()
    if not name:
        raise _usage_error("customer", "Which customer? Give its name, e.g. `/bill customer Acme`.")
    with request.services.sessions() as session:
        overview = customer_service.customer_overview(session=session, name=name, today=_today(request))
        blocks = message_blocks(customer_blocks.customer_view(overview))
    found = overview.customer.name
    over = len(overview.months_over_limit)
    request.reply(f"{escape(found)}: over the limit in {over} of the last {len(overview.months)} months", blocks)
    first, last = overview.months[0].period, overview.months[-1].period
    request.client.files_upload_v2(
        channel=_direct_channel(request),
        file=charts.usage_chart_png(overview),
        filename=f"usage-{_slug(found)}-{first}-to-{last}.png",
        title=charts.chart_title(overview),
        initial_comment=f"API usage of {escape(found)}, {first.label} – {last.label}, against its monthly limit.",
    )


def usage(request: CommandRequest) -> None:
    """`usage <customer> [year]`: a trailing four-digit word is the year."""
    request.account()
    words = request.text.split()
    year = None
    if words and _YEAR.fullmatch(words[-1]):
        year = int(words.pop())
    name = " ".join(words)
    if not name:
        raise _usage_error("usage", "Which customer? Give its name, e.g. `/bill usage Acme 2026`.")
    with request.services.sessions() as session:
        history = customer_service.usage_history(session=session, name=name, year=year)
        blocks = message_blocks(customer_blocks.usage_history(history))
    request.reply(f"API usage of {escape(history.customer.name)}", blocks)


def export(request: CommandRequest) -> None:
    """Finance: the month's bills as a CSV file, uploaded to the caller's direct messages with the app."""
    actor = request.account()
    if len(request.args) > 1:
        raise _usage_error("export", "Give at most one month.")
    if request.args:
        try:
            period = Period.parse(request.args[0])
        except InvalidInput as error:
            raise _usage_error("export", f"{error}.") from None
    else:
        period = Period.previous(request.services.settings.zone)
    with request.services.sessions() as session:
        content = export_service.bills_csv(session=session, period=period, actor=actor)
        totals = status_totals(session=session, period=period)
    count = sum(total.count for total in totals)
    if not count:
        request.reply(f"There are no bills for {period.label}, so there is nothing to export.")
        return
    amount = format_totals(add_totals(total.totals for total in totals))
    by_status = ", ".join(f"{total.status.value} {total.count}" for total in totals if total.count)
    summary = f"{period.label}: {count} {'bill' if count == 1 else 'bills'}, {amount} in all ({by_status})"
    dm_channel = _direct_channel(request)
    filename = export_service.bills_csv_filename(period)
    request.client.files_upload_v2(
        channel=dm_channel,
        file=content,
        filename=filename,
        title=f"Bills for {period.label}",
        initial_comment=summary,
    )
    request.reply(f"{summary}. I sent you `{filename}` in our direct messages.")


def _direct_channel(request: CommandRequest) -> str:
    """The app's direct-message channel with the caller."""
    return request.client.conversations_open(users=request.slack_user_id)["channel"]["id"]


def _today(request: CommandRequest) -> date:
    return datetime.now(request.services.settings.zone).date()


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "customer"
