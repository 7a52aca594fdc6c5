"""The approval policy (bot/approval.py): its file, and the rule table played through the real workflow.

Each rule-table case drafts one bill under a policy, then lets people act on it in order; every step
says what must happen: the bill's status after an approval, or the refusal (its class and a fragment).
The same table runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from bot import absences, approval, workflow
from bot.approval import Policy, PolicyError, parse_policy
from bot.billing import generate_month
from bot.errors import AlreadyDone, InvalidInput, NotAllowed, NotApprover, WaitingForOther
from bot.home import reminders_due, waiting_for
from bot.periods import Period
from db.models import ActionType, Bill, BillStatus, Role, User
from tests.factories import add_customer, add_user

PERIOD = Period(2026, 10)
TODAY = date(2026, 11, 3)  # generation's "today": October has ended

FINANCE_ABOVE_10K = {"thresholds": [{"at_least": "10000.00", "by": "finance"}]}
TWO_SALES_ABOVE_50K = {"thresholds": [{"at_least": "50000.00", "by": "sales", "approvers": 2}]}
FRED_ABOVE_10K = {"thresholds": [{"at_least": 10000, "by": "name:fred"}]}
AUTO_BELOW_50 = {"auto_approve_below": 50.00}
# Usage over the 1,000-call limit at 0.01 a call: the bill's amount.
USAGE_FOR = {"5.00": 1_500, "12,000.00": 1_201_000, "60,000.00": 6_001_000}


@pytest.fixture
def people(session):
    return {
        name: add_user(session, name, role)
        for name, role in [
            ("fiona", Role.FINANCE), ("fred", Role.FINANCE),
            ("carol", Role.CUSTOMER_SUCCESS), ("oscar", Role.CUSTOMER_SUCCESS),
            ("sam", Role.SALES), ("sid", Role.SALES), ("sue", Role.SALES),
        ]
    }


def draft(session, db, people, policy: dict | None, amount: str, csm_then_sales: bool) -> int:
    approval.use(parse_policy(policy))
    customer = add_customer(session, "Acme", require_csm_approval=csm_then_sales, csm=people["carol"],
                            usage={(PERIOD.year, PERIOD.month): USAGE_FOR[amount]})
    with db() as s:
        generate_month(session=s, period=PERIOD, actor=people["fiona"], today=TODAY)
    with db() as s:
        return s.scalar(select(Bill.id).where(Bill.customer_id == customer.id))


def play(db, people, bill_id: int, steps) -> None:
    for number, (who, verb, expected) in enumerate(steps, start=1):
        service = {"approves": workflow.approve, "rejects": workflow.reject, "undoes": workflow.undo}[verb]
        extra = {"reason": "too high"} if verb == "rejects" else {}
        if isinstance(expected, BillStatus):
            with db() as s:
                bill = service(session=s, bill_id=bill_id, actor=people[who], **extra)
            assert bill.status is expected, (number, who, verb)
            continue
        kind, fragment = expected
        with db() as s, pytest.raises(kind) as refusal:
            service(session=s, bill_id=bill_id, actor=people[who], **extra)
        assert fragment in str(refusal.value), (number, who, verb, str(refusal.value))


DRAFT, FINAL, WRITEOFF = BillStatus.DRAFT, BillStatus.FINAL, BillStatus.WRITEOFF

RULES = {
    "default one-step: one approval": (None, "5.00", False, [("sam", "approves", FINAL)]),
    "default: the CSM, then Sales": (None, "5.00", True, [
        ("sam", "approves", (WaitingForOther, "waiting for carol (the customer's CSM) to approve first")),
        ("carol", "approves", DRAFT),
        ("carol", "approves", (AlreadyDone, "already approved by carol")),
        ("sam", "approves", FINAL),
    ]),
    "Finance above 10,000: reached": (FINANCE_ABOVE_10K, "12,000.00", False, [
        ("fiona", "approves", (WaitingForOther, "waiting for Customer Success or Sales (the customer's usual approval)")),
        ("sam", "approves", DRAFT),
        ("sid", "approves", (AlreadyDone, "already approved by sam at")),
        ("sid", "approves", (AlreadyDone, "it is waiting for Finance now")),
        ("fiona", "approves", FINAL),
    ]),
    "Finance above 10,000: not reached": (FINANCE_ABOVE_10K, "5.00", False, [
        ("fiona", "approves", (NotAllowed, "Only Customer Success and Sales can approve")),
        ("sam", "approves", FINAL),
    ]),
    "three steps: CSM, Sales, Finance": (FINANCE_ABOVE_10K, "12,000.00", True, [
        ("carol", "approves", DRAFT),
        ("fred", "approves", (WaitingForOther, "waiting for Sales (after the customer's CSM) to approve first")),
        ("sam", "approves", DRAFT),
        ("fred", "approves", FINAL),
    ]),
    "two distinct Sales approvers above 50,000": (TWO_SALES_ABOVE_50K, "60,000.00", False, [
        ("sam", "approves", DRAFT),
        ("sam", "approves", (AlreadyDone, "one person never takes two steps of a bill")),
        ("sid", "approves", DRAFT),
        ("sue", "approves", FINAL),
    ]),
    "a named person above 10,000": (FRED_ABOVE_10K, "12,000.00", False, [
        ("sam", "approves", DRAFT),
        ("fiona", "approves", (NotApprover, "Only fred (amount ≥ $10,000.00) can approve")),
        ("fred", "approves", FINAL),
    ]),
    "a rejection by any approver of any step": (FINANCE_ABOVE_10K, "12,000.00", False, [
        ("fiona", "rejects", WRITEOFF),
    ]),
    "a rejection by someone who takes no step": (None, "5.00", True, [
        ("oscar", "rejects", (NotApprover, "Only carol (the customer's CSM) or Sales can reject")),
        ("fiona", "rejects", (NotAllowed, "Only Customer Success and Sales can reject")),
    ]),
}


@pytest.mark.parametrize("name", list(RULES))
def test_the_rule_table(session, db, people, name):
    policy, amount, csm_then_sales, steps = RULES[name]
    bill_id = draft(session, db, people, policy, amount, csm_then_sales)
    play(db, people, bill_id, steps)


def test_the_default_policy_records_nothing_and_gives_the_customers_usual_steps(session, db, people):
    bill_id = draft(session, db, people, None, "5.00", True)
    with db() as s:
        bill = s.get(Bill, bill_id)
        assert bill.actions[0].policy is None
        state = approval.progress(bill)
        assert [(step.roles, step.person.name if step.person else None, step.approvers) for step in state.steps] == [
            (frozenset({Role.CUSTOMER_SUCCESS}), "carol", 1),
            (frozenset({Role.SALES}), None, 1),
        ]


def test_a_small_bill_is_approved_by_the_policy_and_finance_can_undo_that(session, db, people):
    bill_id = draft(session, db, people, AUTO_BELOW_50, "5.00", True)
    with db() as s:
        bill = s.get(Bill, bill_id)
        assert bill.status is BillStatus.FINAL
        auto = bill.actions[-1]
        assert (auto.action, auto.stakeholder_id, auto.status_after) == (ActionType.APPROVE, None, BillStatus.FINAL)
        assert auto.comment == "approved automatically: below 50.00 (approval policy)"
    play(db, people, bill_id, [
        ("carol", "undoes", (NotAllowed, "Only Finance can undo the approval of bill")),
        ("fiona", "undoes", DRAFT),
        ("sam", "approves", (WaitingForOther, "waiting for carol")),  # its usual steps again
        ("carol", "approves", DRAFT),
        ("sam", "approves", FINAL),
    ])


def test_whoever_edited_a_bill_last_cannot_approve_it(session, db, people):
    bill_id = draft(session, db, people, FINANCE_ABOVE_10K, "12,000.00", False)
    with db() as s:
        workflow.edit(session=s, bill_id=bill_id, actor=people["fiona"], unit_cost="0.011")
    play(db, people, bill_id, [
        ("sam", "approves", DRAFT),
        ("fiona", "approves", (NotApprover, "You edited bill")),
        ("fred", "approves", FINAL),
    ])


def test_an_edit_re_derives_the_steps_under_the_policy_in_force(session, db, people):
    bill_id = draft(session, db, people, None, "5.00", False)  # drafted under the default policy
    approval.use(parse_policy(FINANCE_ABOVE_10K))
    with db() as s:
        bill = workflow.edit(session=s, bill_id=bill_id, actor=people["fiona"], unit_cost="25")  # 12,500.00
        assert bill.overage_amount == Decimal("12500.00")
    play(db, people, bill_id, [("sam", "approves", DRAFT), ("fred", "approves", FINAL)])
    with db() as s:
        workflow.undo(session=s, bill_id=bill_id, actor=people["fiona"])  # Fred's approval
        workflow.undo(session=s, bill_id=bill_id, actor=people["fiona"])  # Sam's
        workflow.undo(session=s, bill_id=bill_id, actor=people["fiona"])  # the edit: 5.00, the draft's policy
    play(db, people, bill_id, [("sam", "approves", FINAL)])


def test_a_policy_change_never_moves_a_bill_drafted_before_it(session, db, people):
    bill_id = draft(session, db, people, None, "12,000.00", False)
    approval.use(parse_policy(FINANCE_ABOVE_10K))
    play(db, people, bill_id, [("sam", "approves", FINAL)])


def away(db, people, name: str, until: date, delegate: str | None = None) -> None:
    with db() as s:
        absences.set_away(session=s, user_id=people[name].id, until=until,
                          delegate_id=people[delegate].id if delegate else None, today=approval.today())


def test_an_absent_csm_s_step_is_taken_by_their_delegate(session, db, people):
    bill_id = draft(session, db, people, None, "5.00", True)
    away(db, people, "carol", approval.today() + timedelta(days=10), delegate="sid")
    with db() as s:
        bill = s.get(Bill, bill_id)
        until = approval.today() + timedelta(days=10)
        assert approval.progress(bill).notes() == [f"carol is away until {until.day} {until:%b} — sid approves for them"]
    play(db, people, bill_id, [
        ("oscar", "approves", (NotApprover, "Only carol (the customer's CSM), or sid while they are away")),
        ("sid", "approves", DRAFT),
        ("sid", "approves", (AlreadyDone, "already approved by sid")),  # never two steps
        ("sam", "approves", FINAL),
    ])
    with db() as s:
        assert s.get(Bill, bill_id).actions[1].comment == "step 1 of 2: the customer's CSM; for carol, who is away"


def test_without_a_delegate_anyone_of_the_role_stands_in_until_the_person_is_back(session, db, people):
    bill_id = draft(session, db, people, None, "5.00", True)
    away(db, people, "carol", approval.today())
    with db() as s:
        assert [bill_id] == waiting_for(session=s, user=people["oscar"])
    with db() as s:
        absences.set_back(session=s, user_id=people["carol"].id, today=approval.today())
    with db() as s:
        assert waiting_for(session=s, user=people["oscar"]) == []
    play(db, people, bill_id, [("oscar", "approves", (NotApprover, "Only carol"))])


def test_an_absence_ends_when_its_day_has_passed(session, db, people):
    bill_id = draft(session, db, people, None, "5.00", True)
    with db() as s:
        carol = s.get(User, people["carol"].id)
        carol.away_until, carol.delegate_id = approval.today() - timedelta(days=1), people["sid"].id
        s.commit()
    play(db, people, bill_id, [("sid", "approves", (WaitingForOther, "waiting for carol"))])


@pytest.mark.parametrize(
    ("until", "delegate", "message"),
    [
        (-1, None, "has passed"),
        (3, "carol", "cannot approve for yourself"),
    ],
)
def test_an_absence_that_makes_no_sense_is_refused(session, db, people, until, delegate, message):
    with pytest.raises(InvalidInput, match=message):
        away(db, people, "carol", approval.today() + timedelta(days=until), delegate)
    with db() as s:
        assert s.get(User, people["carol"].id).away_until is None


def test_home_queues_reminders_and_the_workflow_agree_on_who_may_act(session, db, people):
    """For every bill of a generated month, under every kind of rule, edits and an absence, the three agree."""
    approval.use(parse_policy({
        "auto_approve_below": "10.00",
        "thresholds": [
            {"at_least": "10000.00", "by": "finance"},
            {"at_least": "50000.00", "by": "sales", "approvers": 2},
            {"at_least": "50000.00", "by": "name:fred"},
        ],
    }))
    months = {(PERIOD.year, PERIOD.month): 0}
    for index, (amount, csm_then_sales, csm) in enumerate(
        [(a, t, c) for a in USAGE_FOR for t in (False, True) for c in ("carol", "oscar", None)]
    ):
        months[(PERIOD.year, PERIOD.month)] = USAGE_FOR[amount]
        add_customer(session, f"Customer {index:02d}", require_csm_approval=csm_then_sales,
                     csm=people[csm] if csm else None, usage=dict(months))
    with db() as s:
        generate_month(session=s, period=PERIOD, actor=people["fiona"], today=TODAY)
    with db() as s:
        ids = list(s.scalars(select(Bill.id).order_by(Bill.id)))
    for bill_id in ids[::3]:  # a third of them one approval further
        for who in ("carol", "oscar", "sam"):
            try:
                with db() as s:
                    workflow.approve(session=s, bill_id=bill_id, actor=people[who])
                break
            except (NotApprover, WaitingForOther, NotAllowed, AlreadyDone):
                continue
    for bill_id in ids[1::4]:  # some edited by Finance: the editor may not approve them
        with db() as s:
            drafted = s.get(Bill, bill_id).status is BillStatus.DRAFT
        if drafted:
            with db() as s:
                workflow.edit(session=s, bill_id=bill_id, actor=people["fiona"], unit_cost="0.02")
    away(db, people, "carol", approval.today() + timedelta(days=3), delegate="sid")
    away(db, people, "fred", approval.today() + timedelta(days=3))
    later = datetime.now().astimezone() + timedelta(days=30)  # by then everything has waited long enough
    for person in people.values():
        with db() as s:
            user = s.get(User, person.id)
            expected = [
                bill.id for bill in (s.get(Bill, bill_id) for bill_id in ids)
                if ActionType.APPROVE in workflow.available_actions(bill, user)
            ]
            assert waiting_for(session=s, user=user) == expected, person.name
            due = reminders_due(session=s, user=user, now=later, after_days=1)
            assert ([listed.bill.id for listed in due.waiting] if due else []) == expected, person.name
    with db() as s:  # the rules were exercised: some bills wait for Finance, some were approved by the policy
        assert any(waiting_for(session=s, user=s.get(User, people[name].id)) for name in ("fiona", "fred"))
        assert s.scalar(select(func.count()).select_from(Bill).where(Bill.status == BillStatus.FINAL)) > 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], "must be a mapping"),
        ({"auto_approve": 5}, "auto_approve: unknown key"),
        ({"auto_approve_below": "cheap"}, "auto_approve_below: 'cheap' is not an amount"),
        ({"auto_approve_below": -1}, "auto_approve_below: -1 must be an amount above 0"),
        ({"auto_approve_below": 0.001}, "more than 2 decimal places"),
        ({"thresholds": {"at_least": 1}}, "thresholds: must be a list"),
        ({"thresholds": [{"by": "sales"}]}, "thresholds[0].at_least: missing"),
        ({"thresholds": [{"at_least": 1}]}, "thresholds[0].by: missing"),
        ({"thresholds": [{"at_least": 1, "by": "boss"}]}, "thresholds[0].by: 'boss' is neither a role"),
        ({"thresholds": [{"at_least": 1, "by": "sales", "approvers": 0}]}, "thresholds[0].approvers: 0"),
        ({"thresholds": [{"at_least": 1, "by": "name:al", "approvers": 2}]}, "a step by one person"),
        ({"thresholds": [{"at_least": 1, "by": "sales"}, {"at_least": 2, "by": "sales", "who": 1}]},
         "thresholds[1].who: unknown key"),
    ],
)
def test_a_bad_policy_is_refused_naming_the_key(data, message):
    with pytest.raises(PolicyError) as refusal:
        parse_policy(data)
    assert message in str(refusal.value)


def test_the_policy_a_bill_records_reads_back_as_the_same_rules():
    policy = parse_policy({"auto_approve_below": 50.0, **FINANCE_ABOVE_10K})
    assert Policy.from_json(policy.to_json()) == policy
    assert policy.auto_approve_below == Decimal("50.00")
    assert Policy().to_json() is None


def test_a_person_the_policy_names_must_have_an_account(session, people):
    approval.check_people(parse_policy(FRED_ABOVE_10K), session)
    with pytest.raises(PolicyError, match="thresholds\\[0\\].by: no account is named 'alice'"):
        approval.check_people(parse_policy({"thresholds": [{"at_least": 1, "by": "name:alice"}]}), session)


def test_finance_s_home_lists_the_bills_waiting_for_a_finance_approval(session, db, people):
    from bot.home import home_view

    bill_id = draft(session, db, people, FINANCE_ABOVE_10K, "12,000.00", False)
    play(db, people, bill_id, [("sam", "approves", DRAFT)])
    with db() as s:
        view = home_view(session=s, user=s.get(User, people["fred"].id), today=TODAY)
    text = "\n".join(str(block) for block in view["blocks"])
    assert "Waiting for your approval: 1 bill" in text
    assert "Step 2 of 2: Finance (amount ≥ $10,000.00)" in text
    play(db, people, bill_id, [("fred", "approves", FINAL)])
    with db() as s:
        view = home_view(session=s, user=s.get(User, people["fred"].id), today=TODAY)
    assert "Waiting for your approval" not in "\n".join(str(block) for block in view["blocks"])


def test_a_named_person_s_role_change_or_deactivation_says_what_it_affects(session, db, people):
    from bot import accounts

    approval.use(parse_policy(FRED_ABOVE_10K))
    with db() as s:
        fred = s.get(User, people["fred"].id)
        assert accounts.role_change_effects(session=s, user=fred, role=Role.SALES) == [
            "the approval policy names fred for bills of 10,000.00 or more (thresholds[0] of its file):"
            " its step is then taken as Sales"
        ]
    bill_id = draft(session, db, people, FRED_ABOVE_10K, "12,000.00", False)
    with db() as s:
        accounts.deactivate(session=s, account="fred")
    with db() as s:
        assert approval.progress(s.get(Bill, bill_id)).notes() == [
            "fred's account is deactivated, so anyone in Finance approves step 2"
        ]
    play(db, people, bill_id, [("sam", "approves", DRAFT), ("fiona", "approves", FINAL)])
