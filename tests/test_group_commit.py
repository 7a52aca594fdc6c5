"""Recording what a request asks for before its acknowledgement: writes that arrive together share a commit,
each caller gets its own answer or the error its batch met, and a replayed signature is refused."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from db import session as db_session
from db.models import Outbox
from db.session import DatabaseTimeout, GroupCommit
from handlers.jobs import JobRecorder
from handlers.verification import SignedRequest


def submit_at_once(commit: GroupCommit, items: list) -> list:
    """Submit every item from a thread of its own, all at once; each call's result or the exception it raised."""
    outcomes: list = [None] * len(items)
    start_together = threading.Barrier(len(items))

    def call(index: int) -> None:
        start_together.wait()
        try:
            outcomes[index] = commit.submit(items[index])
        except Exception as error:  # what the caller would report to the person
            outcomes[index] = error

    threads = [threading.Thread(target=call, args=(index,)) for index in range(len(items))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return outcomes


def test_each_caller_gets_the_result_of_its_own_write(engine):
    batches: list[list[int]] = []

    def write(connection, items):
        batches.append(list(items))
        return [item * 10 for item in items]

    outcomes = submit_at_once(GroupCommit(engine, write, name="test-results"), list(range(20)))

    assert outcomes == [item * 10 for item in range(20)]
    assert sorted(item for batch in batches for item in batch) == list(range(20))


def test_every_caller_of_a_batch_that_fails_gets_its_error(engine):
    def write(connection, items):
        raise RuntimeError("the database refused the batch")

    outcomes = submit_at_once(GroupCommit(engine, write, name="test-error"), list(range(8)))

    assert all(isinstance(outcome, RuntimeError) for outcome in outcomes), outcomes


def test_a_write_that_does_not_finish_in_time_is_reported_as_a_timeout(engine, monkeypatch):
    monkeypatch.setattr(db_session, "GROUP_COMMIT_TIMEOUT", 0.2)
    release = threading.Event()

    def write(connection, items):
        release.wait(10)
        return [True] * len(items)

    commit = GroupCommit(engine, write, name="test-timeout")
    try:
        with pytest.raises(DatabaseTimeout, match="did not commit within 0.2 s"):
            commit.submit("late")
    finally:
        release.set()
    monkeypatch.setattr(db_session, "GROUP_COMMIT_TIMEOUT", 10.0)  # time enough for the late write to end first
    assert commit.submit("after") is True  # the batching thread goes on once the database answers


def signed(digest: str) -> SignedRequest:
    return SignedRequest(digest=digest, signed_at=datetime.now(timezone.utc))


def test_jobs_without_a_signature_are_all_recorded_and_a_signature_only_once(db, engine):
    recorder = JobRecorder(engine)
    payload = {"type": "click", "bill_id": 7}

    # Socket Mode requests carry no signature: nothing to refuse a replay by, and each job is kept.
    assert recorder.record("bill:7", "U0CSM", payload) is True
    assert recorder.record("bill:7", "U0CSM", payload) is True
    assert recorder.record("bill:7", "U0CSM", payload, signed=signed("ab" * 32)) is True
    assert recorder.record("bill:7", "U0CSM", payload, signed=signed("ab" * 32)) is False

    with db() as session:
        keys = session.scalars(select(Outbox.dedupe_key).order_by(Outbox.id)).all()
    assert keys == [None, None, f"request:{'ab' * 32}"]
