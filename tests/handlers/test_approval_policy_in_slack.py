"""The approval policy as people meet it in Slack: a three-step bill approved through its buttons, a bill
the policy approved by itself, and an approval given for someone who is away."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot import approval
from bot.approval import parse_policy
from bot.slack_ids import ActionId
from db.models import ActionType, BillStatus
from tests.handlers.test_bill_flow import CSM, FINANCE, OTHER_CS, SALES, Bills, assert_every_payload_valid
from tests.slack_helpers import texts

FINANCE_ABOVE_10K = {"thresholds": [{"at_least": "10000.00", "by": "finance"}], "auto_approve_below": "5.00"}


@pytest.fixture
def bills(slack):
    approval.use(parse_policy(FINANCE_ABOVE_10K))
    bills = Bills(slack)
    yield bills
    assert_every_payload_valid(slack.fake)


def test_a_three_step_bill_is_approved_by_the_csm_sales_and_finance_through_its_buttons(bills):
    # 2,000 calls over the limit at 5.00 a call: 10,000.00, which reaches Finance's threshold.
    bills.customer("Bigco", require_csm_approval=True, csm=bills.carol, unit_cost="5")
    bill_id = bills.generate_and_post()["Bigco"]
    message = texts(bills.message(bill_id))
    assert "*Approvals:* 3 steps, in order" in message
    assert f"1. :hourglass_flowing_sand: waiting for <@{CSM}> (Customer Success) — the customer's CSM" in message
    assert "2. :white_circle: then <@USAM0001> (Sales) — after the customer's CSM" in message
    assert "3. :white_circle: then <@UFIONA01> (Finance) — amount ≥ $10,000.00" in message

    bills.click(FINANCE, ActionId.APPROVE, bill_id)
    [refusal] = bills.told(FINANCE)
    assert f"Bill #{bill_id} is waiting for carol (the customer's CSM) to approve first" in refusal

    for number, person in enumerate((CSM, SALES, FINANCE), start=1):
        bills.click_button(person, bill_id, "Approve")
        [*_, reply] = bills.wait_thread(bill_id, number)
        assert f"<@{person}> approved bill #{bill_id} (step {number} of 3" in texts(reply)
    bills.settle()
    assert bills.bill(bill_id).status is BillStatus.FINAL
    assert bills.actions(bill_id) == [ActionType.DRAFT] + [ActionType.APPROVE] * 3
    message = texts(bills.message(bill_id))
    assert "3. :white_check_mark: approved by <@UFIONA01> (Finance)" in message
    assert "Ready to send" in message


def test_a_small_bill_is_approved_by_the_policy_and_its_thread_says_so(bills):
    bills.customer("Tiny", limit=2_999)  # one call over: 0.01
    bill_id = bills.generate_and_post()["Tiny"]
    assert bills.bill(bill_id).status is BillStatus.FINAL
    [reply] = bills.wait_thread(bill_id, 1)
    assert "the approval policy approved bill" in texts(reply)
    assert "approved automatically: below 5.00 (approval policy)" in texts(reply)
    message = texts(bills.message(bill_id))
    assert "*Approvals:* :white_check_mark: approved automatically: below 5.00" in message
    assert ["Send", "Undo approval"] == [label for label in _buttons(bills.message(bill_id))]

    bills.click_button(SALES, bill_id, "Undo approval")
    [refusal] = bills.told(SALES)
    assert "Only Finance can undo the approval of bill" in refusal and "by the approval policy" in refusal
    bills.click_button(FINANCE, bill_id, "Undo approval")
    bills.wait_thread(bill_id, 2)
    bills.settle()
    assert bills.bill(bill_id).status is BillStatus.DRAFT
    assert ["Approve", "Reject"] == _buttons(bills.message(bill_id))


def test_a_delegate_approves_for_an_absent_csm_and_the_message_says_so(bills):
    bills.customer("Beta", require_csm_approval=True, csm=bills.carol)
    bill_id = bills.generate_and_post()["Beta"]
    until = approval.today() + timedelta(days=12)

    # The command is not escaped: Slack sends the mention as typed.
    assert bills.slack.command(CSM, f"away until {until:%Y-%m-%d} @oscar").status == 200
    [answer] = wait_told(bills, CSM)
    assert f"You are away until {until:%Y-%m-%d}: oscar approves the steps that name you" in answer
    bills.settle()
    assert f"_carol is away until {until.day} {until:%b} — oscar approves for them_" in texts(bills.message(bill_id))

    bills.click_button(OTHER_CS, bill_id, "Approve")
    [reply] = bills.wait_thread(bill_id, 1)
    assert "for carol, who is away" in texts(reply)

    assert bills.slack.command(CSM, "back").status == 200
    wait_told(bills, CSM, 2)
    bills.click_button(SALES, bill_id, "Approve")
    bills.wait_thread(bill_id, 2)
    bills.settle()
    assert bills.bill(bill_id).status is BillStatus.FINAL


def wait_told(bills: Bills, slack_user_id: str, count: int = 1) -> list[str]:
    from tests.slack_helpers import wait_until

    posts = wait_until(lambda: bills.slack.responses(slack_user_id), count, f"an answer to {slack_user_id}")
    return [post["text"] for post in posts]


def _buttons(message: dict) -> list[str]:
    return [
        element["text"]["text"]
        for block in message.get("blocks") or []
        if block["type"] == "actions"
        for element in block["elements"]
    ]


def test_a_step_that_names_a_person_mentions_them_in_the_bill_message(bills):
    approval.use(parse_policy({"thresholds": [{"at_least": "1000.00", "by": "name:fiona"}]}))
    bills.customer("Bigco", unit_cost="5")  # 10,000.00
    bill_id = bills.generate_and_post()["Bigco"]
    message = texts(bills.message(bill_id))
    assert "2. :white_circle: then <@UFIONA01> (Finance) — amount ≥ $1,000.00" in message

    bills.click_button(SALES, bill_id, "Approve")
    bills.wait_thread(bill_id, 1)
    bills.settle()
    assert f"Waiting for <@{FINANCE}> (Finance) to approve — step 2 of 2" in texts(bills.message(bill_id))
