"""The `/bill` answers' Block Kit: built from plain model objects, valid, within Slack's limits."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from bot.blocks.commands import (
    HelpEntry,
    bill_detail_blocks,
    bill_list_blocks,
    help_blocks,
    whoami_blocks,
)
from bot.periods import Period
from db.models import ActionType, Bill, BillAction, BillStatus, Customer, Role, User
from tests.slack_helpers import texts

AT = datetime(2026, 11, 2, 10, 32, tzinfo=timezone.utc)


def person(user_id: int, name: str, role: Role, email: str | None = None) -> User:
    return User(id=user_id, name=name, role=role, email=email, slack_user_id=f"U{user_id:04d}")


def customer(name: str = "Acme", *, csm_then_sales: bool = False, csm: User | None = None) -> Customer:
    return Customer(
        id=1,
        name=name,
        billing_address="1 Main Street",
        billing_email="billing@acme.example",
        monthly_api_limit=1000,
        overage_unit_cost=Decimal("0.01"),
        start_date=date(2024, 1, 1),
        require_csm_approval=csm_then_sales,
        csm=csm,
    )


def bill(bill_id: int = 7, *, period: Period = Period(2026, 10), status=BillStatus.DRAFT, owner=None) -> Bill:
    made = Bill(
        id=bill_id,
        customer=owner or customer(),
        year=period.year,
        month=period.month,
        api_usage=1500,
        monthly_api_limit=1000,
        overage_units=500,
        overage_unit_cost=Decimal("0.010000"),
        overage_amount=Decimal("5.00"),
        status=status,
    )
    made.actions = [action(1, ActionType.DRAFT, None, BillStatus.DRAFT, stakeholder=None)]
    return made


def action(action_id, kind, before, after, *, stakeholder, comment=None, minutes=0, undone=None) -> BillAction:
    return BillAction(
        id=action_id,
        action=kind,
        status_before=before,
        status_after=after,
        stakeholder=stakeholder,
        comment=comment,
        undone_action_id=undone,
        created_at=AT + timedelta(minutes=minutes),
    )




def within_limits(blocks: list[dict]) -> None:
    assert len(blocks) <= 50
    for block in blocks:
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= 3000
    json.dumps(blocks)  # plain JSON, as sent to Slack


# --- help and whoami ---------------------------------------------------------------------------------


def test_help_lists_the_entries_it_is_given_and_who_the_caller_is():
    fiona = person(1, "Fiona", Role.FINANCE)
    entries = [HelpEntry("/bill generate [YYYY-MM]", "create a month's bills"), HelpEntry("/bill help", "this")]
    blocks = help_blocks(entries, user=fiona)
    within_limits(blocks)
    text = texts(blocks)
    assert "*Fiona* (Finance)" in text
    assert "`/bill generate [YYYY-MM]` — create a month's bills" in text
    assert "/bill link" not in text


def test_help_for_an_unlinked_user_says_how_to_get_a_code():
    text = texts(help_blocks([HelpEntry("/bill link CODE", "link")], user=None))
    assert "not linked" in text
    assert "billprocess users invite" in text
    assert "`/bill link CODE`" in text


def test_whoami_shows_account_role_and_email():
    text = texts(whoami_blocks(person(3, "Sam", Role.SALES, email="sam@example.com")))
    assert "Sam" in text and "Sales" in text and "sam@example.com" in text


def test_whoami_without_email_and_unlinked():
    assert "—" in texts(whoami_blocks(person(3, "Sam", Role.SALES)))
    assert "/bill link CODE" in texts(whoami_blocks(None))


# --- lists -------------------------------------------------------------------------------------------


def test_list_shows_each_bill_newest_month_first_with_a_summary():
    older = bill(1, period=Period(2026, 9), status=BillStatus.SENT)
    newer = bill(2, period=Period(2026, 10))
    blocks = bill_list_blocks([older, newer])
    within_limits(blocks)
    assert blocks[0] == {"type": "header", "text": {"type": "plain_text", "text": "Bills: all months"}}
    text = texts(blocks)
    assert text.index("`#2`") < text.index("`#1`")
    assert "`#2`  2026-10  *Acme*  DRAFT  500 calls over  *$5.00*" in text
    assert "2 bills, total $10.00 (1 DRAFT, 1 SENT)" in text


def test_list_title_names_the_filters_and_an_empty_list_says_so():
    blocks = bill_list_blocks([], status=BillStatus.FINAL, period=Period(2026, 10))
    assert blocks[0]["text"]["text"] == "Bills: October 2026, FINAL"
    assert "No bills match." in texts(blocks)


def test_a_long_list_is_cut_with_a_hint_to_narrow_it():
    owner = customer("A & B <Holdings> " + "x" * 150)
    bills = [bill(number, owner=owner) for number in range(1, 251)]
    blocks = bill_list_blocks(bills, limit=100)
    within_limits(blocks)
    text = texts(blocks)
    assert "…and 150 more, narrow with a month or status" in text
    assert "`#100`" in text and "`#101`" not in text
    assert "A &amp; B &lt;Holdings&gt;" in text and "<Holdings>" not in text
    assert "250 bills, total $1,250.00" in text


# --- one bill ----------------------------------------------------------------------------------------


def test_details_show_the_figures_and_every_action_in_order():
    carol = person(2, "Carol", Role.CUSTOMER_SUCCESS)
    sam = person(3, "Sam", Role.SALES)
    shown = bill(owner=customer(csm_then_sales=True, csm=carol))
    shown.actions += [
        action(2, ActionType.APPROVE, BillStatus.DRAFT, BillStatus.DRAFT, stakeholder=carol, comment="step 1 of 2",
               minutes=1),
        action(3, ActionType.APPROVE, BillStatus.DRAFT, BillStatus.DRAFT, stakeholder=sam, minutes=2),
        action(4, ActionType.UNDO, BillStatus.DRAFT, BillStatus.DRAFT, stakeholder=sam, comment="too early",
               minutes=3, undone=3),
    ]
    blocks = bill_detail_blocks(shown)
    within_limits(blocks)
    text = texts(blocks)
    assert blocks[0]["text"]["text"] == "Bill #7: Acme, October 2026"
    for expected in ("*Status*\nDRAFT", "*Amount*\n$5.00", "1,500 calls (limit 1,000)", "500 calls × $0.01",
                     "*CSM*\nCarol", "billing@acme.example"):
        assert expected in text
    assert "*Approvals*" in text
    assert "1. Carol (the customer's CSM): approved by Carol at 2026-11-02 10:33 UTC" in text
    assert "2. Sales (after the customer's CSM): waiting" in text
    history = text[text.index("*History*"):]
    assert [kind for kind in ("DRAFT", "APPROVE", "UNDO") if kind in history] == ["DRAFT", "APPROVE", "UNDO"]
    assert history.index("Carol") < history.index("Sam") < history.index("too early")


def test_details_of_a_written_off_and_of_a_sent_bill():
    assert "written off" in texts(bill_detail_blocks(bill(status=BillStatus.WRITEOFF)))
    assert "Sent to billing@acme.example" in texts(bill_detail_blocks(bill(status=BillStatus.SENT)))


def test_comments_are_escaped_and_a_huge_history_still_fits_one_message():
    sam = person(3, "Sam", Role.SALES)
    huge = bill()
    for number in range(2, 402):
        kind = ActionType.REJECT if number % 2 == 0 else ActionType.UNDO
        huge.actions.append(
            action(number, kind, BillStatus.DRAFT, BillStatus.WRITEOFF, stakeholder=sam,
                   comment=f"<{number}> & " + "r" * 1990, minutes=number,
                   undone=number - 1 if kind is ActionType.UNDO else None)
        )
    blocks = bill_detail_blocks(huge)
    within_limits(blocks)
    text = texts(blocks)
    assert "Earlier actions are not shown here" in text
    assert "&lt;401&gt; &amp;" in text  # the latest action is always shown
    assert "<401>" not in text
