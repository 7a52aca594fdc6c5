"""Usage re-imported for a month already billed: each bill follows its state's rule, in the import's transaction."""

from __future__ import annotations

import io
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from bot import approval, workflow
from bot.billing import generate_month
from bot.errors import NotAllowed
from bot.imports import ImportRejected, import_usage
from bot.invoices import Invoicing
from bot.periods import Period
from db.models import (
    ActionType,
    Bill,
    BillAction,
    BillStatus,
    Outbox,
    OutboxKind,
    Role,
    Usage,
)
from tests.factories import add_customer, add_user

PERIOD = Period(2026, 10)
TODAY = date(2026, 11, 3)


@pytest.fixture
def people(session):
    return {
        "fiona": add_user(session, "fiona", Role.FINANCE),
        "carol": add_user(session, "carol", Role.CUSTOMER_SUCCESS),
        "sam": add_user(session, "sam", Role.SALES),
    }


def generate(db) -> None:
    with db() as s:
        generate_month(session=s, period=PERIOD, actor=None, today=TODAY)


def bill_of(db, name: str) -> Bill:
    with db() as s:
        bill = s.scalar(select(Bill).join(Bill.customer).where(Bill.customer.has(name=name)))
        workflow._load_for_display(bill)
        return bill


def reimport(db, *rows: tuple[str, int], period: Period = PERIOD):
    text = "customer,year,month,api_usage\n" + "".join(
        f"{name},{period.year},{period.month},{usage}\n" for name, usage in rows
    )
    with db() as s:
        return import_usage(session=s, file=io.StringIO(text), source="late-meters.csv")


def act(db, service, bill_id, user, **extra):
    with db() as s:
        return service(session=s, bill_id=bill_id, actor=user, **extra)


def test_a_draft_is_recomputed_with_one_action_that_records_the_change_and_its_cause(db, session, people):
    add_customer(session, "Acme", require_csm_approval=True, csm=people["carol"], usage={(2026, 10): 1500})
    generate(db)
    bill = bill_of(db, "Acme")
    act(db, workflow.approve, bill.id, people["carol"])  # step 1 of 2

    summary = reimport(db, ("Acme", 2500))

    bill = bill_of(db, "Acme")
    assert (bill.api_usage, bill.overage_units, bill.overage_amount, bill.status) == (
        2500, 1500, Decimal("15.00"), BillStatus.DRAFT
    )
    recompute = bill.actions[-1]
    assert recompute.action is ActionType.RECOMPUTE and recompute.stakeholder is None
    assert (recompute.usage_before, recompute.usage_after) == (1500, 2500)
    assert (recompute.amount_before, recompute.amount_after) == (Decimal("5.00"), Decimal("15.00"))
    assert recompute.comment == (
        "usage import of late-meters.csv: usage 1,500 → 2,500 calls, amount $5.00 → $15.00; approvals start over"
    )
    # The CSM's approval no longer counts: the bill waits for step 1 again.
    assert approval.progress(bill).waiting_for.number == 1
    assert (summary.corrections.recomputed, summary.corrections.created) == (1, 0)
    assert summary.lines("usage rows") == [
        "0 usage rows created, 1 updated",
        "Billed months: 1 bill recomputed, 0 created, 0 written off left as they are, 0 sent bills flagged",
        f"  bill #{bill.id}: usage 1,500 → 2,500 calls; approvals start over",
    ]
    with db() as s:
        reply = s.scalar(select(Outbox).where(Outbox.kind == OutboxKind.THREAD_REPLY, Outbox.bill_id == bill.id)
                         .order_by(Outbox.id.desc()))
        assert reply.payload == {"action_id": recompute.id}


def test_a_final_bill_whose_amount_changes_is_a_draft_again(db, session, people):
    add_customer(session, "Acme", usage={(2026, 10): 1500})
    generate(db)
    act(db, workflow.approve, bill_of(db, "Acme").id, people["sam"])

    reimport(db, ("Acme", 1400))

    bill = bill_of(db, "Acme")
    assert (bill.status, bill.overage_amount) == (BillStatus.DRAFT, Decimal("4.00"))
    assert approval.progress(bill).done_steps == ()


def test_a_final_bill_whose_amount_stays_the_same_stays_final_with_its_approval(db, session, people):
    add_customer(session, "Acme", unit_cost="0.001", usage={(2026, 10): 6000})  # 5,000 over: $5.00
    generate(db)
    act(db, workflow.approve, bill_of(db, "Acme").id, people["sam"])

    reimport(db, ("Acme", 6004))  # 5,004 over: $5.004, still $5.00

    bill = bill_of(db, "Acme")
    assert (bill.status, bill.api_usage, bill.overage_amount) == (BillStatus.FINAL, 6004, Decimal("5.00"))
    assert bill.actions[-1].comment.endswith("amount $5.00 → $5.00; the amount is the same")


@pytest.mark.parametrize(
    ("usage", "reason"), [(1000, "within the monthly limit"), (900, "within the monthly limit"),
                          (1001, "below $0.01")],
)
def test_a_bill_left_without_overage_is_written_off_with_the_reason(db, session, people, usage, reason):
    add_customer(session, "Acme", unit_cost="0.004", usage={(2026, 10): 3000})  # $8.00
    generate(db)

    reimport(db, ("Acme", usage))

    bill = bill_of(db, "Acme")
    assert bill.status is BillStatus.WRITEOFF and bill.overage_amount == 0
    assert bill.overage_units == usage - 1000
    assert bill.actions[-1].comment.endswith(f"written off: {reason}")


def test_undoing_a_recompute_restores_the_bill_and_its_approvals_and_only_finance_may(db, session, people):
    add_customer(session, "Acme", usage={(2026, 10): 1500})
    generate(db)
    act(db, workflow.approve, bill_of(db, "Acme").id, people["sam"])
    reimport(db, ("Acme", 900))
    bill_id = bill_of(db, "Acme").id

    with pytest.raises(NotAllowed, match=f"Only Finance can undo the usage correction of bill #{bill_id} by a usage import"):
        act(db, workflow.undo, bill_id, people["sam"])
    act(db, workflow.undo, bill_id, people["fiona"], reason="the meter re-read was wrong")

    bill = bill_of(db, "Acme")
    assert (bill.status, bill.api_usage, bill.overage_units, bill.overage_amount) == (
        BillStatus.FINAL, 1500, 500, Decimal("5.00")
    )
    undo = bill.actions[-1]
    assert (undo.usage_before, undo.usage_after, undo.amount_before, undo.amount_after) == (
        900, 1500, Decimal("0.00"), Decimal("5.00")
    )
    assert approval.progress(bill).done_steps[0].approved_by[0].name == "sam"


def test_a_written_off_bill_stays_with_a_note(db, session, people):
    add_customer(session, "Acme", usage={(2026, 10): 1500})
    generate(db)
    act(db, workflow.reject, bill_of(db, "Acme").id, people["sam"], reason="waived")

    summary = reimport(db, ("Acme", 2500))

    bill = bill_of(db, "Acme")
    assert (bill.status, bill.api_usage, bill.overage_amount) == (BillStatus.WRITEOFF, 1500, Decimal("5.00"))
    note = bill.actions[-1]
    assert note.action is ActionType.NOTE
    assert note.comment == "usage import of late-meters.csv: usage 1,500 → 2,500 calls; the bill stays written off"
    assert summary.corrections.left == 1
    # The note is history, not a change: the rejection can still be undone.
    assert workflow.undo_target(bill).action is ActionType.REJECT


def test_a_sent_bill_is_never_changed_and_the_import_says_to_issue_a_credit_note(db, session, people):
    add_customer(session, "Acme", usage={(2026, 10): 1500})
    generate(db)
    bill_id = bill_of(db, "Acme").id
    act(db, workflow.approve, bill_id, people["sam"])
    sent = act(db, workflow.send, bill_id, people["fiona"], deliver=lambda bill: None, invoicing=Invoicing())
    with db() as s:
        before = s.execute(select(Bill.__table__).where(Bill.id == bill_id)).one()

    summary = reimport(db, ("Acme", 1200))

    with db() as s:
        assert s.execute(select(Bill.__table__).where(Bill.id == bill_id)).one() == before
        assert s.scalar(select(Usage.api_usage)) == 1200
    assert summary.corrections.flagged == 1
    assert summary.corrections.messages == [
        f"bill {sent.invoice_number} was sent: issue a credit note (the corrected amount is $3.00 less)"
    ]
    assert bill_of(db, "Acme").actions[-1].action is ActionType.NOTE


def test_a_billed_month_gets_the_bill_that_corrected_usage_now_calls_for(db, session, people):
    add_customer(session, "Acme", usage={(2026, 10): 1500})
    add_customer(session, "Globex", usage={(2026, 10): 900})
    add_customer(session, "Initech")  # no usage recorded when the month was billed
    generate(db)

    summary = reimport(db, ("Globex", 1800), ("Initech", 1100))

    globex, initech = bill_of(db, "Globex"), bill_of(db, "Initech")
    assert (globex.overage_amount, globex.status, initech.overage_amount) == (
        Decimal("8.00"), BillStatus.DRAFT, Decimal("1.00")
    )
    assert globex.actions[0].action is ActionType.DRAFT
    assert globex.actions[0].comment == "created by the usage import of late-meters.csv"
    assert summary.corrections.created == 2
    with db() as s:
        assert s.scalar(select(func.count()).select_from(Outbox).where(
            Outbox.kind == OutboxKind.BILL_MESSAGE, Outbox.bill_id == initech.id)) == 1


def test_a_month_not_billed_yet_is_left_to_generation(db, session, people):
    add_customer(session, "Acme", usage={(2026, 9): 1500})
    summary = reimport(db, ("Acme", 2500), period=Period(2026, 9))
    with db() as s:
        assert s.scalar(select(func.count()).select_from(Bill)) == 0
    assert summary.lines("usage rows") == ["0 usage rows created, 1 updated"]


def test_the_same_usage_again_changes_no_bill(db, session, people):
    add_customer(session, "Acme", usage={(2026, 10): 1500})
    generate(db)
    with db() as s:
        actions = s.scalar(select(func.count()).select_from(BillAction))

    summary = reimport(db, ("Acme", 1500))

    with db() as s:
        assert s.scalar(select(func.count()).select_from(BillAction)) == actions
    assert summary.corrections.lines() == []


def test_a_rejected_file_corrects_nothing(db, session, people):
    add_customer(session, "Acme", usage={(2026, 10): 1500})
    generate(db)
    text = "customer,year,month,api_usage\nAcme,2026,10,2500\nNobody,2026,10,5\n"
    with pytest.raises(ImportRejected), db() as s:
        import_usage(session=s, file=io.StringIO(text), source="late.csv")
    bill = bill_of(db, "Acme")
    assert (bill.api_usage, [a.action for a in bill.actions]) == (1500, [ActionType.DRAFT])


def test_reimporting_unchanged_usage_brings_a_bill_whose_correction_was_undone_back_in_line(db, session, people):
    add_customer(session, "Acme", usage={(2026, 10): 1500})
    generate(db)
    act(db, workflow.approve, bill_of(db, "Acme").id, people["sam"])
    reimport(db, ("Acme", 2500))
    bill_id = bill_of(db, "Acme").id
    act(db, workflow.undo, bill_id, people["fiona"])  # back to 1,500 calls, while 2,500 stay recorded
    assert bill_of(db, "Acme").api_usage == 1500

    reimport(db, ("Acme", 2500))  # the same figure as recorded

    bill = bill_of(db, "Acme")
    assert (bill.api_usage, bill.overage_amount, bill.status) == (2500, Decimal("15.00"), BillStatus.DRAFT)
    assert bill.actions[-1].action is ActionType.RECOMPUTE
