"""`/bill` as Slack sends it: signed slash commands to the real server, answers read back from "Slack"."""

from __future__ import annotations

import json
import threading
import time
from datetime import date, timedelta
from zoneinfo import ZoneInfo
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from bot import accounts, workflow
from bot.billing import generate_month
from bot.periods import Period
from db.models import Bill, BillStatus, Customer, Role, User, utcnow
from sandbox.app_requests import slash_command_body
from sandbox.slack import CHANNEL_ID
from tests.factories import add_customer
from tests.slack_helpers import displayed, texts

PERIOD = Period.previous(ZoneInfo("UTC"))  # what `/bill generate` bills by default
START = date(2020, 1, 1)

FINANCE, CSM, SALES, STRANGER = "UFIONA01", "UCAROL01", "USAM0001", "UNOBODY1"


# --- helpers -----------------------------------------------------------------------------------------








def team(slack) -> dict[str, User]:
    return {
        "fiona": slack.user("fiona", Role.FINANCE, FINANCE, email="fiona@example.com"),
        "carol": slack.user("carol", Role.CUSTOMER_SUCCESS, CSM),
        "sam": slack.user("sam", Role.SALES, SALES),
    }


def customers(slack, count: int = 2, period: Period = PERIOD) -> None:
    """`count` customers, each 500 calls over its limit in `period` (5.00 at 0.01 a call)."""
    with slack.db() as session:
        for number in range(1, count + 1):
            add_customer(session, f"Customer {number}", start=START, usage={(period.year, period.month): 1500})


def bills(slack) -> list[Bill]:
    with slack.db() as session:
        return list(session.scalars(select(Bill).order_by(Bill.id)))


def bill_posts(slack) -> list[dict]:
    """The bill messages posted to the bills channel (not thread replies, not the month's summary)."""
    return [
        c for c in slack.fake.calls("chat.postMessage")
        if c["channel"] == CHANNEL_ID and not c.get("thread_ts") and "bill_id" in c["metadata"]["event_payload"]
    ]


def summary_message(slack) -> dict:
    """The month's generation summary in the bills channel, as it stands now."""
    [post] = [c for c in slack.fake.calls("chat.postMessage")
              if c["channel"] == CHANNEL_ID and "bill_id" not in c["metadata"]["event_payload"]]
    updates = [c for c in slack.fake.calls("chat.update") if "bills created" in c["text"]]
    return (updates or [post])[-1]


def thread_replies(slack, bill: Bill, count: int = 1) -> list[dict]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        found = [c for c in slack.fake.calls("chat.postMessage") if c.get("thread_ts") == bill.slack_ts]
        if len(found) >= count:
            return found
        time.sleep(0.02)
    raise AssertionError(f"no thread reply for bill #{bill.id}; calls: {slack.fake.methods_called()}")


def generated(slack) -> list[Bill]:
    """Generate PERIOD through `/bill generate`; returns the bills once all are posted and it said so."""
    slack.ask(FINANCE, "generate")
    slack.settle()
    made = bills(slack)
    assert made and all(bill.slack_ts for bill in made)
    return made


def linked_to(slack, slack_user_id: str) -> str | None:
    with slack.db() as session:
        return session.scalar(select(User.name).where(User.slack_user_id == slack_user_id))


def invite(slack, name: str, *, email: str | None = None, now=None) -> str:
    """An account made as an operator makes it, and a one-time code for it."""
    with slack.db() as session:
        accounts.add_user(session=session, name=name, role=Role.SALES, password="correct horse", email=email,
                          rounds=4)
    with slack.db() as session:
        return accounts.invite(session=session, name=name, rounds=4, now=now).code


# --- linking -----------------------------------------------------------------------------------------


def test_a_code_links_once_and_whoami_shows_the_account(slack):
    code = invite(slack, "dana", email="dana@example.com")

    answer = slack.ask("UDANA001", f"link {code}")
    assert "You are now linked to *dana* (Sales)" in texts(answer)
    assert answer["response_type"] == "ephemeral"
    assert linked_to(slack, "UDANA001") == "dana"
    slack.fake.wait_for("views.publish")
    assert slack.fake.home_view("UDANA001") is not None  # the App Home is no longer the "link first" one

    whoami = texts(slack.ask("UDANA001", "whoami"))
    assert "dana" in whoami and "Sales" in whoami and "dana@example.com" in whoami

    again = texts(slack.ask("UOTHER01", f"link {code}"))
    assert "That code is not valid" in again
    assert linked_to(slack, "UOTHER01") is None
    everything = repr(slack.fake.recorded())
    assert code not in everything and code.replace("-", "") not in everything


def test_an_expired_code_is_refused(slack):
    code = invite(slack, "dana", now=utcnow() - timedelta(hours=24, minutes=1))
    assert "That code is not valid" in texts(slack.ask("UDANA001", f"link {code}"))
    assert linked_to(slack, "UDANA001") is None


def test_five_wrong_codes_lock_the_slack_user_out_even_for_the_right_one(slack):
    code = invite(slack, "dana")
    for attempt in range(5):
        assert "That code is not valid" in texts(slack.ask("UDANA001", f"link ABCDEF-GHJKMN-PQRST{attempt + 2}"))
    answer = texts(slack.ask("UDANA001", f"link {code}"))
    assert "Too many wrong codes" in answer
    assert code not in answer
    assert linked_to(slack, "UDANA001") is None


def test_link_by_email_links_on_first_use(make_slack):
    slack = make_slack(link_by_email=True)
    invite(slack, "dana", email="Dana@Example.com")
    slack.fake.add_user("UDANA001", name="dana", email="dana@example.com")

    assert "dana" in texts(slack.ask("UDANA001", "whoami"))
    assert linked_to(slack, "UDANA001") == "dana"


def test_without_link_by_email_nobody_is_linked_by_email(slack):
    invite(slack, "dana", email="dana@example.com")
    slack.fake.add_user("UDANA001", name="dana", email="dana@example.com")

    answer = texts(slack.ask("UDANA001", "whoami"))
    assert "not linked" in answer and "/bill link CODE" in answer
    assert linked_to(slack, "UDANA001") is None


def test_unlink(slack):
    team(slack)
    assert "no longer linked to *sam*" in texts(slack.ask(SALES, "unlink"))
    assert linked_to(slack, SALES) is None
    slack.fake.wait_for("views.publish")
    assert "not linked" in texts(slack.ask(SALES, "list"))


# --- help --------------------------------------------------------------------------------------------


def test_help_is_specific_to_the_role(slack):
    team(slack)
    finance = texts(slack.ask(FINANCE, "help"))
    sales = texts(slack.ask(SALES, ""))  # `/bill` alone is help
    for subcommand in ("/bill generate", "/bill edit", "/bill send", "/bill export"):
        assert subcommand in finance
        assert subcommand not in sales
    for subcommand in ("/bill list", "/bill show", "/bill undo", "/bill customer ", "/bill whoami"):
        assert subcommand in finance and subcommand in sales
    assert "/bill link" not in sales


def test_help_tells_an_unlinked_user_how_to_link_and_nothing_else(slack):
    answer = texts(slack.ask(STRANGER, "help"))
    assert "not linked" in answer and "billprocess users invite" in answer
    assert "`/bill link CODE`" in answer
    for subcommand in ("/bill list", "/bill generate", "/bill whoami", "/bill show"):
        assert subcommand not in answer


# --- generate ----------------------------------------------------------------------------------------


def test_generate_as_finance_tells_the_caller_the_summary_and_posts_every_bill(slack):
    team(slack)
    customers(slack, 3)

    answer = slack.ask(FINANCE, "generate")
    assert answer["response_type"] == "ephemeral"  # the bills themselves are what the channel sees
    assert f"{PERIOD.label}: 3 bills created, total $15.00" in texts(answer)

    assert f"The bills are being posted to <#{CHANNEL_ID}>" in texts(answer)

    slack.settle()
    assert [post["channel"] for post in bill_posts(slack)] == [CHANNEL_ID] * 3
    assert all(bill.status is BillStatus.DRAFT for bill in bills(slack))
    summary = summary_message(slack)["text"]  # the channel sees the month's summary, then the bills
    assert f"{PERIOD.label}: 3 bills created, total $15.00" in summary and "All 3 bills are posted" in summary
    assert all(reply["response_type"] == "ephemeral" for reply in slack.responses(FINANCE))

    again = slack.ask(FINANCE, f"generate {PERIOD}")
    assert again["response_type"] == "ephemeral"
    assert "0 bills created" in texts(again) and "already billed 3" in texts(again)
    slack.settle()
    assert len(bill_posts(slack)) == 3


def test_generate_without_a_bills_channel_never_names_none(make_slack):
    slack = make_slack(bills_channel=None)
    team(slack)
    customers(slack, 1)

    answer = texts(slack.ask(FINANCE, "generate"))

    assert "The bills are being posted to the bills channel" in answer and "None" not in answer


def test_generate_as_sales_is_refused(slack):
    team(slack)
    customers(slack)
    answer = texts(slack.ask(SALES, "generate"))
    assert "Only Finance can generate bills" in answer
    assert bills(slack) == []
    assert slack.fake.calls("chat.postMessage") == []


def test_a_month_that_has_not_ended_is_refused(slack):
    team(slack)
    this_month = PERIOD.shifted(1)
    customers(slack, period=this_month)
    answer = texts(slack.ask(FINANCE, f"generate {this_month}"))
    assert f"{this_month.label} has not ended yet" in answer
    assert bills(slack) == []


def test_the_ack_comes_back_at_once_while_the_bills_are_posted(slack):
    team(slack)
    customers(slack, 6)
    slack.fake.delay("chat.postMessage", 0.5)

    started = time.monotonic()
    response = slack.command(FINANCE, "generate")
    acked = time.monotonic() - started

    assert response.status == 200
    assert acked < 1.0  # posting six bills takes 3 s or more
    assert len(bill_posts(slack)) < 6
    slack.settle(timeout=20)
    shown = [c["text"] for c in slack.fake.calls("chat.postMessage") + slack.fake.calls("chat.update")
             if "bills created" in c["text"]]
    assert "Posted 0 of 6 bills…" in shown[0]  # posted before the bills, then updated as they go out
    assert len(bill_posts(slack)) == 6
    assert "All 6 bills are posted" in summary_message(slack)["text"]


def test_slow_work_after_acknowledgements_never_delays_a_further_acknowledgement(slack):
    """Listener bodies waiting on Slack hold their threads; there are enough that acks still come at once."""
    team(slack)
    slow = 10  # more than Bolt's default pool of 5 listener threads
    slack.fake.delay("response_url", 3.5)  # every answer is held, so each listener stays busy
    senders = [threading.Thread(target=slack.command, args=(SALES, "help")) for _ in range(slow)]
    for sender in senders:
        sender.start()
    slack.replies(SALES, slow, timeout=3)  # all of them are in flight, each waiting on its answer

    started = time.monotonic()
    response = slack.command(FINANCE, "whoami")
    acked = time.monotonic() - started

    assert response.status == 200
    assert acked < 3.0  # Slack's limit
    for sender in senders:
        sender.join(timeout=5)
    slack.replies(FINANCE, 1)
    slack.fake.delay("response_url", 0)
    for sender in senders:
        sender.join(timeout=5)


# --- list and show -----------------------------------------------------------------------------------


def some_bills(slack, people) -> list[int]:
    """Two DRAFT bills of October 2025 and one of PERIOD, made as the command line makes them."""
    with slack.db() as session:
        add_customer(session, "Acme", start=START, usage={(2025, 10): 1500, (PERIOD.year, PERIOD.month): 2000})
        add_customer(session, "Globex", start=START, usage={(2025, 10): 3000})
    for period in (Period(2025, 10), PERIOD):
        with slack.db() as session:
            generate_month(session=session, period=period, actor=people["fiona"], today=date.today())
    # One INSERT ... SELECT makes a month's bills, so their ids follow no particular customer order.
    with slack.db() as session:
        made = session.scalars(select(Bill).join(Customer).order_by(Bill.year, Bill.month, Customer.name))
        return [bill.id for bill in made]


def test_list_filters_by_status_and_month_in_either_order(slack):
    people = team(slack)
    acme_october, globex_october, acme_latest = some_bills(slack, people)
    with slack.db() as session:
        workflow.approve(session=session, bill_id=globex_october, actor=people["sam"])

    everything = texts(slack.ask(SALES, "list"))
    assert all(f"`#{number}`" in everything for number in (acme_october, globex_october, acme_latest))
    assert "3 bills, total $35.00 (2 DRAFT, 1 FINAL)" in everything

    for text in ("list draft 2025-10", "list 2025-10 DRAFT"):
        answer = slack.ask(SALES, text)
        assert answer["response_type"] == "ephemeral"
        assert "Bills: October 2025, DRAFT" in texts(answer)
        assert f"`#{acme_october}`" in texts(answer)
        assert f"`#{globex_october}`" not in texts(answer) and f"`#{acme_latest}`" not in texts(answer)

    assert "No bills match." in texts(slack.ask(SALES, "list SENT"))


def test_a_long_list_stays_within_one_message(slack):
    people = team(slack)
    with slack.db() as session:
        for number in range(130):
            add_customer(session, f"Customer {number:03d}", start=START, usage={(2025, 10): 1500})
    with slack.db() as session:
        generate_month(session=session, period=Period(2025, 10), actor=people["fiona"], today=date.today())

    answer = slack.ask(FINANCE, "list")
    assert len(answer["blocks"]) <= 50
    assert "…and 30 more, narrow with a month or status" in texts(answer)


def test_show_gives_the_details_and_the_whole_history(slack):
    people = team(slack)
    bill_id = some_bills(slack, people)[1]
    with slack.db() as session:
        workflow.reject(session=session, bill_id=bill_id, actor=people["sam"], reason="customer churned")

    answer = slack.ask(CSM, f"show #{bill_id}")
    text = texts(answer)
    assert answer["response_type"] == "ephemeral"
    assert f"Bill #{bill_id}: Globex, October 2025" in text
    assert "*Status*\nWRITEOFF" in text and "*Amount*\n$20.00" in text
    history = text[text.index("*History*"):]
    assert history.index("DRAFT") < history.index("REJECT") < history.index("customer churned")
    assert "fiona" in history and "sam" in history


# --- edit, send and undo -----------------------------------------------------------------------------


def test_edit_from_the_command_changes_the_bill_and_tells_its_thread(slack):
    team(slack)
    customers(slack, 1)
    bill = generated(slack)[0]

    answer = texts(slack.ask(FINANCE, f"edit {bill.id} 0.02"))
    assert f"Bill #{bill.id}" in answer and "unit cost now $0.02, amount $10.00" in answer

    edited = bills(slack)[0]
    assert (edited.status, edited.overage_amount) == (BillStatus.DRAFT, Decimal("10.00"))
    slack.settle()
    update = [call for call in slack.fake.calls("chat.update") if call["ts"] == bill.slack_ts][-1]
    assert update["channel"] == bill.slack_channel
    assert "10.00" in json.dumps(update["blocks"])
    assert "edited" in thread_replies(slack, bill)[-1]["text"]


def test_send_from_the_command_emails_the_bill(slack):
    people = team(slack)
    customers(slack, 1)
    bill = generated(slack)[0]
    with slack.db() as session:
        workflow.approve(session=session, bill_id=bill.id, actor=people["sam"])

    answer = texts(slack.ask(FINANCE, f"send {bill.id}"))
    assert f"Bill #{bill.id} was sent to billing@customer-1.example" in answer

    assert bills(slack)[0].status is BillStatus.SENT
    assert list(slack.settings.mail_dir.rglob("*.eml"))
    slack.settle()
    assert "sent" in thread_replies(slack, bill, 2)[-1]["text"]  # after the approval's reply


def test_a_send_that_was_not_confirmed_is_shown_and_only_sent_again_with_again(slack):
    people = team(slack)
    customers(slack, 1)
    with slack.db() as session:
        generate_month(session=session, period=PERIOD, actor=people["fiona"], today=utcnow().date())
    [bill] = bills(slack)
    with slack.db() as session:
        workflow.approve(session=session, bill_id=bill.id, actor=people["sam"])
    with slack.db() as session, session.begin():  # a send whose process died while the mail server had the email
        session.get(Bill, bill.id).sending_started_at = utcnow() - timedelta(minutes=10)
        session.get(Bill, bill.id).sending_by_id = people["fiona"].id

    shown = texts(slack.ask(FINANCE, f"show {bill.id}"))
    assert f":warning: Sending of bill #{bill.id} is uncertain: fiona started emailing it at " in shown

    refused = texts(slack.ask(FINANCE, f"send {bill.id}"))
    assert "The customer may have received it" in refused and f"`/bill send {bill.id} again`" in refused
    assert "does not take `twice`" in texts(slack.ask(FINANCE, f"send {bill.id} twice"))
    assert not list(slack.settings.mail_dir.rglob("*.eml"))

    answer = texts(slack.ask(FINANCE, f"send {bill.id} again"))
    assert f"Bill #{bill.id} was sent to billing@customer-1.example" in answer
    assert len(list(slack.settings.mail_dir.rglob("*.eml"))) == 1
    assert bills(slack)[0].status is BillStatus.SENT


def test_send_delivered_records_a_send_that_was_not_confirmed_as_sent_without_an_email(slack):
    people = team(slack)
    customers(slack, 1)
    [bill] = generated(slack)
    with slack.db() as session:
        workflow.approve(session=session, bill_id=bill.id, actor=people["sam"])

    refused = texts(slack.ask(FINANCE, f"send {bill.id} delivered"))
    assert f"Bill #{bill.id} has no interrupted send to confirm" in refused
    with slack.db() as session, session.begin():  # a send whose process died while the mail server had the email
        session.get(Bill, bill.id).sending_started_at = utcnow() - timedelta(minutes=10)
        session.get(Bill, bill.id).sending_by_id = people["fiona"].id
    assert f"`/bill send {bill.id} delivered`" in texts(slack.ask(FINANCE, f"show {bill.id}"))

    answer = texts(slack.ask(FINANCE, f"send {bill.id} Delivered"))

    assert f"Bill #{bill.id} is recorded as sent to billing@customer-1.example; no email was sent." in answer
    assert not list(slack.settings.mail_dir.rglob("*.eml"))
    [sent] = bills(slack)
    assert sent.status is BillStatus.SENT and sent.sending_started_at is None
    assert "confirmed delivered to billing@customer-1.example without emailing it again" in (
        thread_replies(slack, bill, 2)[-1]["text"]
    )
    again = texts(slack.ask(FINANCE, f"send {bill.id} delivered"))
    assert f"Bill #{bill.id} was already sent by <@{FINANCE}> at " in again


def test_undo_from_the_command_with_a_reason(slack):
    people = team(slack)
    customers(slack, 1)
    bill = generated(slack)[0]
    with slack.db() as session:
        workflow.approve(session=session, bill_id=bill.id, actor=people["sam"])

    answer = texts(slack.ask(SALES, f"undo {bill.id} approved the wrong bill"))
    assert f"Undid sam's approval of bill #{bill.id}; it is DRAFT now" in answer

    assert bills(slack)[0].status is BillStatus.DRAFT
    slack.settle()
    assert "approved the wrong bill" in thread_replies(slack, bill)[-1]["text"]


def test_a_refused_change_says_why_and_changes_nothing(slack):
    team(slack)
    customers(slack, 1)
    bill = generated(slack)[0]
    calls_before = len(slack.fake.recorded())

    assert "Only Finance can send bills" in texts(slack.ask(SALES, f"send {bill.id}"))
    assert "only a FINAL bill can be sent" in texts(slack.ask(FINANCE, f"send {bill.id}"))
    assert "has nothing to undo" in texts(slack.ask(FINANCE, f"undo {bill.id}"))
    assert bills(slack)[0].status is BillStatus.DRAFT
    slack.settle()
    # Nothing but the three answers reached Slack: no message update, no thread reply, no Home.
    assert [call.method for call in slack.fake.recorded()[calls_before:]] == ["response_url"] * 3


# --- wrong input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("frobnicate", "`frobnicate` is not a `/bill` subcommand. Usage: `/bill <subcommand>`"),
        ("show abc", "`abc` is not a bill number. Usage: `/bill show <id>`"),
        ("show", "`/bill show` needs a bill number. Usage: `/bill show <id>`"),
        ("show 1 2", "`/bill show` does not take `2`. Usage: `/bill show <id>`"),
        ("edit 1", "`/bill edit` needs the new unit cost. Usage: `/bill edit <id> <unit cost>`"),
        ("edit 1 abc", "The unit cost must be a decimal number such as 0.0125, not 'abc'. Usage: `/bill edit <id>"),
        ("edit 1 -1", "The unit cost cannot be negative. Usage: `/bill edit <id> <unit cost>`"),
        ("send x1", "`x1` is not a bill number. Usage: `/bill send <id> [again|delivered]`"),
        ("send 1 again delivered",
         "`/bill send` does not take `delivered`. Usage: `/bill send <id> [again|delivered]`"),
        ("undo", "`/bill undo` needs a bill number. Usage: `/bill undo <id> [reason]`"),
        ("generate 2025-13", "`2025-13` is not a month; write it as YYYY-MM"),
        ("generate 2025-10 now", "`/bill generate` does not take `now`. Usage: `/bill generate [YYYY-MM]`"),
        ("list nope", "`nope` is neither a status (DRAFT, FINAL, WRITEOFF, SENT) nor a month (YYYY-MM)."),
        ("list 2025-10 2025-11", "Give at most one month. Usage: `/bill list [status] [YYYY-MM]`"),
        ("list draft 2025-10 sent", "does not take `sent`. Usage: `/bill list [status] [YYYY-MM]`"),
        ("whoami please", "`/bill whoami` does not take `please`. Usage: `/bill whoami`"),
        ("link", "Usage: `/bill link CODE`"),
    ],
)
def test_wrong_input_gets_a_specific_message_and_the_usage_line(slack, text, expected):
    team(slack)
    answer = slack.ask(FINANCE, text)
    assert answer["response_type"] == "ephemeral"
    assert expected in displayed(answer)
    assert texts(answer).startswith(":warning:")


def test_an_unknown_subcommand_lists_what_the_caller_can_use(slack):
    team(slack)
    answer = texts(slack.ask(SALES, "aprove 12"))
    assert "`aprove` is not a `/bill` subcommand" in answer
    assert "list" in answer and "generate" not in answer


@pytest.mark.parametrize(
    "typed",
    ["ABCDEF-GHJKMN-PQRST2", "ABCDEFGHJKMNPQRST2", "abc123", "re-send", "approvethebill", "approve_all"],
)
def test_an_unknown_subcommand_that_could_be_a_link_code_is_never_repeated(slack, typed):
    """Only a short word of letters is named back: a code typed without `link` must not be shown again."""
    team(slack)
    answer = slack.ask(STRANGER, typed)
    assert answer["response_type"] == "ephemeral"
    assert displayed(answer).startswith(":warning: Unknown subcommand. Usage: `/bill <subcommand>`")
    assert typed.lower() not in json.dumps(answer).lower()
    assert typed.lower() not in json.dumps([call.params for call in slack.fake.recorded()]).lower()


def test_an_unlinked_user_is_told_how_to_link(slack):
    for text in ("list", "show 1", "generate"):
        assert "/bill link CODE" in texts(slack.ask(STRANGER, text))


# --- Slack's signature -------------------------------------------------------------------------------


@pytest.mark.parametrize("tampering", [{"forge": True}, {"stale": True}, {"unsigned": True}])
def test_a_request_not_signed_by_slack_now_is_refused_and_nothing_runs(slack, tampering):
    team(slack)
    customers(slack)
    body = slash_command_body("generate", FINANCE, response_url=slack.fake.response_url(FINANCE))

    response = slack.sender.post(body, **tampering)

    assert response.status == 401
    slack.finish()
    assert slack.responses(FINANCE) == []
    assert [method for method in slack.fake.methods_called() if method != "auth.test"] == []  # auth.test: start-up
    with slack.db() as session:
        assert session.scalar(select(func.count()).select_from(Bill)) == 0


def test_a_name_with_an_ampersand_arrives_as_slack_sends_it_and_is_found(slack):
    team(slack)
    with slack.db() as session:
        add_customer(session, "R&D Labs", start=START)
    answer = slack.ask(CSM, "customer R&amp;D Labs")  # Slack escapes &, < and > in command text
    assert "R&amp;D Labs" in texts(answer) and "no customer" not in texts(answer).lower()
