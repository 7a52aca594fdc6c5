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
from bot.errors import AlreadyDone
from db.models import ActionOrigin, ActionType, Bill, BillAction, BillStatus, Customer, Role, User

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


def bill_for(team, *, policy, amount: str, csm_then_sales: bool, history: list[tuple[str, str | None]]) -> Bill:
    """A bill drafted under `policy`, then `history`: ("approve", name), ("edit", name) or ("auto", None)."""
    customer = Customer(id=1, name="Acme", require_csm_approval=csm_then_sales, csm=team["carol"], currency="USD")
    bill = Bill(id=7, customer=customer, year=2026, month=10, overage_amount=Decimal(amount), currency="USD",
                status=BillStatus.DRAFT)
    rules = parse_policy(policy).to_json()
    bill.actions.append(BillAction(id=next(_ids), action=ActionType.DRAFT, status_after=BillStatus.DRAFT,
                                   policy=rules, require_csm_approval=csm_then_sales, created_at=AT))
    for kind, name in history:
        action = {"approve": ActionType.APPROVE, "edit": ActionType.EDIT, "auto": ActionType.APPROVE}[kind]
        after = BillStatus.FINAL if kind == "auto" else BillStatus.DRAFT
        bill.actions.append(BillAction(
            id=next(_ids), action=action, stakeholder=team[name] if name else None,
            origin=ActionOrigin.POLICY if kind == "auto" else None, status_before=BillStatus.DRAFT,
            status_after=after, policy=rules if kind == "edit" else None,
            require_csm_approval=csm_then_sales if kind == "edit" else None, created_at=AT,
        ))
        bill.status = after
    return bill


CS, SALES, FINANCE = {"carol", "oscar"}, {"sam", "sid", "sue"}, {"fiona", "fred"}
FRED_10K = {"thresholds": [{"at_least": "10000.00", "by": "name:fred"}]}
CAROL_10K = {"thresholds": [{"at_least": "10000.00", "by": "name:carol"}]}
AUTO_50 = {"auto_approve_below": "50.00"}


def approved(*names: str) -> list[tuple[str, str]]:
    return [("approve", name) for name in names]


# policy, amount, CSM then Sales, away (who, delegate), history → steps, who may approve now
TABLE = [
    (None, "5.00", False, None, [], 1, CS | SALES),
    (None, "5.00", True, None, [], 2, {"carol"}),
    (None, "5.00", True, None, approved("carol"), 2, SALES),
    (FINANCE_10K, "9999.99", False, None, [], 1, CS | SALES),
    (FINANCE_10K, "10000.00", False, None, [], 2, CS | SALES),
    (FINANCE_10K, "10000.00", False, None, approved("sam"), 2, FINANCE),
    (FINANCE_10K, "10000.00", True, None, approved("carol", "sam"), 3, FINANCE),
    (FINANCE_10K, "10000.00", False, None, [("edit", "fiona"), *approved("sam")], 2, {"fred"}),  # not the editor
    (FINANCE_10K, "10000.00", False, None, [*approved("sam"), ("edit", "fiona")], 2, CS | SALES),  # starts over
    (SALES_2_AT_50K, "50000.00", False, None, approved("sam"), 2, {"sid", "sue"}),  # not sam again
    (SALES_2_AT_50K, "50000.00", False, None, approved("oscar", "sid"), 2, {"sam", "sue"}),
    (BOTH, "50000.00", True, None, approved("carol", "sam", "fred"), 4, {"sid", "sue"}),
    (FRED_10K, "10000.00", False, None, approved("sam"), 2, {"fred"}),  # a named person
    (FRED_10K, "10000.00", False, ("fred", "fiona"), approved("sam"), 2, {"fred", "fiona"}),  # or their delegate
    (FRED_10K, "10000.00", False, ("fred", None), approved("sam"), 2, {"fred", "fiona"}),  # or their role
    (CAROL_10K, "10000.00", True, None, approved("carol", "sam"), 3, {"oscar"}),  # carol took step 1: a stand-in
    (None, "5.00", True, ("carol", "sid"), [], 2, {"carol", "sid"}),  # the delegate stands in
    (None, "5.00", True, ("carol", None), [], 2, {"carol", "oscar"}),  # anyone of her role
    (None, "5.00", True, ("carol", "sid"), approved("sid"), 2, {"sam", "sue"}),  # sid took step 1
    (None, "5.00", True, ("carol", "oscar"), [*approved("oscar"), ], 2, SALES),  # carol's step, taken for her
    (None, "5.00", False, ("sam", "fiona"), [], 1, CS | SALES),  # a step by role names nobody
    (AUTO_50, "49.99", False, None, [("auto", None)], 1, set()),  # approved by the policy: FINAL
    (AUTO_50, "49.99", True, None, [("auto", None)], 2, set()),
]


@pytest.mark.parametrize(("policy", "amount", "csm_then_sales", "away", "history", "steps", "may_approve"), TABLE)
def test_who_may_approve_next(policy, amount, csm_then_sales, away, history, steps, may_approve):
    team = people()
    if away:
        person, delegate = away
        team[person].away_until = TODAY + timedelta(days=5)
        team[person].delegate = team[delegate] if delegate else None
    bill = bill_for(team, policy=policy, amount=amount, csm_then_sales=csm_then_sales, history=history)
    state = approval.progress(bill, TODAY, people=team)
    assert len(state.steps) == steps
    assert {name for name, user in team.items() if state.may_approve(user)} == may_approve
    # whoever may approve may also reject; a bill no longer a DRAFT may be neither
    rejecters = {name for name, user in team.items() if state.may_reject(user)}
    assert rejecters >= may_approve and (rejecters == set()) == (bill.status is not BillStatus.DRAFT)


def test_an_absence_whose_day_has_passed_changes_nothing():
    team = people()
    team["carol"].away_until, team["carol"].delegate = TODAY - timedelta(days=1), team["sid"]
    state = approval.progress(bill_for(team, policy=None, amount="5.00", csm_then_sales=True, history=[]), TODAY)
    assert {name for name, user in team.items() if state.may_approve(user)} == {"carol"}
    assert state.notes() == []


def test_each_step_says_why_the_bill_needs_it():
    team = people()
    state = approval.progress(
        bill_for(team, policy=BOTH, amount="60000.00", csm_then_sales=True, history=[]), TODAY
    )
    assert [step.label for step in state.steps] == [
        "carol (the customer's CSM)",
        "Sales (after the customer's CSM)",
        "Finance (amount ≥ $10,000.00)",
        "2 people from Sales (amount ≥ $50,000.00)",
    ]


def test_a_draft_read_with_an_approval_that_already_completes_it_refuses_that_approver_plainly():
    """Read while the approval that makes it FINAL commits (its row still DRAFT), a bill is never a crash."""
    team = people()
    bill = bill_for(team, policy=None, amount="5.00", csm_then_sales=False, history=approved("sam"))
    assert bill.status is BillStatus.DRAFT
    state = approval.progress(bill, TODAY, people=team)
    assert not state.may_approve(team["sam"])
    with pytest.raises(AlreadyDone, match="was already approved by sam"):
        approval.check_approve(bill, team["sam"], TODAY)
