"""The approval workflow (SPEC §4) end to end on the database: every scenario runs the real services."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from bot import approval, workflow
from bot.billing import generate_month
from bot.errors import (
    AlreadyDone,
    BillProcessError,
    DeliveryFailed,
    DeliveryUncertain,
    InvalidInput,
    InvalidTransition,
    NotAllowed,
    NotFound,
    SendInProgress,
    SendUncertain,
    WaitingForOther,
)
from bot.formatting import timestamp
from bot.periods import Period
from db.models import ActionType, Bill, BillAction, BillStatus, Customer, Role, utcnow
from db.models import Outbox as OutboxRow
from tests.factories import add_customer, add_user

PERIOD = Period(2026, 10)
TODAY = date(2026, 11, 3)


@pytest.fixture
def people(session):
    return {
        "fiona": add_user(session, "fiona", Role.FINANCE),
        "fred": add_user(session, "fred", Role.FINANCE),
        "carol": add_user(session, "carol", Role.CUSTOMER_SUCCESS, slack_user_id="UCAROL"),
        "oscar": add_user(session, "oscar", Role.CUSTOMER_SUCCESS),
        "sam": add_user(session, "sam", Role.SALES, slack_user_id="USAM"),
        "sid": add_user(session, "sid", Role.SALES),
    }


def make_bill(session, db, people, *, csm_then_sales=False, csm="carol", usage=1500, unit_cost="0.01") -> int:
    """A DRAFT bill for Acme's October: 500 calls over the limit, 5.00 at the default unit cost."""
    customer = add_customer(
        session,
        "Acme",
        unit_cost=unit_cost,
        require_csm_approval=csm_then_sales,
        csm=people[csm] if csm else None,
        usage={(PERIOD.year, PERIOD.month): usage},
    )
    with db() as s:
        generate_month(session=s, period=PERIOD, actor=people["fiona"], today=TODAY)
    with db() as s:
        return s.scalar(select(Bill.id).where(Bill.customer_id == customer.id))


def act(db, service, bill_id, actor, **kwargs) -> Bill:
    """Run one service the way a caller does: in a session of its own."""
    with db() as s:
        return service(session=s, bill_id=bill_id, actor=actor, **kwargs)


def load(db, bill_id) -> Bill:
    with db() as s:
        bill = s.get(Bill, bill_id)
        workflow._load_for_display(bill)
        return bill


def rows(db) -> tuple[list[tuple], list[tuple]]:
    """Every bills and bill_actions row, as plain tuples."""
    with db() as s:
        bills = [tuple(row) for row in s.execute(select(Bill.__table__).order_by(Bill.id))]
        actions = [tuple(row) for row in s.execute(select(BillAction.__table__).order_by(BillAction.id))]
    return bills, actions


def kinds(bill: Bill) -> list[str]:
    return [action.action.value for action in bill.actions]


# --- approving ---------------------------------------------------------------------------------------


def test_one_step_approval_makes_the_bill_final(db, session, people):
    bill_id = make_bill(session, db, people)
    before = load(db, bill_id)

    bill = act(db, workflow.approve, bill_id, people["oscar"])

    assert bill.status is BillStatus.FINAL
    given = bill.actions[-1]
    assert (given.action, given.stakeholder_id) == (ActionType.APPROVE, people["oscar"].id)
    assert (given.status_before, given.status_after) == (BillStatus.DRAFT, BillStatus.FINAL)
    assert given.comment is None
    assert bill.updated_at > before.updated_at
    assert load(db, bill_id).status is BillStatus.FINAL
    assert approval.progress(bill).waiting_for is None


@pytest.mark.parametrize("approver", ["carol", "oscar", "sam"])
def test_one_step_any_customer_success_or_sales_user_approves(db, session, people, approver):
    bill_id = make_bill(session, db, people)
    assert act(db, workflow.approve, bill_id, people[approver]).status is BillStatus.FINAL


def test_csm_then_sales_approval_needs_the_csm_then_sales(db, session, people):
    bill_id = make_bill(session, db, people, csm_then_sales=True)
    state = approval.progress(load(db, bill_id))
    assert state.numbered and [step.done for step in state.steps] == [False, False]
    assert state.waiting_for.person.name == "carol"
    assert state.waiting_for.label == "carol (the customer's CSM)"

    bill = act(db, workflow.approve, bill_id, people["carol"])
    assert bill.status is BillStatus.DRAFT
    assert bill.actions[-1].comment == "step 1 of 2: the customer's CSM"
    state = approval.progress(bill)
    assert state.steps[0].approved_by[0].name == "carol"
    assert state.steps[0].approvals[0].created_at == bill.actions[-1].created_at
    assert state.waiting_for.number == 2 and state.waiting_for.label == "Sales (after the customer's CSM)"

    bill = act(db, workflow.approve, bill_id, people["sam"])
    assert bill.status is BillStatus.FINAL
    assert bill.actions[-1].comment == "step 2 of 2: after the customer's CSM"
    assert (bill.actions[-1].status_before, bill.actions[-1].status_after) == (BillStatus.DRAFT, BillStatus.FINAL)
    state = approval.progress(bill)
    assert [step.approved_by[0].name for step in state.steps] == ["carol", "sam"]
    assert state.waiting_for is None


def test_sales_cannot_approve_before_the_csm_and_is_told_whom_the_bill_waits_for(db, session, people):
    bill_id = make_bill(session, db, people, csm_then_sales=True)
    before = rows(db)
    with pytest.raises(WaitingForOther) as refusal:
        act(db, workflow.approve, bill_id, people["sam"])
    assert str(refusal.value) == f"Bill #{bill_id} is waiting for carol (the customer's CSM) to approve first"
    assert rows(db) == before


def test_csm_then_sales_without_a_csm_takes_any_customer_success_user_first(db, session, people):
    bill_id = make_bill(session, db, people, csm_then_sales=True, csm=None)
    assert approval.progress(load(db, bill_id)).waiting_for.label == "Customer Success (the customer has no CSM)"
    with pytest.raises(WaitingForOther, match=r"waiting for Customer Success \(the customer has no CSM\) to approve first"):
        act(db, workflow.approve, bill_id, people["sam"])

    act(db, workflow.approve, bill_id, people["oscar"])
    with pytest.raises(AlreadyDone, match="already approved by oscar at .*; it is waiting for Sales now"):
        act(db, workflow.approve, bill_id, people["carol"])
    assert act(db, workflow.approve, bill_id, people["sid"]).status is BillStatus.FINAL


def test_approving_a_step_twice_says_who_approved_it_and_when(db, session, people):
    bill_id = make_bill(session, db, people, csm_then_sales=True)
    first = act(db, workflow.approve, bill_id, people["carol"]).actions[-1]
    with pytest.raises(AlreadyDone) as refusal:
        act(db, workflow.approve, bill_id, people["carol"])
    error = refusal.value
    stamp = f"{first.created_at:%Y-%m-%d %H:%M} UTC"
    assert str(error) == f"Bill #{bill_id} was already approved by carol at {stamp}; it is waiting for Sales now"
    assert (error.bill_id, error.action, error.at) == (bill_id, ActionType.APPROVE, first.created_at)
    assert (error.user_id, error.user_name, error.slack_user_id) == (people["carol"].id, "carol", "UCAROL")


def test_approving_a_final_bill_names_the_approval(db, session, people):
    bill_id = make_bill(session, db, people)
    approval = act(db, workflow.approve, bill_id, people["sam"]).actions[-1]
    for late in ("carol", "sid"):
        with pytest.raises(AlreadyDone) as refusal:
            act(db, workflow.approve, bill_id, people[late])
        assert str(refusal.value).startswith(f"Bill #{bill_id} was already approved by sam at ")
        assert refusal.value.action is ActionType.APPROVE
        assert (refusal.value.slack_user_id, refusal.value.at) == ("USAM", approval.created_at)


def test_unknown_bill_and_unknown_account(db, session, people):
    with pytest.raises(NotFound, match="Bill #999 does not exist"):
        act(db, workflow.approve, 999, people["sam"])
    bill_id = make_bill(session, db, people)
    ghost = add_user(session, "ghost", Role.SALES)
    ghost_id = ghost.id
    session.delete(ghost)
    session.commit()
    before = rows(db)
    with pytest.raises(NotFound, match=f"Account #{ghost_id} does not exist"):
        act(db, workflow.approve, bill_id, ghost)
    assert rows(db) == before
    with pytest.raises(InvalidInput):
        act(db, workflow.approve, "12", people["sam"])


def test_services_read_fresh_state_even_through_a_session_holding_stale_objects(db, session, people):
    bill_id = make_bill(session, db, people)
    with db() as stale:
        bill = stale.get(Bill, bill_id)
        assert kinds(bill) == ["DRAFT"]
        stale.commit()
        act(db, workflow.reject, bill_id, people["sam"], reason="waived")  # another session changes it
        with pytest.raises(AlreadyDone, match="already rejected by sam"):
            workflow.approve(session=stale, bill_id=bill_id, actor=people["carol"])


# --- rejecting ---------------------------------------------------------------------------------------


def test_reject_writes_the_bill_off_with_the_reason(db, session, people):
    bill_id = make_bill(session, db, people, csm_then_sales=True)
    act(db, workflow.approve, bill_id, people["carol"])
    bill = act(db, workflow.reject, bill_id, people["sam"], reason="  Outage retries, waived.  ")
    assert bill.status is BillStatus.WRITEOFF
    rejection = bill.actions[-1]
    assert (rejection.action, rejection.stakeholder_id) == (ActionType.REJECT, people["sam"].id)
    assert (rejection.status_before, rejection.status_after) == (BillStatus.DRAFT, BillStatus.WRITEOFF)
    assert rejection.comment == "Outage retries, waived."


@pytest.mark.parametrize("reason", ["", "   \n\t", None, "x" * 2001])
def test_reject_needs_a_reason_of_1_to_2000_characters(db, session, people, reason):
    bill_id = make_bill(session, db, people)
    before = rows(db)
    with pytest.raises(InvalidInput, match="reason"):
        act(db, workflow.reject, bill_id, people["sam"], reason=reason)
    assert rows(db) == before


def test_reject_accepts_exactly_2000_characters_and_one(db, session, people):
    bill_id = make_bill(session, db, people)
    bill = act(db, workflow.reject, bill_id, people["sam"], reason=" " + "é" * 2000 + " ")
    assert bill.actions[-1].comment == "é" * 2000
    act(db, workflow.undo, bill_id, people["sam"])
    assert act(db, workflow.reject, bill_id, people["sam"], reason="x").actions[-1].comment == "x"


def test_reject_then_undo_returns_to_draft_with_its_approval_progress(db, session, people):
    bill_id = make_bill(session, db, people, csm_then_sales=True)
    act(db, workflow.approve, bill_id, people["carol"])
    rejection = act(db, workflow.reject, bill_id, people["carol"], reason="duplicate").actions[-1]

    bill = act(db, workflow.undo, bill_id, people["carol"], reason="wrong bill")

    assert bill.status is BillStatus.DRAFT
    entry = bill.actions[-1]
    assert (entry.action, entry.stakeholder_id, entry.undone_action_id) == (
        ActionType.UNDO, people["carol"].id, rejection.id
    )
    assert (entry.status_before, entry.status_after, entry.comment) == (
        BillStatus.WRITEOFF, BillStatus.DRAFT, "wrong bill"
    )
    assert (entry.unit_cost_before, entry.unit_cost_after) == (None, None)
    state = approval.progress(bill)
    assert state.steps[0].approved_by[0].name == "carol" and state.waiting_for.label == "Sales (after the customer's CSM)"
    assert act(db, workflow.approve, bill_id, people["sam"]).status is BillStatus.FINAL


# --- editing ------------------------------------------------------------------------------------------


def test_edit_changes_the_unit_cost_and_recomputes_the_amount(db, session, people):
    bill_id = make_bill(session, db, people)
    bill = act(db, workflow.edit, bill_id, people["fiona"], unit_cost="0.012")
    assert (bill.overage_unit_cost, bill.overage_amount) == (Decimal("0.012000"), Decimal("6.00"))
    assert bill.status is BillStatus.DRAFT
    entry = bill.actions[-1]
    assert (entry.action, entry.stakeholder_id) == (ActionType.EDIT, people["fiona"].id)
    assert (entry.status_before, entry.status_after) == (BillStatus.DRAFT, BillStatus.DRAFT)
    assert (entry.unit_cost_before, entry.unit_cost_after) == (Decimal("0.010000"), Decimal("0.012000"))
    assert entry.comment == "unit cost 0.010000 → 0.012000, amount $5.00 → $6.00"
    stored = load(db, bill_id)
    assert (stored.overage_unit_cost, stored.overage_amount) == (Decimal("0.012"), Decimal("6.00"))


def test_edit_rounds_the_amount_half_up_to_the_cent(db, session, people):
    bill_id = make_bill(session, db, people, usage=1001)  # one call over the limit
    assert act(db, workflow.edit, bill_id, people["fiona"], unit_cost="0.005").overage_amount == Decimal("0.01")
    assert act(db, workflow.edit, bill_id, people["fiona"], unit_cost=Decimal("1.234567")).overage_amount == Decimal(
        "1.23"
    )


@pytest.mark.parametrize(
    ("unit_cost", "message"),
    [
        (0.012, "not a floating-point number"),
        ("-0.01", "cannot be negative"),
        (Decimal("-0.01"), "cannot be negative"),
        ("0.0000001", "more than 6 decimal places"),
        (Decimal("0.0100001"), "more than 6 decimal places"),
        ("abc", "must be a decimal number such as 0.0125"),
        ("1e-3", "must be a decimal number such as 0.0125"),
        ("", "must be a decimal number such as 0.0125"),
        (Decimal("NaN"), "finite"),
        ("1000000000000", "too large"),
        (Decimal("1E+30"), "too large"),
        (Decimal("0.01000000000000000000000000001"), "more than 6 decimal places"),
        ("-0", "cannot be negative"),
        (Decimal("-0"), "makes bill #.*'s amount \\$0.00"),
        ("0.01.2", "must be a decimal number such as 0.0125"),
        ("0.01", "unit cost is already 0.010000"),
        (Decimal("0.0100"), "unit cost is already 0.010000"),
        ("0.000001", "makes bill #.*'s amount \\$0.00"),
        ("0", "makes bill #.*'s amount \\$0.00"),
    ],
)
def test_edit_refuses_bad_unit_costs_and_changes_nothing(db, session, people, unit_cost, message):
    bill_id = make_bill(session, db, people)
    before = rows(db)
    with pytest.raises(InvalidInput, match=message):
        act(db, workflow.edit, bill_id, people["fiona"], unit_cost=unit_cost)
    assert rows(db) == before


def test_edit_accepts_a_whole_number_and_plain_decimals(db, session, people):
    bill_id = make_bill(session, db, people)
    assert act(db, workflow.edit, bill_id, people["fiona"], unit_cost=" 2 ").overage_amount == Decimal("1000.00")
    assert act(db, workflow.edit, bill_id, people["fiona"], unit_cost=".5").overage_amount == Decimal("250.00")


def test_an_edit_makes_earlier_approvals_stop_counting(db, session, people):
    bill_id = make_bill(session, db, people, csm_then_sales=True)
    act(db, workflow.approve, bill_id, people["carol"])
    bill = act(db, workflow.edit, bill_id, people["fiona"], unit_cost="0.02")

    state = approval.progress(bill)
    assert not state.done_steps and state.waiting_for.person.name == "carol"
    with pytest.raises(WaitingForOther, match="waiting for carol"):
        act(db, workflow.approve, bill_id, people["sam"])
    assert act(db, workflow.approve, bill_id, people["carol"]).status is BillStatus.DRAFT
    assert act(db, workflow.approve, bill_id, people["sam"]).status is BillStatus.FINAL


def test_an_edit_of_a_one_step_bill_needs_a_fresh_approval(db, session, people):
    bill_id = make_bill(session, db, people)
    act(db, workflow.edit, bill_id, people["fiona"], unit_cost="0.02")
    bill = act(db, workflow.approve, bill_id, people["sam"])
    assert bill.status is BillStatus.FINAL and bill.overage_amount == Decimal("10.00")


@pytest.mark.parametrize("status", ["FINAL", "WRITEOFF"])
def test_edit_is_for_drafts_only(db, session, people, status):
    bill_id = make_bill(session, db, people)
    if status == "FINAL":
        act(db, workflow.approve, bill_id, people["sam"])
    else:
        act(db, workflow.reject, bill_id, people["sam"], reason="no")
    with pytest.raises(InvalidTransition, match=f"is {status}; only a DRAFT bill's unit cost can be edited"):
        act(db, workflow.edit, bill_id, people["fiona"], unit_cost="0.02")


# --- sending -------------------------------------------------------------------------------------------


class Outbox:
    def __init__(self, failure: BillProcessError | None = None):
        self.sent: list[tuple[int, str, BillStatus]] = []
        self.numbers: list[str | None] = []  # the invoice number of each email
        self.failure = failure

    def __call__(self, bill: Bill) -> None:
        if self.failure:
            raise self.failure
        self.sent.append((bill.id, bill.customer.billing_email, bill.status))
        self.numbers.append(bill.invoice_number)


def test_send_delivers_then_marks_the_bill_sent(db, session, people):
    bill_id = make_bill(session, db, people)
    act(db, workflow.approve, bill_id, people["sam"])
    outbox = Outbox()
    bill = act(db, workflow.send, bill_id, people["fiona"], deliver=outbox)
    assert outbox.sent == [(bill_id, "billing@acme.example", BillStatus.FINAL)]
    assert bill.status is BillStatus.SENT
    entry = bill.actions[-1]
    assert (entry.action, entry.stakeholder_id, entry.status_before, entry.status_after) == (
        ActionType.SEND, people["fiona"].id, BillStatus.FINAL, BillStatus.SENT
    )
    assert entry.comment == f"invoice {bill.invoice_number} emailed to billing@acme.example"

    with pytest.raises(AlreadyDone, match=f"Bill #{bill_id} was already sent by fiona at ") as refusal:
        act(db, workflow.send, bill_id, people["fred"], deliver=outbox)
    assert refusal.value.action is ActionType.SEND and refusal.value.user_name == "fiona"
    assert len(outbox.sent) == 1


def test_a_failed_delivery_leaves_the_bill_final_and_unrecorded(db, session, people):
    bill_id = make_bill(session, db, people)
    act(db, workflow.approve, bill_id, people["sam"])
    before = rows(db)
    failure = DeliveryFailed("the mail server refused the message")
    with pytest.raises(DeliveryFailed) as raised:
        act(db, workflow.send, bill_id, people["fiona"], deliver=Outbox(failure))
    assert raised.value is failure
    bills, actions = rows(db)
    assert actions == before[1]
    # The invoice it was sent with stays with the bill, for the retry: no number is skipped or given twice.
    bill = load(db, bill_id)
    assert bill.status is BillStatus.FINAL and bill.sending_started_at is None
    assert bill.invoice_number == f"BP-{bill.issue_date.year}-000001"
    outbox = Outbox()
    act(db, workflow.send, bill_id, people["fiona"], deliver=outbox)
    assert outbox.numbers == [bill.invoice_number]


def test_send_is_for_final_bills(db, session, people):
    bill_id = make_bill(session, db, people, csm_then_sales=True)
    outbox = Outbox()
    with pytest.raises(InvalidTransition, match="still a DRAFT, waiting for carol .* only a FINAL bill can be sent"):
        act(db, workflow.send, bill_id, people["fiona"], deliver=outbox)
    act(db, workflow.reject, bill_id, people["sam"], reason="waived")
    with pytest.raises(InvalidTransition, match="was rejected by sam at .* only a FINAL bill can be sent"):
        act(db, workflow.send, bill_id, people["fiona"], deliver=outbox)
    assert outbox.sent == []


def queued(db) -> list[tuple[str, int | None]]:
    """What the outbox holds for Slack: (kind, bill), oldest first."""
    with db() as s:
        return [(row.kind.value, row.bill_id) for row in s.scalars(select(OutboxRow).order_by(OutboxRow.id))]


def test_a_send_records_itself_before_the_email_and_shows_each_change_of_that_record(db, session, people):
    bill_id = make_bill(session, db, people)
    act(db, workflow.approve, bill_id, people["sam"])
    seen = []

    def deliver(bill: Bill) -> None:
        with db() as s:  # another session, while the email goes out: the send is recorded and nothing is locked
            stored = s.get(Bill, bill_id)
            seen.append((stored.sending_by_id, stored.sending_started_at is not None))
            s.get(Customer, bill.customer_id).billing_address = "2 Side Street"
            s.commit()
        raise DeliveryFailed("the mail server refused the message")

    before = queued(db)
    with pytest.raises(DeliveryFailed):
        act(db, workflow.send, bill_id, people["fiona"], deliver=deliver)

    assert seen == [(people["fiona"].id, True)]
    assert load(db, bill_id).sending_started_at is None
    # Marked, then cleared: each time the bill's message and the Homes are brought up to date.
    assert queued(db)[len(before):] == [("bill_message", bill_id), ("homes", None)] * 2


def test_while_a_send_is_on_its_way_no_other_send_starts_not_even_on_purpose(db, session, people):
    bill_id = make_bill(session, db, people)
    act(db, workflow.approve, bill_id, people["sam"])
    refusals = []

    def deliver(bill: Bill) -> None:
        for again in (False, True):
            with pytest.raises(SendInProgress) as refused:
                act(db, workflow.send, bill_id, people["fred"], deliver=Outbox(), again=again)
            refusals.append(refused.value)

    bill = act(db, workflow.send, bill_id, people["fiona"], deliver=deliver)

    assert bill.status is BillStatus.SENT and bill.sending_started_at is None
    assert [refusal.user_name for refusal in refusals] == ["fiona", "fiona"]
    assert all(f"Bill #{bill_id} is being sent by fiona since " in str(refusal) for refusal in refusals)
    assert kinds(bill).count("SEND") == 1


def test_an_unknown_outcome_keeps_the_bill_final_refuses_a_plain_send_and_undo_and_allows_again(db, session, people):
    bill_id = make_bill(session, db, people)
    act(db, workflow.approve, bill_id, people["sam"])

    def unknown(bill: Bill) -> None:
        raise DeliveryUncertain("the mail server did not answer after the email was handed over")

    with pytest.raises(SendUncertain) as caught:
        act(db, workflow.send, bill_id, people["fiona"], deliver=unknown)
    assert caught.value.bill_id == bill_id
    assert "(the mail server did not answer after the email was handed over)" in str(caught.value)
    bill = load(db, bill_id)
    assert bill.status is BillStatus.FINAL and kinds(bill) == ["DRAFT", "APPROVE"]
    assert workflow.available_actions(bill, people["fiona"]) == set()
    assert workflow.undo_target(bill) is None

    outbox = Outbox()
    with pytest.raises(SendUncertain, match="send it again on purpose"):
        act(db, workflow.send, bill_id, people["fred"], deliver=outbox)
    with pytest.raises(InvalidTransition, match=f"Bill #{bill_id} is being emailed, or may have been"):
        act(db, workflow.undo, bill_id, people["fiona"])
    assert outbox.sent == []

    bill = act(db, workflow.send, bill_id, people["fred"], deliver=outbox, again=True)
    assert outbox.sent == [(bill_id, "billing@acme.example", BillStatus.FINAL)]
    assert bill.status is BillStatus.SENT and bill.actions[-1].stakeholder_id == people["fred"].id
    assert (bill.sending_started_at, bill.sending_by_id, bill.sending_error) == (None, None, None)


# --- marking as sent a bill whose interrupted email reached the customer -------------------------------


def interrupt_send(db, bill_id, by, *, minutes_ago: float):
    """Leave the bill as a send that started `minutes_ago` and never finished leaves it (the process died)."""
    with db() as s, s.begin():
        bill = s.get(Bill, bill_id)
        bill.sending_started_at, bill.sending_by_id = utcnow() - timedelta(minutes=minutes_ago), by.id
        return bill.sending_started_at


def test_marking_an_uncertain_send_as_sent_records_the_send_without_an_email(db, session, people):
    bill_id = make_bill(session, db, people)
    act(db, workflow.approve, bill_id, people["sam"])

    def unknown(bill: Bill) -> None:
        raise DeliveryUncertain("the mail server did not answer after the email was handed over")

    with pytest.raises(SendUncertain, match=f"`/bill send {bill_id} delivered`"):
        act(db, workflow.send, bill_id, people["fiona"], deliver=unknown)
    started = load(db, bill_id).sending_started_at
    before = queued(db)

    bill = act(db, workflow.mark_delivered, bill_id, people["fred"])

    assert bill.status is BillStatus.SENT and kinds(bill) == ["DRAFT", "APPROVE", "SEND"]
    send = bill.actions[-1]
    assert (send.stakeholder_id, send.status_before, send.status_after) == (
        people["fred"].id, BillStatus.FINAL, BillStatus.SENT
    )
    assert send.comment == (
        "confirmed delivered to billing@acme.example without emailing it again; the interrupted send was started"
        f" by fiona at {timestamp(started)} (the mail server did not answer after the email was handed over)"
    )
    assert (bill.sending_started_at, bill.sending_by_id, bill.sending_error) == (None, None, None)
    # Committed with the SEND: the bill's message, its thread reply and the Homes, once each.
    assert queued(db)[len(before):] == [("bill_message", bill_id), ("thread_reply", bill_id), ("homes", None)]
    with db() as s:
        reply = s.scalars(select(OutboxRow).order_by(OutboxRow.id.desc()).limit(2)).all()[1]
        assert reply.payload == {"action_id": send.id}

    outbox = Outbox()
    for again in (False, True):
        with pytest.raises(AlreadyDone, match=f"Bill #{bill_id} was already sent by fred at "):
            act(db, workflow.send, bill_id, people["fiona"], deliver=outbox, again=again)
    with pytest.raises(AlreadyDone, match=f"Bill #{bill_id} was already sent by fred at "):
        act(db, workflow.mark_delivered, bill_id, people["fiona"])
    assert outbox.sent == []
    with pytest.raises(InvalidTransition, match="a sent bill cannot be undone"):
        act(db, workflow.undo, bill_id, people["fiona"])


def test_a_send_interrupted_by_a_dying_process_is_named_in_the_record(db, session, people):
    bill_id = make_bill(session, db, people)
    act(db, workflow.approve, bill_id, people["sam"])
    started = interrupt_send(db, bill_id, people["fiona"], minutes_ago=5)

    bill = act(db, workflow.mark_delivered, bill_id, people["fiona"])

    assert bill.status is BillStatus.SENT
    assert bill.actions[-1].comment == (
        "confirmed delivered to billing@acme.example without emailing it again; the interrupted send was started"
        f" by fiona at {timestamp(started)}"
    )


def test_marking_as_sent_is_refused_unless_finance_marks_a_final_bill_whose_send_is_uncertain(db, session, people):
    bill_id = make_bill(session, db, people)

    def refused(actor, error, message):
        before = rows(db), queued(db)
        with pytest.raises(error) as caught:
            act(db, workflow.mark_delivered, bill_id, people[actor])
        assert str(caught.value) == message
        assert (rows(db), queued(db)) == before

    refused("fiona", InvalidTransition,
            f"Bill #{bill_id} is DRAFT; only a FINAL bill whose send was interrupted can be marked as sent")
    act(db, workflow.approve, bill_id, people["sam"])
    refused("fiona", InvalidTransition, f"Bill #{bill_id} has no interrupted send to confirm")
    started = interrupt_send(db, bill_id, people["fiona"], minutes_ago=0)
    refused("fred", SendInProgress,
            f"Bill #{bill_id} is being sent by fiona since {timestamp(started)}; look at it again in a minute")
    interrupt_send(db, bill_id, people["fiona"], minutes_ago=5)
    refused("sam", NotAllowed, "Only Finance can mark a bill as sent")
    refused("carol", NotAllowed, "Only Finance can mark a bill as sent")
    assert load(db, bill_id).status is BillStatus.FINAL


def test_a_written_off_bill_cannot_be_marked_as_sent(db, session, people):
    bill_id = make_bill(session, db, people)
    act(db, workflow.reject, bill_id, people["sam"], reason="waived")

    with pytest.raises(InvalidTransition, match=f"Bill #{bill_id} is WRITEOFF; only a FINAL bill whose send"):
        act(db, workflow.mark_delivered, bill_id, people["fiona"])


# --- undoing -------------------------------------------------------------------------------------------


def test_undoing_an_edit_restores_cost_amount_and_approval_progress(db, session, people):
    bill_id = make_bill(session, db, people, csm_then_sales=True)
    act(db, workflow.approve, bill_id, people["carol"])
    edit = act(db, workflow.edit, bill_id, people["fiona"], unit_cost="0.0133").actions[-1]
    assert load(db, bill_id).overage_amount == Decimal("6.65")

    bill = act(db, workflow.undo, bill_id, people["fred"])

    assert (bill.status, bill.overage_unit_cost, bill.overage_amount) == (
        BillStatus.DRAFT, Decimal("0.010000"), Decimal("5.00")
    )
    entry = bill.actions[-1]
    assert (entry.undone_action_id, entry.comment) == (edit.id, None)
    assert (entry.unit_cost_before, entry.unit_cost_after) == (Decimal("0.013300"), Decimal("0.010000"))
    state = approval.progress(bill)
    assert state.steps[0].approved_by[0].name == "carol" and state.waiting_for.label == "Sales (after the customer's CSM)"
    assert act(db, workflow.approve, bill_id, people["sam"]).status is BillStatus.FINAL


def test_repeated_undo_walks_back_to_the_draft(db, session, people):
    bill_id = make_bill(session, db, people, csm_then_sales=True)
    states = []

    def remember():
        bill = load(db, bill_id)
        states.append(
            (bill.status, bill.overage_unit_cost, bill.overage_amount,
             [step.approvals[0].id if step.approvals else None for step in approval.progress(bill).steps])
        )

    remember()
    act(db, workflow.approve, bill_id, people["carol"])
    remember()
    act(db, workflow.edit, bill_id, people["fiona"], unit_cost="0.02")
    remember()
    act(db, workflow.approve, bill_id, people["carol"])
    remember()
    act(db, workflow.edit, bill_id, people["fiona"], unit_cost="0.03")
    remember()
    act(db, workflow.approve, bill_id, people["carol"])
    remember()
    act(db, workflow.approve, bill_id, people["sam"])
    assert load(db, bill_id).status is BillStatus.FINAL

    for expected in reversed(states):
        bill = act(db, workflow.undo, bill_id, people["fiona"])
        assert (
            bill.status, bill.overage_unit_cost, bill.overage_amount,
            [step.approvals[0].id if step.approvals else None for step in approval.progress(bill).steps],
        ) == expected

    assert kinds(load(db, bill_id)) == ["DRAFT", "APPROVE", "EDIT", "APPROVE", "EDIT", "APPROVE", "APPROVE"] + [
        "UNDO"
    ] * 6
    before = rows(db)
    with pytest.raises(InvalidTransition, match=f"Bill #{bill_id} has nothing to undo"):
        act(db, workflow.undo, bill_id, people["fiona"])
    assert rows(db) == before


def test_undo_then_act_again_then_undo_reverts_the_new_action_only(db, session, people):
    bill_id = make_bill(session, db, people)
    act(db, workflow.approve, bill_id, people["sam"])
    act(db, workflow.undo, bill_id, people["sam"])
    act(db, workflow.reject, bill_id, people["carol"], reason="waived")
    bill = act(db, workflow.undo, bill_id, people["carol"])
    assert bill.status is BillStatus.DRAFT
    assert [a.undone_action_id for a in bill.actions if a.action is ActionType.UNDO] == [
        bill.actions[1].id, bill.actions[3].id
    ]
    with pytest.raises(InvalidTransition, match="nothing to undo"):
        act(db, workflow.undo, bill_id, people["fiona"])


def test_a_sent_bill_cannot_be_undone(db, session, people):
    bill_id = make_bill(session, db, people)
    act(db, workflow.approve, bill_id, people["sam"])
    act(db, workflow.send, bill_id, people["fiona"], deliver=Outbox())
    before = rows(db)
    for who in ("fiona", "sam"):
        with pytest.raises(AlreadyDone, match="already sent by fiona at .*; a sent bill cannot be undone") as refusal:
            act(db, workflow.undo, bill_id, people[who])
        assert refusal.value.action is ActionType.SEND
    assert rows(db) == before


def test_only_the_user_who_acted_or_finance_may_undo(db, session, people):
    bill_id = make_bill(session, db, people)
    approval = act(db, workflow.approve, bill_id, people["sam"]).actions[-1]
    before = rows(db)
    for other in ("sid", "carol", "oscar"):
        with pytest.raises(NotAllowed, match=f"Only sam or Finance can undo sam's approval of bill #{bill_id}"):
            act(db, workflow.undo, bill_id, people[other])
    assert rows(db) == before

    assert act(db, workflow.undo, bill_id, people["fred"]).actions[-1].undone_action_id == approval.id
    act(db, workflow.edit, bill_id, people["fiona"], unit_cost="0.02")
    with pytest.raises(NotAllowed, match="Only fiona or Finance can undo fiona's edit"):
        act(db, workflow.undo, bill_id, people["sam"])
    assert act(db, workflow.undo, bill_id, people["fred"]).overage_amount == Decimal("5.00")


def test_undo_reason_is_optional_and_limited(db, session, people):
    bill_id = make_bill(session, db, people)
    act(db, workflow.approve, bill_id, people["sam"])
    with pytest.raises(InvalidInput, match="at most 2000"):
        act(db, workflow.undo, bill_id, people["sam"], reason="x" * 2001)
    assert act(db, workflow.undo, bill_id, people["sam"], reason="  ").actions[-1].comment is None


def test_undo_of_a_named_action_refuses_once_that_action_is_gone(db, session, people):
    bill_id = make_bill(session, db, people, csm_then_sales=True)
    carols = act(db, workflow.approve, bill_id, people["carol"]).actions[-1]
    sams = act(db, workflow.approve, bill_id, people["sam"]).actions[-1]
    with pytest.raises(AlreadyDone, match="has changed since: approved by sam"):
        act(db, workflow.undo, bill_id, people["carol"], action_id=carols.id)

    act(db, workflow.undo, bill_id, people["sam"], action_id=sams.id)
    before = rows(db)
    with pytest.raises(AlreadyDone, match="sam's approval of bill #.* was already undone by sam") as refusal:
        act(db, workflow.undo, bill_id, people["fiona"], action_id=sams.id)
    assert refusal.value.action is ActionType.UNDO
    with pytest.raises(NotFound):
        act(db, workflow.undo, bill_id, people["fiona"], action_id=sams.id + 1000)
    with pytest.raises(InvalidTransition, match="Only approvals, rejections, edits and usage corrections can be undone"):
        act(db, workflow.undo, bill_id, people["fiona"], action_id=load(db, bill_id).actions[0].id)
    assert rows(db) == before
    assert act(db, workflow.undo, bill_id, people["carol"], action_id=carols.id).status is BillStatus.DRAFT


# --- acting on the bill as it was seen -------------------------------------------------------------------


def test_approving_a_bill_that_was_edited_since_it_was_seen_is_refused_and_changes_nothing(db, session, people):
    bill_id = make_bill(session, db, people)
    seen = workflow.latest_change(load(db, bill_id)).id  # the DRAFT action
    edit = act(db, workflow.edit, bill_id, people["fiona"], unit_cost="0.02").actions[-1]
    before = rows(db)

    with pytest.raises(AlreadyDone) as refusal:
        act(db, workflow.approve, bill_id, people["sam"], seen_action_id=seen)

    assert str(refusal.value) == (
        f"Bill #{bill_id} changed since you saw it: edited by fiona at {edit.created_at:%Y-%m-%d %H:%M} UTC."
        " Look at it again before approving."
    )
    assert (refusal.value.bill_id, refusal.value.action, refusal.value.user_name) == (
        bill_id, ActionType.EDIT, "fiona"
    )
    assert rows(db) == before
    bill = act(db, workflow.approve, bill_id, people["sam"], seen_action_id=edit.id)
    assert bill.status is BillStatus.FINAL
    assert kinds(bill) == ["DRAFT", "EDIT", "APPROVE"]


def test_reject_and_send_check_the_version_seen_too_and_an_undone_change_restores_it(db, session, people):
    bill_id = make_bill(session, db, people)
    draft = workflow.latest_change(load(db, bill_id)).id
    edit = act(db, workflow.edit, bill_id, people["fiona"], unit_cost="0.02").actions[-1]
    with pytest.raises(AlreadyDone, match="changed since you saw it: edited by fiona .* before rejecting"):
        act(db, workflow.reject, bill_id, people["sam"], reason="waived", seen_action_id=draft)

    act(db, workflow.undo, bill_id, people["fred"], action_id=edit.id)
    with pytest.raises(AlreadyDone, match="changed since you saw it: fiona's edit undone by fred at") as refusal:
        act(db, workflow.approve, bill_id, people["sam"], seen_action_id=edit.id)
    assert refusal.value.user_name == "fred"
    approval = act(db, workflow.approve, bill_id, people["sam"], seen_action_id=draft).actions[-1]

    outbox = Outbox()
    with pytest.raises(AlreadyDone, match="changed since you saw it: approved by sam .* before sending"):
        act(db, workflow.send, bill_id, people["fiona"], deliver=outbox, seen_action_id=draft)
    assert outbox.sent == []  # refused before anything was emailed
    sent = act(db, workflow.send, bill_id, people["fiona"], deliver=outbox, seen_action_id=approval.id)
    assert sent.status is BillStatus.SENT and len(outbox.sent) == 1


# --- the audit trail -----------------------------------------------------------------------------------


def test_every_change_appends_exactly_one_action_and_never_touches_earlier_ones(db, session, people):
    bill_id = make_bill(session, db, people, csm_then_sales=True)
    steps = [
        (workflow.approve, "carol", {}),
        (workflow.edit, "fiona", {"unit_cost": "0.015"}),
        (workflow.approve, "carol", {}),
        (workflow.reject, "sam", {"reason": "too early"}),
        (workflow.undo, "sam", {"reason": "spoke too soon"}),
        (workflow.undo, "fiona", {}),
        (workflow.approve, "carol", {}),
        (workflow.approve, "sam", {}),
        (workflow.send, "fiona", {"deliver": Outbox()}),
    ]
    for service, who, kwargs in steps:
        bills_before, before = rows(db)
        bill = act(db, service, bill_id, people[who], **kwargs)
        bills_after, after = rows(db)
        assert after[: len(before)] == before
        assert len(after) == len(before) + 1
        assert bills_after != bills_before
        newest = bill.actions[-1]
        assert (newest.stakeholder_id, newest.status_after) == (people[who].id, bill.status)
        assert newest.status_before == workflow.history(load(db, bill_id))[-2].status_after
    assert kinds(load(db, bill_id)) == [
        "DRAFT", "APPROVE", "EDIT", "APPROVE", "REJECT", "UNDO", "UNDO", "APPROVE", "APPROVE", "SEND"
    ]


def test_the_returned_bill_can_be_read_after_its_session_closes(db, session, people):
    bill_id = make_bill(session, db, people, csm_then_sales=True)
    bill = act(db, workflow.approve, bill_id, people["carol"])
    assert approval.progress(bill).waiting_for.label == "Sales (after the customer's CSM)"
    assert [action.stakeholder.name for action in workflow.history(bill)] == ["fiona", "carol"]
    assert workflow.available_actions(bill, people["sam"]) == {ActionType.APPROVE, ActionType.REJECT}


# --- what each person may do now (buttons) -------------------------------------------------------------


def test_available_actions_follow_the_bill_through_its_life(db, session, people):
    bill_id = make_bill(session, db, people, csm_then_sales=True)
    A, R, E, S, U = (ActionType.APPROVE, ActionType.REJECT, ActionType.EDIT, ActionType.SEND, ActionType.UNDO)

    def now():
        bill = load(db, bill_id)
        return {name: workflow.available_actions(bill, user) for name, user in people.items()}

    assert now() == {
        "fiona": {E}, "fred": {E}, "carol": {A, R}, "oscar": set(), "sam": {R}, "sid": {R},
    }
    act(db, workflow.approve, bill_id, people["carol"])
    assert now() == {
        "fiona": {E, U}, "fred": {E, U}, "carol": {R, U}, "oscar": set(), "sam": {A, R}, "sid": {A, R},
    }
    act(db, workflow.approve, bill_id, people["sam"])
    assert now() == {"fiona": {S, U}, "fred": {S, U}, "carol": set(), "oscar": set(), "sam": {U}, "sid": set()}
    act(db, workflow.send, bill_id, people["fiona"], deliver=Outbox())
    # A sent bill's invoice can only be emailed again or credited, by Finance.
    both = {ActionType.RESEND, ActionType.CREDIT}
    assert now() == {"fiona": both, "fred": both, "carol": set(), "oscar": set(), "sam": set(), "sid": set()}
    assert workflow.undo_target(load(db, bill_id)) is None


# --- deactivated accounts ------------------------------------------------------------------------------


def test_an_account_deactivated_after_it_was_loaded_cannot_act(db, session, people):
    from bot import accounts

    bill_id = make_bill(session, db, people)
    sam = people["sam"]  # loaded before the deactivation, as a click recorded earlier has it
    with db() as s:
        accounts.deactivate(session=s, account="sam")

    with pytest.raises(NotAllowed) as refused:
        act(db, workflow.approve, bill_id, sam)

    assert str(refused.value) == (
        "sam's account is deactivated; an operator can reactivate it (`billprocess users reactivate sam`)")
    assert load(db, bill_id).status is BillStatus.DRAFT and len(load(db, bill_id).actions) == 1


def test_a_deactivated_csm_leaves_the_first_step_to_any_customer_success_user(db, session, people):
    from bot import accounts

    bill_id = make_bill(session, db, people, csm_then_sales=True)
    with db() as s:
        assert approval.progress(s.get(Bill, bill_id)).waiting_for.label == "carol (the customer's CSM)"
    with db() as s:
        accounts.deactivate(session=s, account="carol")

    with db() as s:
        assert approval.progress(s.get(Bill, bill_id)).waiting_for.label == "Customer Success (the customer has no CSM)"
    assert act(db, workflow.approve, bill_id, people["oscar"]).status is BillStatus.DRAFT
