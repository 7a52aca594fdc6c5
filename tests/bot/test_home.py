"""App Home per role, built from real bills made by the billing engine and moved by the workflow services."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from bot import workflow
from bot.billing import generate_month
from bot.bills import get_bill
from bot.errors import DeliveryUncertain, SendUncertain
from bot.home import MAX_LISTED_BILLS, MAX_LISTED_SENDING, home_view, waiting_for
from bot.periods import Period
from bot.slack_ids import ActionId, bill_value, parse_bill_value
from db.models import ActionType, Bill, Customer, Role
from tests.factories import add_customer, add_user
from tests.slack_helpers import texts

PERIOD = Period(2026, 10)
TODAY = date(2026, 11, 3)




def buttons(view: dict) -> list[tuple[str, str]]:
    """(action_id, value) of every button, in order."""
    found = []
    for block in view["blocks"]:
        elements = block.get("elements", []) if block["type"] == "actions" else [block.get("accessory") or {}]
        found += [(e["action_id"], e["value"]) for e in elements if e.get("type") == "button"]
    return found


@pytest.fixture
def people(session):
    return {
        "fiona": add_user(session, "fiona", Role.FINANCE, slack_user_id="UFIONA"),
        "carol": add_user(session, "carol", Role.CUSTOMER_SUCCESS, slack_user_id="UCAROL"),
        "oscar": add_user(session, "oscar", Role.CUSTOMER_SUCCESS),
        "sam": add_user(session, "sam", Role.SALES, slack_user_id="USAM"),
    }


@pytest.fixture
def bills(session, db, people) -> dict[str, int]:
    """October's bills: Acme one-step, Beta two-step (CSM carol), Gamma two-step without a CSM,
    Delta approved (FINAL) and Echo rejected (WRITEOFF)."""
    for name, calls, csm_then_sales, csm in [
        ("Acme", 1500, False, None),
        ("Beta", 3000, True, people["carol"]),
        ("Gamma", 2000, True, None),
        ("Delta", 1200, False, None),
        ("Echo", 1100, False, None),
    ]:
        add_customer(session, name, require_csm_approval=csm_then_sales, csm=csm, usage={(PERIOD.year, PERIOD.month): calls})
    with db() as s:
        generate_month(session=s, period=PERIOD, actor=people["fiona"], today=TODAY)
    with db() as s:
        ids = dict(s.execute(select(Customer.name, Bill.id).join(Bill.customer)).all())
    with db() as s:
        workflow.approve(session=s, bill_id=ids["Delta"], actor=people["sam"])
    with db() as s:
        workflow.reject(session=s, bill_id=ids["Echo"], actor=people["oscar"], reason="goodwill")
    return ids


def view_for(db, user, today=TODAY) -> dict:
    with db() as s:
        return home_view(session=s, user=user, today=today)


def shown_value(db, bill_id: int) -> str:
    """A button's value for the bill as it is now: the bill and its latest effective action."""
    with db() as s:
        return bill_value(bill_id, workflow.latest_change(get_bill(session=s, bill_id=bill_id)).id)


def test_unlinked_user_is_told_how_to_link(db):
    view = view_for(db, None)

    assert view["type"] == "home"
    assert "`/bill link CODE`" in texts(view)
    assert "billprocess users invite NAME" in texts(view)
    assert buttons(view) == []


def test_finance_sees_the_latest_month_by_status_and_the_bills_to_send(db, people, bills):
    view = view_for(db, people["fiona"])
    text = texts(view)

    assert "Bills for October 2026" in text
    assert "*DRAFT* — waiting for approval\n3 bills · $35.00" in text
    assert "*FINAL* — approved, to be sent\n1 bill · $2.00" in text
    assert "*WRITEOFF* — rejected, written off\n1 bill · $1.00" in text
    assert "*SENT* — sent to the customer\n0 bills" in text
    assert "5 bills in all, $38.00" in text
    assert buttons(view) == [(ActionId.SEND.value, shown_value(db, bills["Delta"]))]
    assert f"Bill #{bills['Delta']} · Delta" in text
    assert "Approved by <@USAM> · to billing@delta.example" in text


def test_finance_no_longer_sees_a_sent_bill(db, people, bills):
    with db() as s:
        workflow.send(session=s, bill_id=bills["Delta"], actor=people["fiona"], deliver=lambda bill: None)

    view = view_for(db, people["fiona"])

    assert buttons(view) == []
    assert "No approved bills are waiting to be sent." in texts(view)
    assert "*SENT* — sent to the customer\n1 bill · $2.00" in texts(view)


def test_finance_sees_a_bill_whose_send_is_not_confirmed_apart_with_send_again_and_mark_as_sent(db, people, bills):
    with db() as s:
        with pytest.raises(SendUncertain):
            workflow.send(session=s, bill_id=bills["Delta"], actor=people["fiona"], deliver=unknown_outcome)

    view = view_for(db, people["fiona"])
    text = texts(view)

    assert buttons(view) == [
        (ActionId.SEND_AGAIN.value, shown_value(db, bills["Delta"])),
        (ActionId.MARK_SENT.value, shown_value(db, bills["Delta"])),
    ]
    assert "Sending not confirmed" in text
    assert f"Bill #{bills['Delta']} · Delta" in text
    assert f"Sending of bill #{bills['Delta']} is uncertain: fiona started emailing it at " in text
    assert "No approved bills are waiting to be sent." in text


def unknown_outcome(bill):
    raise DeliveryUncertain("the mail server did not answer after the email was handed over")


def test_finance_before_any_bill_is_told_how_to_generate(db, people):
    view = view_for(db, people["fiona"])

    assert "No bills have been generated yet. `/bill generate 2026-10`" in texts(view)


def test_the_csm_sees_one_step_bills_and_csm_then_sales_bills_at_step_one(db, people, bills):
    view = view_for(db, people["carol"])

    waiting = sorted([bills["Acme"], bills["Beta"], bills["Gamma"]])  # oldest first
    assert buttons(view) == [
        (action.value, shown_value(db, bill_id))
        for bill_id in waiting
        for action in (ActionId.APPROVE, ActionId.REJECT)
    ]
    assert "Waiting for you: 3 bills" in texts(view)
    assert "Step 1 of 2: carol (the customer's CSM)" in texts(view)
    assert "Step 1 of 2: Customer Success (the customer has no CSM)" in texts(view)


def test_another_customer_success_user_does_not_see_a_bill_of_someone_elses_customer(db, people, bills):
    view = view_for(db, people["oscar"])

    assert {value for _, value in buttons(view)} == {shown_value(db, bills["Acme"]), shown_value(db, bills["Gamma"])}


def test_sales_sees_a_csm_then_sales_bill_only_once_the_csm_approved(db, people, bills):
    before = view_for(db, people["sam"])
    with db() as s:
        workflow.approve(session=s, bill_id=bills["Beta"], actor=people["carol"])
    after = view_for(db, people["sam"])
    carol = view_for(db, people["carol"])

    assert {value for _, value in buttons(before)} == {shown_value(db, bills["Acme"])}
    assert {value for _, value in buttons(after)} == {shown_value(db, bills["Acme"]), shown_value(db, bills["Beta"])}
    assert "Step 2 of 2: Sales (after the customer's CSM) · step 1 approved by <@UCAROL>" in texts(after)
    assert bills["Beta"] not in {parse_bill_value(value)[0] for _, value in buttons(carol)}


def test_names_are_escaped_for_mrkdwn_and_quotes_are_left_as_typed(session, db, people):
    add_customer(session, "O'Reilly & <Sons>", usage={(PERIOD.year, PERIOD.month): 2000})
    with db() as s:
        generate_month(session=s, period=PERIOD, actor=people["fiona"], today=TODAY)

    text = texts(view_for(db, people["sam"]))

    assert "O'Reilly &amp; &lt;Sons&gt;" in text
    assert "&#x27;" not in text and "<Sons>" not in text


def test_an_approver_with_nothing_waiting_is_told_so(db, people):
    view = view_for(db, people["sam"])

    assert "No bills are waiting for your approval." in texts(view)
    assert buttons(view) == []


def test_long_lists_are_capped_within_the_view_limit_and_say_how_many_more(session, db, people):
    for number in range(MAX_LISTED_BILLS + 12):
        add_customer(session, f"Customer {number:02d}", usage={(PERIOD.year, PERIOD.month): 2000})
    with db() as s:
        generate_month(session=s, period=PERIOD, actor=people["fiona"], today=TODAY)
    with db() as s:
        ids = list(s.scalars(select(Bill.id).order_by(Bill.id)))
    for bill_id in ids[: MAX_LISTED_BILLS + 5]:
        with db() as s:
            workflow.approve(session=s, bill_id=bill_id, actor=people["carol"])

    sales = view_for(db, people["sam"])
    finance = view_for(db, people["fiona"])

    assert len(sales["blocks"]) <= 100 and len(finance["blocks"]) <= 100
    assert "Waiting for you: 7 bills" in texts(sales)
    assert len(buttons(finance)) == MAX_LISTED_BILLS
    assert buttons(finance)[0] == (ActionId.SEND.value, shown_value(db, ids[0]))
    assert "…and 5 more. `/bill list FINAL` lists them all." in texts(finance)
    assert "*FINAL* — approved, to be sent\n35 bills · $350.00" in texts(finance)


def test_finance_lists_with_many_uncertain_sends_and_bills_to_send_stay_within_the_view_limit(session, db, people):
    for number in range(MAX_LISTED_BILLS + MAX_LISTED_SENDING + 10):
        add_customer(session, f"Customer {number:02d}", usage={(PERIOD.year, PERIOD.month): 2000})
    with db() as s:
        generate_month(session=s, period=PERIOD, actor=people["fiona"], today=TODAY)
    with db() as s:
        ids = list(s.scalars(select(Bill.id).order_by(Bill.id)))
    for bill_id in ids:
        with db() as s:
            workflow.approve(session=s, bill_id=bill_id, actor=people["carol"])
    for bill_id in ids[: MAX_LISTED_SENDING + 4]:
        with db() as s, pytest.raises(SendUncertain):
            workflow.send(session=s, bill_id=bill_id, actor=people["fiona"], deliver=unknown_outcome)

    view = view_for(db, people["fiona"])

    assert len(view["blocks"]) <= 100
    kinds = [action_id for action_id, _ in buttons(view)]
    assert kinds.count(ActionId.SEND_AGAIN.value) == kinds.count(ActionId.MARK_SENT.value) == MAX_LISTED_SENDING
    assert kinds.count(ActionId.SEND.value) == MAX_LISTED_BILLS
    assert "…and 4 more. `/bill list FINAL` lists them all." in texts(view)


def test_approver_list_is_capped_too(session, db, people):
    for number in range(MAX_LISTED_BILLS + 3):
        add_customer(session, f"Customer {number:02d}", usage={(PERIOD.year, PERIOD.month): 2000})
    with db() as s:
        generate_month(session=s, period=PERIOD, actor=people["fiona"], today=TODAY)

    view = view_for(db, people["sam"])

    assert len(view["blocks"]) <= 100
    assert len(buttons(view)) == 2 * MAX_LISTED_BILLS
    assert f"Waiting for you: {MAX_LISTED_BILLS + 3} bills" in texts(view)
    assert "…and 3 more." in texts(view)


def test_who_a_bill_waits_for_agrees_with_the_workflow_in_every_state(session, db, people):
    """The Home queue lists exactly the bills the workflow would let each person approve."""
    vic = add_user(session, "vic", Role.SALES)  # a former CSM, now in Sales: no longer counts as the CSM
    carol, oscar, sam = people["carol"], people["oscar"], people["sam"]
    october = {(PERIOD.year, PERIOD.month): 2000}
    plans = {
        "one-step": dict(),
        "own CSM": dict(require_csm_approval=True, csm=carol),
        "other CSM": dict(require_csm_approval=True, csm=oscar),
        "no CSM": dict(require_csm_approval=True),
        "CSM left": dict(require_csm_approval=True, csm=vic),
    }
    for name, terms in plans.items():
        for step in ("fresh", "step 1 done", "undone", "edited"):
            add_customer(session, f"{name}, {step}", usage=october, **terms)
    with db() as s:
        generate_month(session=s, period=PERIOD, actor=people["fiona"], today=TODAY)
    with db() as s:
        bills = {bill.customer.name: bill.id for bill in s.scalars(select(Bill)).all()}
    for name in plans:
        if name == "one-step":
            continue
        csm = oscar if name == "other CSM" else carol
        for step in ("step 1 done", "undone", "edited"):
            with db() as s:
                workflow.approve(session=s, bill_id=bills[f"{name}, {step}"], actor=csm)
        with db() as s:
            workflow.undo(session=s, bill_id=bills[f"{name}, undone"], actor=csm)
        with db() as s:
            workflow.edit(session=s, bill_id=bills[f"{name}, edited"], actor=people["fiona"], unit_cost="0.02")

    for user in (carol, oscar, sam, vic):
        with db() as s:
            expected = []
            for bill_id in sorted(bills.values()):
                bill = get_bill(session=s, bill_id=bill_id)
                if ActionType.APPROVE in workflow.available_actions(bill, user):
                    expected.append(bill_id)
        with db() as s:
            assert waiting_for(session=s, user=user) == expected, user.name
    with db() as s:
        # Sales: every one-step bill, and the two-step ones whose step 1 still counts.
        assert len(waiting_for(session=s, user=sam)) == 4 + 4
