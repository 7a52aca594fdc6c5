"""The approval policy alone: for a bill in memory, who may give the approval it waits for now.

Each row: the policy the bill was drafted under, its amount, its customer's terms, who is away (and
their delegate), who edited it last, and who approved so far; then the steps it needs and everyone
who may approve next. No database, no workflow: just bot/approval.py.
"""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from bot import approval
from bot.approval import parse_policy
from db.models import ActionType, Bill, BillAction, BillStatus, Customer, Role, User

AT = datetime(2026, 11, 3, 10, 32, tzinfo=timezone.utc)
TODAY = date(2026, 11, 3)

FINANCE_10K = {"thresholds": [{"at_least": "10000.00", "by": "finance"}]}
SALES_2_AT_50K = {"thresholds": [{"at_least": "50000.00", "by": "sales", "approvers": 2}]}
BOTH = {"thresholds": FINANCE_10K["thresholds"] + SALES_2_AT_50K["thresholds"]}

_ids = itertools.count(1)


def people() -> dict[str, User]:
    return {
        name: User(id=index, name=name, role=role)
        for index, (name, role) in enumerate(
            [("carol", Role.CUSTOMER_SUCCESS), ("oscar", Role.CUSTOMER_SUCCESS), ("sam", Role.SALES),
             ("sid", Role.SALES), ("sue", Role.SALES), ("fiona", Role.FINANCE), ("fred", Role.FINANCE)],
            start=1,
        )
    }


def bill_for(team, *, policy, amount: str, csm_then_sales: bool, edited_by: str | None, approved: list[str]) -> Bill:
    customer = Customer(id=1, name="Acme", require_csm_approval=csm_then_sales, csm=team["carol"])
    bill = Bill(id=7, customer=customer, year=2026, month=10, overage_amount=Decimal(amount), status=BillStatus.DRAFT)
    policy_json = parse_policy(policy).to_json()
    bill.actions.append(BillAction(id=next(_ids), action=ActionType.DRAFT, status_after=BillStatus.DRAFT,
                                   policy=policy_json, created_at=AT))
    if edited_by:
        bill.actions.append(BillAction(id=next(_ids), action=ActionType.EDIT, stakeholder=team[edited_by],
                                       status_before=BillStatus.DRAFT, status_after=BillStatus.DRAFT,
                                       policy=policy_json, created_at=AT))
    for name in approved:
        bill.actions.append(BillAction(id=next(_ids), action=ActionType.APPROVE, stakeholder=team[name],
                                       status_before=BillStatus.DRAFT, status_after=BillStatus.DRAFT, created_at=AT))
    return bill


CS, SALES, FINANCE = {"carol", "oscar"}, {"sam", "sid", "sue"}, {"fiona", "fred"}

# policy, amount, CSM then Sales, away (who, delegate), edited by, approved so far → steps, who may approve now
TABLE = [
    (None, "5.00", False, None, None, [], 1, CS | SALES),
    (None, "5.00", True, None, None, [], 2, {"carol"}),
    (None, "5.00", True, None, None, ["carol"], 2, SALES),
    (FINANCE_10K, "9999.99", False, None, None, [], 1, CS | SALES),
    (FINANCE_10K, "10000.00", False, None, None, [], 2, CS | SALES),
    (FINANCE_10K, "10000.00", False, None, None, ["sam"], 2, FINANCE),
    (FINANCE_10K, "10000.00", True, None, None, ["carol", "sam"], 3, FINANCE),
    (FINANCE_10K, "10000.00", False, None, "fiona", ["sam"], 2, {"fred"}),  # the editor may not approve
    (SALES_2_AT_50K, "50000.00", False, None, None, ["sam"], 2, {"sid", "sue"}),  # not sam again
    (SALES_2_AT_50K, "50000.00", False, None, None, ["oscar", "sid"], 2, {"sam", "sue"}),
    (BOTH, "50000.00", True, None, None, ["carol", "sam", "fred"], 4, {"sid", "sue"}),
    (None, "5.00", True, ("carol", "sid"), None, [], 2, {"carol", "sid"}),  # the delegate stands in
    (None, "5.00", True, ("carol", None), None, [], 2, {"carol", "oscar"}),  # anyone of her role
    (None, "5.00", True, ("carol", "sid"), None, ["sid"], 2, {"sam", "sue"}),  # sid took step 1
    (None, "5.00", False, ("sam", "fiona"), None, [], 1, CS | SALES),  # a step by role names nobody
]


@pytest.mark.parametrize(
    ("policy", "amount", "csm_then_sales", "away", "edited_by", "approved", "steps", "may_approve"), TABLE
)
def test_who_may_approve_next(policy, amount, csm_then_sales, away, edited_by, approved, steps, may_approve):
    team = people()
    if away:
        person, delegate = away
        team[person].away_until = TODAY + timedelta(days=5)
        team[person].delegate = team[delegate] if delegate else None
    bill = bill_for(team, policy=policy, amount=amount, csm_then_sales=csm_then_sales, edited_by=edited_by,
                    approved=approved)
    state = approval.progress(bill, TODAY)
    assert len(state.steps) == steps
    assert {name for name, user in team.items() if state.may_approve(user)} == may_approve
    assert {name for name, user in team.items() if state.may_reject(user)} >= may_approve


def test_an_absence_whose_day_has_passed_changes_nothing():
    team = people()
    team["carol"].away_until, team["carol"].delegate = TODAY - timedelta(days=1), team["sid"]
    state = approval.progress(bill_for(team, policy=None, amount="5.00", csm_then_sales=True, edited_by=None,
                                       approved=[]), TODAY)
    assert {name for name, user in team.items() if state.may_approve(user)} == {"carol"}
    assert state.notes() == []


def test_each_step_says_why_the_bill_needs_it():
    team = people()
    state = approval.progress(
        bill_for(team, policy=BOTH, amount="60000.00", csm_then_sales=True, edited_by=None, approved=[]), TODAY
    )
    assert [step.label for step in state.steps] == [
        "carol (the customer's CSM)",
        "Sales (after the customer's CSM)",
        "Finance (amount ≥ $10,000.00)",
        "2 people from Sales (amount ≥ $50,000.00)",
    ]
