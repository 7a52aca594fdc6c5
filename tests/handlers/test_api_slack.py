"""The API and Slack served together, as `serve` serves them: a change made through the API reaches Slack
as a click's does, and an account deactivated by an operator can no longer act from Slack."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import date

from sqlalchemy import select

from bot import accounts
from bot.billing import generate_month
from bot.periods import Period
from db.models import Bill, BillStatus, Role, User
from tests.factories import add_customer
from tests.handlers.api_support import OPERATOR_TOKEN, PASSWORD
from tests.slack_helpers import texts, wait_until

PERIOD = Period(2026, 10)
TODAY = date(2026, 11, 3)
SALES, CSM = "USAM0001", "UCAROL01"


def call(slack, method: str, path: str, token: str | None = None, body: dict | None = None) -> tuple[int, dict]:
    """An HTTP request to the server's API, as a script sends it."""
    request = urllib.request.Request(
        slack.base_url + path, method=method, data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as refusal:
        return refusal.code, json.loads(refusal.read())


def people_and_a_posted_bill(slack) -> int:
    fiona = slack.user("fiona", Role.FINANCE, "UFIONA01")
    for name, role, slack_user_id in (("carol", Role.CUSTOMER_SUCCESS, CSM), ("sam", Role.SALES, SALES)):
        slack.user(name, role, slack_user_id)
    with slack.db() as session:
        for name in ("fiona", "carol", "sam"):
            accounts.reset_password(session=session, account=name, password=PASSWORD, rounds=4)
    with slack.db() as session:
        add_customer(session, "Hooli", usage={(PERIOD.year, PERIOD.month): 3_000})
    with slack.db() as session:
        generate_month(session=session, period=PERIOD, actor=fiona, today=TODAY)
    slack.settle()
    with slack.db() as session:
        return session.scalar(select(Bill.id))


def login(slack, name: str) -> str:
    status, body = call(slack, "POST", "/api/session", body={"name": name, "password": PASSWORD})
    assert status == 201, body
    return body["token"]


def test_an_approval_through_the_api_updates_the_bill_message_and_its_thread(slack):
    bill_id = people_and_a_posted_bill(slack)

    status, body = call(slack, "PATCH", f"/api/bills/{bill_id}/approve", login(slack, "sam"))

    assert status == 200 and body["status"] == "FINAL"
    slack.settle()
    with slack.db() as session:
        bill = session.get(Bill, bill_id)
    message = slack.fake.message(bill.slack_channel, bill.slack_ts)
    assert "FINAL" in texts(message)
    [reply] = slack.fake.thread_replies(bill.slack_channel, bill.slack_ts)
    assert f"<@{SALES}> approved bill #{bill_id}" in texts(reply)


def test_the_health_check_and_slack_still_answer_beside_the_api(slack):
    people_and_a_posted_bill(slack)

    assert call(slack, "GET", "/api/bills")[0] == 401
    with urllib.request.urlopen(slack.base_url + "/healthz", timeout=10) as health:
        assert health.status == 200
    assert "sam" in texts(slack.ask(SALES, "whoami"))


def test_a_deactivated_account_cannot_act_from_slack(slack):
    bill_id = people_and_a_posted_bill(slack)
    with slack.db() as session:
        sam = session.scalar(select(User).where(User.name == "sam"))

    status, body = call(slack, "PATCH", f"/api/users/{sam.id}", OPERATOR_TOKEN, {"active": False})

    assert status == 200 and body == {**body, "active": False, "slack_linked": False}
    assert "not linked" in texts(slack.ask(SALES, "whoami"))
    slack.fake.wait_for("views.publish")  # their Home now shows how to link, not their bills
    wait_until(lambda: [view for view in [slack.fake.home_view(SALES)] if view and "link" in texts(view)], 1,
               "sam's Home to show how to link")
    code_refused = slack.ask(SALES, "link ABCDEF-GHJKMN-PQRSTU")
    assert "That code is not valid" in texts(code_refused)
    with slack.db() as session:
        assert session.get(Bill, bill_id).status is BillStatus.DRAFT
        assert [action.stakeholder_id for action in session.get(Bill, bill_id).actions] == [
            session.scalar(select(User.id).where(User.name == "fiona"))]
