"""Whatever is typed after `/bill` gets a specific answer: bounded, escaped, and changing nothing when refused.

Through the real app and its HTTP server: examples first, then Hypothesis typing at random.
"""

from __future__ import annotations

import itertools
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from bot.billing import generate_month
from bot.periods import Period
from db.models import Bill, BillAction, Customer, LinkAttempt, Role, Usage, User
from handlers.commands import SUBCOMMANDS
from sandbox.app_requests import slash_command_body
from sandbox.slack import MAX_MESSAGE_BLOCKS, MAX_TEXT_LENGTH
from tests.factories import add_customer
from tests.slack_helpers import texts, wait_until

FINANCE = "UFIONA01"
MONTH = Period(2025, 10)
SECTION_TEXT_MAX = 3000
# What a person could type to make Slack notify a channel, mention someone or show a link.
CONTROL = ["<!channel", "<!here", "<!everyone", "<@UEVIL", "<#CEVIL", "<!subteam", "<https://evil"]


@pytest.fixture
def finance(slack):
    """Finance, linked, with one customer and its DRAFT bill for MONTH."""
    fiona = slack.user("fiona", Role.FINANCE, FINANCE)
    with slack.db() as session:
        add_customer(session, "Acme Corp", start=date(2024, 1, 1), usage={(MONTH.year, MONTH.month): 5000})
    with slack.db() as session:
        generate_month(session=session, period=MONTH, actor=fiona, today=date(2025, 11, 5))
    return slack


def state(slack) -> tuple:
    """Everything a command could change, apart from where bills' messages are in Slack."""
    with slack.db() as session:
        bills = [(b.id, b.status, b.overage_unit_cost, b.overage_amount) for b in session.scalars(select(Bill))]
        counts = [session.scalar(select(func.count()).select_from(model)) for model in (BillAction, Usage, LinkAttempt)]
        customers = sorted(session.scalars(select(Customer.name)))
        links = sorted((user.name, user.slack_user_id) for user in session.scalars(select(User)))
    return bills, counts, customers, links


def problems_with(answer: dict) -> list[str]:
    """What is wrong with an answer as Slack would take it: too long, too many blocks, a control sequence."""
    found = []
    if len(answer.get("text") or "") > MAX_TEXT_LENGTH:
        found.append(f"text of {len(answer['text'])} characters")
    blocks = answer.get("blocks") or []
    if len(blocks) > MAX_MESSAGE_BLOCKS:
        found.append(f"{len(blocks)} blocks")
    if any(len(texts(block)) > SECTION_TEXT_MAX for block in blocks):
        found.append("a block's text over 3,000 characters")
    shown = texts(answer)
    found += [f"unescaped {control}" for control in CONTROL if control in shown]
    if shown.startswith(":x:"):
        found.append("an unexpected error")
    return found


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("customer payloadco", "There is no customer named “payloadco”"),  # Bolt alone would read no body at all
        ("customer Ac\x00me", "Your command contains a NUL character (\\0), which cannot be stored"),
        ("undo 1 because\x00", "Your command contains a NUL character (\\0), which cannot be stored"),
        ("show ²", "`²` is not a bill number."),
        ("show ١٢", "`١٢` is not a bill number."),
        ("show " + "9" * 5000, "`" + "9" * 39 + "…` is not a bill number."),
        ("show " + "0" * 5000 + "1", "is not a bill number."),
        ("show 3000000000", "`3000000000` is not a bill number."),  # bill ids are 32-bit integers
        ("edit 1 " + "9" * 5000, "The unit cost '" + "9" * 39 + "…' is too large"),
        ("edit 1 ³", "must be a decimal number such as 0.0125, not '³'"),
        ("generate " + "2" * 5000 + "-10", "is not a month; write it as YYYY-MM"),
        ("list ²⁰²⁵-¹⁰", "is neither a status"),
        ("usage Acme Corp ²⁰²⁶", "There is no customer named “Acme Corp ²⁰²⁶”"),
        ("show <!channel>", "`&lt;!channel&gt;` is not a bill number."),
        ("customer <!here> & co", "There is no customer named “&lt;!here&gt; &amp; co”."),
        ("export <!everyone>", "'&lt;!everyone&gt;' is not a month"),
        ("show 1 <@UEVIL0001>", "does not take `&lt;@UEVIL0001&gt;`"),
        ("customer " + "x" * 50_000, "There is no customer with a name that long"),
        ("whoami " + "y" * 50_000, "does not take `" + "y" * 39 + "…`"),
    ],
)
def test_hostile_input_gets_a_specific_bounded_escaped_refusal(finance, typed, expected):
    before = state(finance)
    answer = finance.ask(FINANCE, typed)

    assert texts(answer).startswith(":warning:") and expected in texts(answer)
    assert problems_with(answer) == [] and len(answer["text"]) < 1000
    assert state(finance) == before


# --- typed at random ---------------------------------------------------------------------------------------------

HOSTILE = [
    "<!channel>", "<!here>", "<!everyone>", "<@UEVIL0001>", "<#CEVIL0001>", "<!subteam^SEVIL0001>",
    "<https://evil.example|here>", "&", "&amp;", "\x00", "²", "١٢", "0" * 5000, "9" * 5000, "1" * 4301, "x" * 50_000,
    "#1", "1", "2", "2025-10", "2025-13", "0.5", "0.0000001", "-1", "1e5", "NaN", "Infinity", "draft", "FINAL",
    "\u202e", "“Acme”", "'", '"', "`", "*bold*", "\n", "\t",
]
FIRST_WORDS = [name for name in SUBCOMMANDS if name != "unlink"]  # unlinking would make every later answer the same
WORDS = st.sampled_from(HOSTILE) | st.text(max_size=12) | st.from_regex(r"[0-9]{1,25}", fullmatch=True)
TYPED = st.builds(
    lambda first, rest: " ".join([first, *rest]),
    st.sampled_from(FIRST_WORDS) | st.text(max_size=8),
    st.lists(WORDS, max_size=3),
).filter(lambda text: (text.split() or [""])[0].lower() != "unlink")
ASKED = itertools.count()


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(typed=TYPED, escaped_by_slack=st.booleans())
def test_anything_typed_gets_an_answer_that_is_bounded_escaped_and_changes_nothing_when_refused(
    finance, typed, escaped_by_slack
):
    if escaped_by_slack:  # as Slack sends what a person typed; without it, as Slack sends an @-mention picked
        typed = typed.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    key = f"asked{next(ASKED)}"
    before = state(finance)

    body = slash_command_body(typed, FINANCE, response_url=finance.fake.response_url(key))
    assert finance.sender.post(body).status == 200
    answer = wait_until(lambda: finance.fake.response_url_posts(key), 1, f"an answer to {typed[:80]!r}")[0]

    assert problems_with(answer) == []
    if texts(answer).startswith(":warning:"):
        assert state(finance) == before
