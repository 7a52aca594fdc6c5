"""App Home as Slack opens it: signed `app_home_opened` events, the published view read back from "Slack"."""

from __future__ import annotations

import time
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from bot import workflow
from bot.billing import generate_month
from bot.bills import get_bill
from bot.periods import Period
from bot.slack_ids import ActionId, bill_value, parse_bill_value
from db.models import Bill, BillStatus, Customer, Role, utcnow
from sandbox.app_requests import app_home_opened_event, event_body
from tests.factories import add_customer
from tests.slack_helpers import texts, wait_until

PERIOD = Period(2026, 10)
FINANCE, CSM, SALES, STRANGER = "UFIONA01", "UCAROL01", "USAM0001", "UNOBODY1"




def buttons(view: dict) -> list[tuple[str, str, str]]:
    """(label, action_id, value) of every button on the view."""
    found = []
    for block in view["blocks"]:
        elements = block.get("elements", []) if block["type"] == "actions" else [block.get("accessory") or {}]
        found += [(e["text"]["text"], e["action_id"], e["value"]) for e in elements if e.get("type") == "button"]
    return found


def shown_value(slack, bill_id: int) -> str:
    """A button's value for the bill as it is now: the bill and its latest effective action."""
    with slack.db() as session:
        return bill_value(bill_id, workflow.latest_change(get_bill(session=session, bill_id=bill_id)).id)


def bill_ids(view: dict) -> set[int]:
    """The bills the view has buttons for."""
    return {parse_bill_value(value)[0] for _, _, value in buttons(view)}


def open_home(slack, slack_user_id: str) -> dict:
    """Open the Home tab as `slack_user_id` and return the view the app published for them."""
    slack.settle()  # a refresh queued by an earlier change is published first, not taken for this one
    before = len([c for c in slack.fake.calls("views.publish") if c["user_id"] == slack_user_id])
    response = slack.open_home(slack_user_id)
    assert response.status == 200, response
    deadline = time.monotonic() + 5
    while len(published := [c for c in slack.fake.calls("views.publish") if c["user_id"] == slack_user_id]) <= before:
        assert time.monotonic() < deadline, f"no views.publish for {slack_user_id}: {slack.fake.methods_called()}"
        time.sleep(0.02)
    view = slack.fake.home_view(slack_user_id)
    assert view == {**view, **published[-1]["view"]}
    return view


@pytest.fixture
def team(slack):
    return {
        "fiona": slack.user("fiona", Role.FINANCE, FINANCE),
        "carol": slack.user("carol", Role.CUSTOMER_SUCCESS, CSM),
        "sam": slack.user("sam", Role.SALES, SALES),
    }


@pytest.fixture
def bills(slack, team) -> dict[str, int]:
    """October's bills: Acme one-step (DRAFT), Beta two-step with CSM carol (DRAFT), Delta approved (FINAL)."""
    with slack.db() as session:
        for name, csm_then_sales in [("Acme", False), ("Beta", True), ("Delta", False)]:
            add_customer(
                session, name, require_csm_approval=csm_then_sales, csm=team["carol"] if csm_then_sales else None,
                usage={(PERIOD.year, PERIOD.month): 1500},
            )
    with slack.db() as session:
        generate_month(session=session, period=PERIOD, actor=team["fiona"], today=date(2026, 11, 2))
    with slack.db() as session:
        ids = dict(session.execute(select(Customer.name, Bill.id).join(Bill.customer)).all())
    with slack.db() as session:
        workflow.approve(session=session, bill_id=ids["Delta"], actor=team["sam"])
    return ids


def test_finance_sees_the_month_by_status_and_send_buttons(slack, bills):
    view = open_home(slack, FINANCE)

    assert view["type"] == "home"
    assert "Bills for October 2026" in texts(view)
    assert "*DRAFT* — waiting for approval\n2 bills · $10.00" in texts(view)
    assert "*FINAL* — approved, to be sent\n1 bill · $5.00" in texts(view)
    assert buttons(view) == [("Send", ActionId.SEND.value, shown_value(slack, bills["Delta"]))]


def test_the_csm_sees_the_bills_waiting_for_them_with_approve_and_reject(slack, bills):
    view = open_home(slack, CSM)

    assert "Waiting for you: 2 bills" in texts(view)
    assert buttons(view) == [
        (label, action.value, shown_value(slack, bill_id))
        for bill_id in sorted([bills["Acme"], bills["Beta"]])  # oldest first
        for label, action in (("Approve", ActionId.APPROVE), ("Reject", ActionId.REJECT))
    ]


def test_sales_sees_a_csm_then_sales_bill_only_after_the_csm(slack, team, bills):
    before = open_home(slack, SALES)
    with slack.db() as session:
        workflow.approve(session=session, bill_id=bills["Beta"], actor=team["carol"])
    after = open_home(slack, SALES)

    assert [value for _, _, value in buttons(before)] == [shown_value(slack, bills["Acme"])] * 2
    assert [value for _, _, value in buttons(after)] == [
        shown_value(slack, bill_id) for bill_id in sorted([bills["Acme"], bills["Beta"]]) for _ in range(2)
    ]
    assert "step 1 approved by <@UCAROL01>" in texts(after)


def test_an_unlinked_user_sees_how_to_link(slack, bills):
    view = open_home(slack, STRANGER)

    assert "Welcome to BillProcess" in texts(view)
    assert "`/bill link CODE`" in texts(view) and "`billprocess users invite NAME`" in texts(view)
    assert buttons(view) == []


def test_a_user_whose_slack_email_matches_an_account_is_linked_on_opening_home(make_slack):
    slack = make_slack(link_by_email=True)
    slack.user("fiona", Role.FINANCE, email="fiona@example.com")
    slack.fake.add_user(FINANCE, email="fiona@example.com")

    view = open_home(slack, FINANCE)

    assert "You are *fiona* (Finance)" in texts(view)


def test_opening_the_messages_tab_publishes_nothing(slack, team):
    response = slack.sender.post(event_body(app_home_opened_event(FINANCE, tab="messages")))
    open_home(slack, SALES)
    slack.finish()  # a wrong publish of the first event would have arrived by now

    assert response.status == 200
    assert [call["user_id"] for call in slack.fake.calls("views.publish")] == [SALES]


def test_approving_from_home_refreshes_it_without_the_bill(slack, bills):
    view = open_home(slack, SALES)

    response = slack.click(SALES, ActionId.APPROVE.value, shown_value(slack, bills["Acme"]), view=view)
    assert response.status == 200
    deadline = time.monotonic() + 5
    while bills["Acme"] in bill_ids(slack.fake.home_view(SALES)):
        assert time.monotonic() < deadline, "the Home still offers the approved bill"
        time.sleep(0.02)

    with slack.db() as session:
        assert session.get(Bill, bills["Acme"]).status is BillStatus.FINAL
    assert "No bills are waiting for your approval." in texts(slack.fake.home_view(SALES))


def test_a_refused_click_in_home_tells_the_clicker_why_and_refreshes_their_home(slack, team, bills):
    view = open_home(slack, SALES)
    with slack.db() as session:  # carol gets there first; Sam's Home still offers the bill
        workflow.approve(session=session, bill_id=bills["Acme"], actor=team["carol"])
    slack.settle()  # carol's approval republished everyone's Home
    [(_, _, value)] = [button for button in buttons(view) if button[0] == "Approve"]
    published = len(slack.fake.calls("views.publish"))

    response = slack.click(SALES, ActionId.APPROVE.value, value, view=view)

    assert response.status == 200
    [dm] = wait_until(
        lambda: [call for call in slack.fake.calls("chat.postMessage") if call["channel"] == SALES], 1, "a DM to Sam"
    )
    assert dm["text"].startswith(f":warning: Bill #{bills['Acme']} was already approved by <@{CSM}> at ")
    refreshed = slack.fake.wait_for("views.publish", published + 1)[published:]
    assert [call["user_id"] for call in refreshed] == [SALES]
    home = slack.fake.home_view(SALES)
    assert bill_ids(home) == set() and "No bills are waiting for your approval." in texts(home)
    with slack.db() as session:
        assert [action.action.value for action in get_bill(session=session, bill_id=bills["Acme"]).actions] == [
            "DRAFT", "APPROVE"
        ]


def test_finance_marks_an_uncertain_send_as_sent_from_home_without_an_email(slack, team, bills):
    with slack.db() as session, session.begin():  # a send whose process died while the mail server had the email
        delta = session.get(Bill, bills["Delta"])
        delta.sending_started_at, delta.sending_by_id = utcnow() - timedelta(minutes=10), team["fiona"].id
    view = open_home(slack, FINANCE)
    assert [label for label, _, _ in buttons(view)] == ["Send again", "Mark as sent"]
    [(_, action_id, value)] = [button for button in buttons(view) if button[0] == "Mark as sent"]

    response = slack.click(FINANCE, action_id, value, view=view)

    assert response.status == 200
    slack.settle()
    home = slack.fake.home_view(FINANCE)
    assert buttons(home) == [] and "Sending not confirmed" not in texts(home)
    assert "*SENT* — sent to the customer\n1 bill · $5.00" in texts(home)
    with slack.db() as session:
        bill = get_bill(session=session, bill_id=bills["Delta"])
        assert bill.status is BillStatus.SENT and bill.sending_started_at is None
        assert "confirmed delivered to billing@delta.example without emailing it again" in bill.actions[-1].comment
    assert not list(slack.settings.mail_dir.rglob("*.eml"))
    assert [call for call in slack.fake.calls("chat.postMessage") if call["channel"] == FINANCE] == []  # no refusal
