"""Simultaneous clicks on one bill: exactly one change happens, everyone else is told what happened.

Threads line up on a barrier and then call the services at once, each with its own session from an
engine whose pool has room for all of them. On PostgreSQL the bill's row lock (SELECT ... FOR UPDATE)
serialises them; on SQLite every write transaction starts with BEGIN IMMEDIATE, which does the same.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import date

import pytest
from sqlalchemy import func, select

from bot import workflow
from bot.billing import generate_month
from bot.errors import AlreadyDone, DeliveryFailed, InvalidInput, SendInProgress
from bot.invoices import Invoicing
from bot.periods import Period
from db.models import ActionType, Bill, BillAction, BillStatus, Role
from db.session import make_engine, make_session_factory
from tests.factories import add_customer, add_user

PERIOD = Period(2026, 10)
TODAY = date(2026, 11, 3)
THREADS = 20


@pytest.fixture
def crowd(db, engine):
    """A session factory whose engine can hold a connection for every thread at once."""
    wide = make_engine(engine.url.render_as_string(hide_password=False), pool_size=THREADS, max_overflow=0)
    yield make_session_factory(wide)
    wide.dispose()


def make_bill(session, db, *, csm_then_sales: bool = False, csm=None) -> int:
    customer = add_customer(
        session, "Acme", require_csm_approval=csm_then_sales, csm=csm, usage={(PERIOD.year, PERIOD.month): 1500}
    )
    with db() as s:
        generate_month(session=s, period=PERIOD, actor=None, today=TODAY)
    with db() as s:
        return s.scalar(select(Bill.id).where(Bill.customer_id == customer.id))


def at_once(sessions, calls: list[Callable]) -> list[object]:
    """Run each call(session) in its own thread, all released together; returns results or errors."""
    barrier = threading.Barrier(len(calls))
    outcomes: list[object] = [None] * len(calls)

    def run(index: int, call: Callable) -> None:
        with sessions() as s:
            barrier.wait(timeout=30)
            try:
                outcomes[index] = call(s)
            except Exception as error:  # collected and checked by the test
                outcomes[index] = error

    threads = [threading.Thread(target=run, args=(index, call)) for index, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a caller never finished"
    return outcomes


def stored(db, bill_id) -> tuple[BillStatus, list[BillAction]]:
    with db() as s:
        status = s.get(Bill, bill_id).status
        actions = s.scalars(select(BillAction).where(BillAction.bill_id == bill_id).order_by(BillAction.id))
        return status, list(actions)


def test_twenty_simultaneous_approvals_and_rejections_make_exactly_one_change(db, session, crowd):
    people = [add_user(session, f"cs{n}", Role.CUSTOMER_SUCCESS) for n in range(THREADS // 2)]
    people += [add_user(session, f"sales{n}", Role.SALES) for n in range(THREADS // 2)]
    bill_id = make_bill(session, db)
    session.expunge_all()  # the threads only read the users' ids

    def approve(actor):
        return lambda s: workflow.approve(session=s, bill_id=bill_id, actor=actor)

    def reject(actor):
        return lambda s: workflow.reject(session=s, bill_id=bill_id, actor=actor, reason=f"{actor.name} says no")

    # Every other caller rejects, so both kinds of click come from both roles.
    calls = [approve(actor) if index % 2 == 0 else reject(actor) for index, actor in enumerate(people)]
    outcomes = at_once(crowd, calls)

    winners = [index for index, outcome in enumerate(outcomes) if isinstance(outcome, Bill)]
    assert len(winners) == 1, outcomes
    winner = people[winners[0]]
    status, actions = stored(db, bill_id)
    assert [action.action for action in actions][0] is ActionType.DRAFT
    assert len(actions) == 2
    change = actions[1]
    assert change.stakeholder_id == winner.id
    approved = change.action is ActionType.APPROVE
    assert status is (BillStatus.FINAL if approved else BillStatus.WRITEOFF)
    assert change.action is (ActionType.APPROVE if winners[0] % 2 == 0 else ActionType.REJECT)

    verb = "approved" if approved else "rejected"
    losers = [outcome for index, outcome in enumerate(outcomes) if index != winners[0]]
    assert all(isinstance(outcome, AlreadyDone) for outcome in losers), losers
    for error in losers:
        assert f"Bill #{bill_id} was already {verb} by {winner.name} at " in str(error)
        assert (error.action, error.user_id, error.at) == (change.action, winner.id, change.created_at)


def test_the_csm_clicking_approve_twice_at_once_approves_step_one_once(db, session, crowd):
    carol = add_user(session, "carol", Role.CUSTOMER_SUCCESS)
    bill_id = make_bill(session, db, csm_then_sales=True, csm=carol)
    session.expunge_all()

    outcomes = at_once(crowd, [lambda s: workflow.approve(session=s, bill_id=bill_id, actor=carol)] * 4)

    assert sum(isinstance(outcome, Bill) for outcome in outcomes) == 1, outcomes
    assert sum(isinstance(outcome, AlreadyDone) for outcome in outcomes) == 3, outcomes
    assert all("already approved by carol" in str(o) for o in outcomes if isinstance(o, AlreadyDone))
    status, actions = stored(db, bill_id)
    assert status is BillStatus.DRAFT
    assert [action.action for action in actions] == [ActionType.DRAFT, ActionType.APPROVE]


def test_two_simultaneous_sends_email_the_bill_once(db, session, crowd):
    fiona = add_user(session, "fiona", Role.FINANCE)
    fred = add_user(session, "fred", Role.FINANCE)
    sam = add_user(session, "sam", Role.SALES)
    bill_id = make_bill(session, db)
    with db() as s:
        workflow.approve(session=s, bill_id=bill_id, actor=sam)
    session.expunge_all()

    delivered = []
    count_lock = threading.Lock()

    def deliver(bill: Bill) -> None:
        with count_lock:
            delivered.append(bill.id)
        time.sleep(0.2)  # a slow mail server: the other sender arrives while this one is delivering

    outcomes = at_once(
        crowd,
        [lambda s, actor=actor: workflow.send(session=s, bill_id=bill_id, actor=actor, deliver=deliver)
         for actor in (fiona, fred)],
    )

    assert delivered == [bill_id]
    winners = [actor for actor, outcome in zip((fiona, fred), outcomes) if isinstance(outcome, Bill)]
    assert len(winners) == 1, outcomes
    [loser] = [outcome for outcome in outcomes if not isinstance(outcome, Bill)]
    # The loser finds the winner's email on its way (no lock is held while the mail server answers).
    assert isinstance(loser, SendInProgress), loser
    assert f"Bill #{bill_id} is being sent by {winners[0].name} since " in str(loser)
    assert loser.action is ActionType.SEND and loser.user_name == winners[0].name
    status, actions = stored(db, bill_id)
    assert status is BillStatus.SENT
    assert [action.action for action in actions].count(ActionType.SEND) == 1


def test_two_simultaneous_undos_of_the_same_action_undo_it_once(db, session, crowd):
    fiona = add_user(session, "fiona", Role.FINANCE)
    carol = add_user(session, "carol", Role.CUSTOMER_SUCCESS)
    sam = add_user(session, "sam", Role.SALES)
    bill_id = make_bill(session, db, csm_then_sales=True, csm=carol)
    with db() as s:
        workflow.approve(session=s, bill_id=bill_id, actor=carol)
    with db() as s:
        shown = workflow.approve(session=s, bill_id=bill_id, actor=sam).actions[-1].id
    session.expunge_all()

    outcomes = at_once(
        crowd,
        [lambda s, actor=actor: workflow.undo(session=s, bill_id=bill_id, actor=actor, action_id=shown)
         for actor in (fiona, sam)],
    )

    assert sum(isinstance(outcome, Bill) for outcome in outcomes) == 1, outcomes
    [loser] = [outcome for outcome in outcomes if not isinstance(outcome, Bill)]
    assert isinstance(loser, AlreadyDone) and "sam's approval" in str(loser) and "already undone" in str(loser)
    status, actions = stored(db, bill_id)
    assert status is BillStatus.DRAFT  # carol's approval still stands
    with db() as s:
        assert s.scalar(select(func.count()).where(BillAction.action == ActionType.UNDO)) == 1


# --- invoice and credit note numbers ---------------------------------------------------------------


def final_bills(session, db, count: int) -> tuple[list[int], object]:
    """`count` approved one-step bills of different customers, and the Finance account to send them."""
    fiona = add_user(session, "fiona", Role.FINANCE)
    sam = add_user(session, "sam", Role.SALES)
    for n in range(count):
        add_customer(session, f"Customer {n:02d}", usage={(PERIOD.year, PERIOD.month): 1500 + n})
    with db() as s:
        generate_month(session=s, period=PERIOD, actor=None, today=TODAY)
    with db() as s:
        bill_ids = list(s.scalars(select(Bill.id).order_by(Bill.id)))
    for bill_id in bill_ids:
        with db() as s:
            workflow.approve(session=s, bill_id=bill_id, actor=sam)
    return bill_ids, fiona


@pytest.mark.postgres_only
def test_simultaneous_sends_number_their_invoices_one_to_n_without_gap_or_repeat(db, session, crowd):
    bill_ids, fiona = final_bills(session, db, THREADS)
    invoicing = Invoicing()
    refused = set(bill_ids[::4])  # a quarter of the mail server's answers are refusals

    def deliver(bill) -> None:
        if bill.id in refused:
            raise DeliveryFailed("the mail server refused the message")

    def sending(bill_id):
        return lambda s: workflow.send(session=s, bill_id=bill_id, actor=fiona, deliver=deliver, invoicing=invoicing)

    outcomes = at_once(crowd, [sending(bill_id) for bill_id in bill_ids])
    assert sum(isinstance(outcome, DeliveryFailed) for outcome in outcomes) == len(refused)
    refused.clear()
    retried = at_once(crowd, [sending(bill_id) for bill_id in bill_ids[::4]])
    assert not any(isinstance(outcome, Exception) for outcome in retried), retried

    year = invoicing.today().year
    with db() as s:
        rows = s.execute(select(Bill.status, Bill.invoice_number)).all()
    assert {status for status, _ in rows} == {BillStatus.SENT}
    assert sorted(number for _, number in rows) == [f"BP-{year}-{n:06d}" for n in range(1, THREADS + 1)]


@pytest.mark.postgres_only
def test_simultaneous_credit_notes_are_numbered_one_to_n_and_never_exceed_a_total(db, session, crowd):
    bill_ids, fiona = final_bills(session, db, THREADS // 2)
    invoicing = Invoicing()
    for bill_id in bill_ids:
        with db() as s:
            workflow.send(session=s, bill_id=bill_id, actor=fiona, deliver=lambda bill: None, invoicing=invoicing)

    def crediting(bill_id):
        return lambda s: workflow.credit(session=s, bill_id=bill_id, actor=fiona, amount="3.00", reason="outage",
                                         deliver=lambda note: None, invoicing=invoicing)

    # Two credits of 3.00 at once on each 5.00 bill: one is issued, the other is refused as too much.
    outcomes = at_once(crowd, [crediting(bill_id) for bill_id in bill_ids for _ in range(2)])

    issued = [outcome for outcome in outcomes if isinstance(outcome, workflow.Credited)]
    assert len(issued) == len(bill_ids)
    assert all(isinstance(outcome, InvalidInput) for outcome in outcomes if outcome not in issued)
    year = invoicing.today().year
    assert sorted(outcome.note.number for outcome in issued) == [
        f"CN-{year}-{n:06d}" for n in range(1, len(bill_ids) + 1)
    ]
    assert sorted(outcome.bill.id for outcome in issued) == bill_ids
