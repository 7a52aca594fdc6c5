"""Who may do what, exhaustively: every role × action × bill status × approval kind, from explicit tables.

Each case builds the bill's state with the real services, tries one action as one person and checks the
outcome against the table: either the change happened (one new action row, earlier rows untouched), or
the specific refusal came and not a single bills or bill_actions row changed. `available_actions` must
agree with the table too, since Slack draws its buttons from it.
"""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from bot import workflow
from bot.billing import generate_month
from bot.errors import AlreadyDone, InvalidTransition, NotAllowed, NotApprover, WaitingForOther
from bot.periods import Period
from db.models import ActionType, Bill, BillAction, Role
from tests.factories import add_customer, add_user

PERIOD = Period(2026, 10)
TODAY = date(2026, 11, 3)

PERSONAS = {
    "finance": ("fiona", Role.FINANCE),
    "csm": ("carol", Role.CUSTOMER_SUCCESS),  # the customer's CSM, where the customer has one
    "other_cs": ("oscar", Role.CUSTOMER_SUCCESS),  # Customer Success, but not this customer's CSM
    "sales": ("sam", Role.SALES),
}

# How each bill state is reached: (service, persona, arguments), run in order after generation.
APPROVE = (workflow.approve, {})
REJECT = (workflow.reject, {"reason": "waived after the outage"})
SEND = (workflow.send, {"deliver": lambda bill: None})

HOW = {
    "one-step": {
        "DRAFT": [],
        "FINAL": [(APPROVE, "other_cs")],
        "WRITEOFF": [(REJECT, "csm")],
        "SENT": [(APPROVE, "other_cs"), (SEND, "finance")],
    },
    "two-step": {
        "DRAFT": [],
        "STEP1": [(APPROVE, "csm")],
        "FINAL": [(APPROVE, "csm"), (APPROVE, "sales")],
        "WRITEOFF": [(REJECT, "sales")],
        "SENT": [(APPROVE, "csm"), (APPROVE, "sales"), (SEND, "finance")],
    },
    "two-step-no-csm": {
        "DRAFT": [],
        "STEP1": [(APPROVE, "other_cs")],
        "FINAL": [(APPROVE, "other_cs"), (APPROVE, "sales")],
        "WRITEOFF": [(REJECT, "csm")],
        "SENT": [(APPROVE, "other_cs"), (APPROVE, "sales"), (SEND, "finance")],
    },
}

# STEP1 is a DRAFT whose step 1 (Customer Success) is approved in two-step approval.
# In two-step-no-csm the customer has no CSM, so "csm" (carol) is just another Customer Success user.
#
# Outcomes: ok | role | state | notcsm | withsales | nothing | wait:WHOM | notyours:WHO | approved:WHO | rejected:WHO
# | sent:WHO (the legend below turns each into the error class and a fragment of its message).
TABLES = {
    "one-step": """
        state     action   finance          csm              other_cs         sales
        DRAFT     approve  role             ok               ok               ok
        DRAFT     reject   role             ok               ok               ok
        DRAFT     edit     ok               role             role             role
        DRAFT     send     state            role             role             role
        DRAFT     undo     nothing          nothing          nothing          nothing
        FINAL     approve  role             approved:oscar   approved:oscar   approved:oscar
        FINAL     reject   role             approved:oscar   approved:oscar   approved:oscar
        FINAL     edit     state            role             role             role
        FINAL     send     ok               role             role             role
        FINAL     undo     ok               notyours:oscar   ok               notyours:oscar
        WRITEOFF  approve  role             rejected:carol   rejected:carol   rejected:carol
        WRITEOFF  reject   role             rejected:carol   rejected:carol   rejected:carol
        WRITEOFF  edit     state            role             role             role
        WRITEOFF  send     state            role             role             role
        WRITEOFF  undo     ok               ok               notyours:carol   notyours:carol
        SENT      approve  role             sent:fiona       sent:fiona       sent:fiona
        SENT      reject   role             sent:fiona       sent:fiona       sent:fiona
        SENT      edit     state            role             role             role
        SENT      send     sent:fiona       role             role             role
        SENT      undo     sent:fiona       sent:fiona       sent:fiona       sent:fiona
    """,
    "two-step": """
        state     action   finance          csm              other_cs         sales
        DRAFT     approve  role             ok               notcsm           wait:carol
        DRAFT     reject   role             ok               notcsm           ok
        DRAFT     edit     ok               role             role             role
        DRAFT     send     state            role             role             role
        DRAFT     undo     nothing          nothing          nothing          nothing
        STEP1     approve  role             approved:carol   withsales        ok
        STEP1     reject   role             ok               notcsm           ok
        STEP1     edit     ok               role             role             role
        STEP1     send     state            role             role             role
        STEP1     undo     ok               ok               notyours:carol   notyours:carol
        FINAL     approve  role             approved:sam     approved:sam     approved:sam
        FINAL     reject   role             approved:sam     approved:sam     approved:sam
        FINAL     edit     state            role             role             role
        FINAL     send     ok               role             role             role
        FINAL     undo     ok               notyours:sam     notyours:sam     ok
        WRITEOFF  approve  role             rejected:sam     rejected:sam     rejected:sam
        WRITEOFF  reject   role             rejected:sam     rejected:sam     rejected:sam
        WRITEOFF  edit     state            role             role             role
        WRITEOFF  send     state            role             role             role
        WRITEOFF  undo     ok               notyours:sam     notyours:sam     ok
        SENT      approve  role             sent:fiona       sent:fiona       sent:fiona
        SENT      reject   role             sent:fiona       sent:fiona       sent:fiona
        SENT      edit     state            role             role             role
        SENT      send     sent:fiona       role             role             role
        SENT      undo     sent:fiona       sent:fiona       sent:fiona       sent:fiona
    """,
    "two-step-no-csm": """
        state     action   finance          csm              other_cs         sales
        DRAFT     approve  role             ok               ok               wait:cs
        DRAFT     reject   role             ok               ok               ok
        DRAFT     edit     ok               role             role             role
        DRAFT     send     state            role             role             role
        DRAFT     undo     nothing          nothing          nothing          nothing
        STEP1     approve  role             approved:oscar   approved:oscar   ok
        STEP1     reject   role             ok               ok               ok
        STEP1     edit     ok               role             role             role
        STEP1     send     state            role             role             role
        STEP1     undo     ok               notyours:oscar   ok               notyours:oscar
        FINAL     approve  role             approved:sam     approved:sam     approved:sam
        FINAL     reject   role             approved:sam     approved:sam     approved:sam
        FINAL     edit     state            role             role             role
        FINAL     send     ok               role             role             role
        FINAL     undo     ok               notyours:sam     notyours:sam     ok
        WRITEOFF  approve  role             rejected:carol   rejected:carol   rejected:carol
        WRITEOFF  reject   role             rejected:carol   rejected:carol   rejected:carol
        WRITEOFF  edit     state            role             role             role
        WRITEOFF  send     state            role             role             role
        WRITEOFF  undo     ok               ok               notyours:carol   notyours:carol
        SENT      approve  role             sent:fiona       sent:fiona       sent:fiona
        SENT      reject   role             sent:fiona       sent:fiona       sent:fiona
        SENT      edit     state            role             role             role
        SENT      send     sent:fiona       role             role             role
        SENT      undo     sent:fiona       sent:fiona       sent:fiona       sent:fiona
    """,
}

ROLE_REFUSALS = {
    "approve": "Only Customer Success and Sales can approve bill #",
    "reject": "Only Customer Success and Sales can reject bill #",
    "edit": "Only Finance can edit a bill's unit cost",
    "send": "Only Finance can send bills",
}
STATE_REFUSALS = {
    "edit": "only a DRAFT bill's unit cost can be edited",
    "send": "only a FINAL bill can be sent",
}
WAITING_FOR = {"carol": "carol (the customer's CSM)", "cs": "Customer Success (the customer has no CSM)"}
NOT_CSM = {
    "approve": "Only carol (the customer's CSM) can approve bill #",
    "reject": "Only carol (the customer's CSM) or Sales can reject bill #",
}
PAST = {"approved": ActionType.APPROVE, "rejected": ActionType.REJECT, "sent": ActionType.SEND}


def expected_refusal(outcome: str, action: str) -> tuple[type[Exception], str] | None:
    """The legend: (exact error class, message fragment), or None when the action is allowed."""
    code, _, who = outcome.partition(":")
    if code == "ok":
        return None
    if code == "role":
        return NotAllowed, ROLE_REFUSALS[action]
    if code == "state":
        return InvalidTransition, STATE_REFUSALS[action]
    if code == "notcsm":
        return NotApprover, NOT_CSM[action]
    if code == "nothing":
        return InvalidTransition, "has nothing to undo"
    if code == "wait":
        return WaitingForOther, f"is waiting for {WAITING_FOR[who]} to approve first"
    if code == "withsales":  # the CSM approved; another Customer Success user is pointed to Sales
        return WaitingForOther, "was approved by carol for Customer Success; it is waiting for Sales now"
    if code == "notyours":
        return NotAllowed, f"Only {who} or Finance can undo {who}'s"
    if code in PAST:
        return AlreadyDone, f"was already {code} by {who} at "
    raise ValueError(f"unknown outcome {outcome!r}")


def _cases():
    for kind, table in TABLES.items():
        lines = [line.split() for line in table.strip().splitlines()]
        header, body = lines[0], lines[1:]
        assert header[2:] == list(PERSONAS)
        for state, action, *outcomes in body:
            assert state in HOW[kind], (kind, state)
            for persona, outcome in zip(PERSONAS, outcomes, strict=True):
                yield pytest.param(kind, state, action, persona, outcome, id=f"{kind}-{state}-{action}-{persona}")


CASES = list(_cases())


def test_the_tables_cover_every_combination():
    combinations = {tuple(case.values[:4]) for case in CASES}
    expected = {
        (kind, state, action, persona)
        for kind, states in HOW.items()
        for state in states
        for action in ("approve", "reject", "edit", "send", "undo")
        for persona in PERSONAS
    }
    assert combinations == expected and len(CASES) == len(expected) == 280


def _rows(db) -> tuple[list[tuple], list[tuple]]:
    with db() as s:
        bills = [tuple(row) for row in s.execute(select(Bill.__table__).order_by(Bill.id))]
        actions = [tuple(row) for row in s.execute(select(BillAction.__table__).order_by(BillAction.id))]
    return bills, actions


def _bill_in_state(db, session, kind: str, state: str) -> tuple[int, dict]:
    people = {persona: add_user(session, name, role) for persona, (name, role) in PERSONAS.items()}
    customer = add_customer(
        session,
        "Acme",
        require_csm_approval=kind != "one-step",
        csm=None if kind == "two-step-no-csm" else people["csm"],
        usage={(PERIOD.year, PERIOD.month): 1500},
    )
    with db() as s:
        generate_month(session=s, period=PERIOD, actor=people["finance"], today=TODAY)
    with db() as s:
        bill_id = s.scalar(select(Bill.id).where(Bill.customer_id == customer.id))
    for (service, arguments), persona in HOW[kind][state]:
        with db() as s:
            service(session=s, bill_id=bill_id, actor=people[persona], **arguments)
    return bill_id, people


class CountingDelivery:
    def __init__(self):
        self.calls = 0

    def __call__(self, bill: Bill) -> None:
        self.calls += 1


@pytest.mark.parametrize(("kind", "state", "action", "persona", "outcome"), CASES)
def test_permission(db, session, kind, state, action, persona, outcome):
    bill_id, people = _bill_in_state(db, session, kind, state)
    actor = people[persona]
    deliver = CountingDelivery()
    arguments = {
        "approve": {},
        "reject": {"reason": "not billable"},
        "edit": {"unit_cost": "0.02"},
        "send": {"deliver": deliver},
        "undo": {},
    }[action]
    with db() as s:
        offered = workflow.available_actions(s.get(Bill, bill_id), actor)
    bills_before, actions_before = _rows(db)

    refusal = expected_refusal(outcome, action)
    if refusal is None:
        with db() as s:
            bill = getattr(workflow, action)(session=s, bill_id=bill_id, actor=actor, **arguments)
        bills_after, actions_after = _rows(db)
        assert bills_after != bills_before
        assert actions_after[: len(actions_before)] == actions_before
        assert len(actions_after) == len(actions_before) + 1
        newest = bill.actions[-1]
        assert (newest.action, newest.stakeholder_id) == (ActionType(action.upper()), actor.id)
        assert newest.status_after is bill.status
        assert deliver.calls == (1 if action == "send" else 0)
        assert ActionType(action.upper()) in offered
        return

    error_class, fragment = refusal
    with db() as s, pytest.raises(error_class) as raised:
        getattr(workflow, action)(session=s, bill_id=bill_id, actor=actor, **arguments)
    assert type(raised.value) is error_class
    assert fragment in str(raised.value)
    if error_class is AlreadyDone:
        code, _, who = outcome.partition(":")
        assert (raised.value.action, raised.value.user_name, raised.value.bill_id) == (PAST[code], who, bill_id)
    assert _rows(db) == (bills_before, actions_before)
    assert deliver.calls == 0
    assert ActionType(action.upper()) not in offered
