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
from bot.errors import AlreadyDone, SendInProgress
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
