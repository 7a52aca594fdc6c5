"""`/bill customers`, `customer`, `usage` and `export` as Slack sends them, answers and files read back from "Slack"."""

from __future__ import annotations

import csv
import io
from datetime import date
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from PIL import Image
from slack_sdk import WebClient
from slack_sdk.webhook import WebhookClient
from sqlalchemy import select

from bot.billing import generate_month
from bot.errors import NotAllowed
from bot.periods import Period
from db.models import Bill, Role
from handlers import customers as customer_commands
from handlers.requests import CommandRequest
from sandbox.slack import CHANNEL_ID, TOKEN
from tests.factories import add_customer
from tests.slack_helpers import displayed, texts

LAST_MONTH = Period.previous(ZoneInfo("UTC"))
FINANCE, CSM, SALES = "UFIONA01", "UCAROL01", "USAM0001"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
OVER = [LAST_MONTH.shifted(-offset) for offset in range(0, 12, 2)]
WITHIN = [LAST_MONTH.shifted(-offset) for offset in range(1, 12, 2)]








@pytest.fixture
def team(slack):
    return {
        "fiona": slack.user("fiona", Role.FINANCE, FINANCE),
        "carol": slack.user("carol", Role.CUSTOMER_SUCCESS, CSM),
        "sam": slack.user("sam", Role.SALES, SALES),
    }


@pytest.fixture
def acme(slack, team):
    """Acme Corp, over its 1,000-call limit last month and every other month before; billed for last month."""
    usage = {(p.year, p.month): 1500 for p in OVER}
    usage |= {(p.year, p.month): 900 for p in WITHIN}
    with slack.db() as session:
        customer = add_customer(
            session, "Acme Corp", start=date(2020, 1, 1), csm=team["carol"], require_csm_approval=True, usage=usage
        )
        add_customer(session, "Beta", start=date(2020, 1, 1))
    with slack.db() as session:
        generate_month(session=session, period=LAST_MONTH, actor=team["fiona"], today=LAST_MONTH.shifted(1).first_day)
    return customer


def test_customer_shows_terms_usage_and_bills_then_sends_the_chart_to_the_caller(slack, acme):
    answer = slack.ask(CSM, "customer acme corp")
    completed = slack.fake.wait_for("files.completeUploadExternal")

    assert answer["response_type"] == "ephemeral"
    text = texts(answer)
    assert answer["blocks"][0]["text"]["text"] == "Acme Corp"
    assert "*Monthly limit*\n1,000 calls" in text and "*CSM*\n<@UCAROL01>" in text
    assert f"*API usage, {LAST_MONTH.shifted(-11).label} – {LAST_MONTH.label}*" in text
    for period in OVER:
        assert f"{period}      1,500  1,000  ◀ over by 500" in text
    for period in WITHIN:
        assert f"{period}        900  1,000\n" in text + "\n"
    assert "Over the limit in 6 of 12 months" in text
    with slack.db() as session:
        bill_id = session.scalar(select(Bill.id))
    assert f"*Bills* (1), latest first\n`#{bill_id}` {LAST_MONTH.label} · DRAFT · 500 over × $0.01 = *$5.00*" in text

    requested = slack.fake.last("files.getUploadURLExternal")
    assert requested["filename"].endswith(".png")
    assert slack.fake.last("conversations.open")["users"] == CSM
    assert completed[0]["channel_id"] == slack.fake.dm_channel(CSM)  # the answer is private, so is the chart
    assert "API usage of Acme Corp" in completed[0]["initial_comment"]
    (png,) = slack.fake.uploads.values()
    assert png.startswith(PNG_SIGNATURE)
    assert Image.open(io.BytesIO(png)).size == (1000, 500)
    assert int(requested["length"]) == len(png)


def test_the_chart_is_uploaded_after_the_reply(slack, acme):
    slack.ask(CSM, "customer Acme Corp")
    slack.fake.wait_for("files.completeUploadExternal")

    order = [call.method for call in slack.fake.recorded() if call.method in ("response_url", "upload")]
    assert order == ["response_url", "upload"]


def test_an_unknown_customer_gets_suggestions_and_no_chart(slack, acme):
    answer = slack.ask(SALES, "customer acme crop")

    assert answer["text"].startswith(":warning: There is no customer named “acme crop”. Did you mean “Acme Corp”?")
    assert slack.fake.calls("files.getUploadURLExternal") == []


def test_customer_without_a_name_gets_the_usage_line(slack, team):
    answer = slack.ask(SALES, "customer")

    assert "Usage: `/bill customer <name>`" in displayed(answer)


def test_customers_lists_every_customer(slack, acme):
    answer = slack.ask(SALES, "customers")

    assert answer["blocks"][0]["text"]["text"] == "Customers (2)"
    assert "*Acme Corp* — 1,000 calls a month, then $0.01 per call" in texts(answer)
    assert "*Beta* — 1,000 calls a month" in texts(answer)


def test_usage_with_a_year_shows_that_year(slack, acme):
    year = LAST_MONTH.year
    answer = slack.ask(SALES, f"usage Acme Corp {year}")

    assert answer["blocks"][0]["text"]["text"] == f"API usage — Acme Corp, {year}"
    assert f"{year}-01" in texts(answer) and f"{year}-12" in texts(answer)


def test_usage_without_a_customer_gets_the_usage_line(slack, team):
    answer = slack.ask(SALES, "usage 2026")

    assert "Usage: `/bill usage <customer> [year]`" in displayed(answer)


def test_an_unlinked_user_is_told_to_link(slack, acme):
    answer = slack.ask("UNOBODY1", "customer Acme Corp")

    assert "/bill link CODE" in answer["text"]
    assert slack.fake.calls("files.getUploadURLExternal") == []


def test_export_uploads_the_months_csv_to_the_callers_direct_messages(slack, acme):
    with slack.db() as session:
        before = LAST_MONTH.shifted(-2)
        add_customer(session, "Gamma", start=date(2020, 1, 1), usage={(before.year, before.month): 3000})
    with slack.db() as session:
        generate_month(session=session, period=before, actor=None, today=LAST_MONTH.first_day)

    answer = slack.ask(FINANCE, f"export {LAST_MONTH}")
    completed = slack.fake.wait_for("files.completeUploadExternal")

    assert slack.fake.last("conversations.open")["users"] == FINANCE
    assert completed[0]["channel_id"] == slack.fake.dm_channel(FINANCE)
    assert slack.fake.last("files.getUploadURLExternal")["filename"] == f"bills-{LAST_MONTH}.csv"
    (content,) = slack.fake.uploads.values()
    rows = list(csv.DictReader(io.StringIO(content.decode("utf-8"), newline="")))
    assert [(row["customer"], row["period"]) for row in rows] == [("Acme Corp", str(LAST_MONTH))]
    assert (rows[0]["overage_units"], rows[0]["overage_amount"], rows[0]["status"]) == ("500", "5.00", "DRAFT")
    assert answer["text"] == (
        f"{LAST_MONTH.label}: 1 bill, $5.00 in all (DRAFT 1)."
        f" I sent you `bills-{LAST_MONTH}.csv` in our direct messages."
    )
    assert completed[0]["initial_comment"] == f"{LAST_MONTH.label}: 1 bill, $5.00 in all (DRAFT 1)"


def test_export_defaults_to_last_month(slack, acme):
    with slack.db() as session:
        add_customer(session, "Delta", start=date(2020, 1, 1), usage={(LAST_MONTH.year, LAST_MONTH.month): 2000})
    with slack.db() as session:
        generate_month(session=session, period=LAST_MONTH, actor=None, today=LAST_MONTH.shifted(1).first_day)

    answer = slack.ask(FINANCE, "export")
    slack.fake.wait_for("files.completeUploadExternal")

    (content,) = slack.fake.uploads.values()
    rows = list(csv.DictReader(io.StringIO(content.decode("utf-8"), newline="")))
    assert "Delta" in [row["customer"] for row in rows]
    assert {row["period"] for row in rows} == {str(LAST_MONTH)}
    assert answer["text"].startswith(f"{LAST_MONTH.label}: {len(rows)} bill")


def test_export_of_a_month_without_bills_says_so(slack, team):
    answer = slack.ask(FINANCE, "export 2001-01")

    assert answer["text"] == "There are no bills for January 2001, so there is nothing to export."
    assert slack.fake.calls("files.getUploadURLExternal") == []


def test_export_of_a_malformed_month_gets_the_usage_line(slack, team):
    answer = slack.ask(FINANCE, "export October")

    assert answer["text"].startswith(":warning:")
    assert "Usage: `/bill export [YYYY-MM]`" in answer["text"]


def test_sales_may_not_export(slack, acme):
    answer = slack.ask(SALES, f"export {LAST_MONTH}")

    assert answer["text"] == ":warning: Only Finance can export bills"
    assert slack.fake.calls("files.getUploadURLExternal") == []
    assert slack.fake.uploads == {}


# --- the subcommand functions called directly, as the /bill listener calls them ----------------------


def request_for(slack, user, text: str) -> CommandRequest:
    """A CommandRequest as handlers/commands.py builds it, answering through the fake's response_url."""
    response_url = WebhookClient(slack.fake.response_url(user.slack_user_id))
    words = text.split(None, 1)
    return CommandRequest(
        services=SimpleNamespace(settings=slack.settings, sessions=slack.db),
        client=WebClient(base_url=slack.fake.url, token=TOKEN),
        respond=lambda **message: response_url.send_dict(message),
        slack_user_id=user.slack_user_id,
        channel_id=CHANNEL_ID,
        subcommand=words[0],
        args=words[1].split() if len(words) > 1 else [],
        text=words[1] if len(words) > 1 else "",
        user=user,
    )


def test_the_chart_never_goes_to_the_channel_the_command_came_from(slack, team, acme):
    customer_commands.customer(request_for(slack, team["carol"], "customer Acme Corp"))

    completed = slack.fake.calls("files.completeUploadExternal")
    assert [call["channel_id"] for call in completed] == [slack.fake.dm_channel(CSM)]
    assert CHANNEL_ID not in repr(slack.fake.calls("files.getUploadURLExternal") + completed)
    assert slack.responses(CSM)[0]["blocks"][0]["text"]["text"] == "Acme Corp"
    assert all(content.startswith(PNG_SIGNATURE) for content in slack.fake.uploads.values())


def test_a_customer_name_with_markup_characters_is_shown_as_typed(slack, team):
    with slack.db() as session:
        add_customer(session, "R&D <Labs> \"Q\" Ltd", start=date(2020, 1, 1), csm=team["carol"])

    answer = slack.ask(CSM, "customer R&D <Labs> \"Q\" Ltd")
    completed = slack.fake.wait_for("files.completeUploadExternal")

    assert answer["text"].startswith("R&amp;D &lt;Labs&gt; \"Q\" Ltd: over the limit")
    assert "R&amp;D &lt;Labs&gt; \"Q\" Ltd" in completed[0]["initial_comment"]
    assert "&quot;" not in texts(answer) + completed[0]["initial_comment"]
    assert answer["blocks"][0]["text"]["text"] == "R&D <Labs> \"Q\" Ltd"  # plain text: shown as it is


def test_export_called_directly_refuses_sales(slack, team):
    with pytest.raises(NotAllowed, match="Only Finance"):
        customer_commands.export(request_for(slack, team["sam"], "export"))
