"""Recording what a request asks for before its acknowledgement: writes that arrive together share a commit,
each caller gets its own answer or the error its batch met, a replayed signature is refused, and jobs are
stored exactly as given; on PostgreSQL, by one call into libpq."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, InvalidRequestError

from db import session as db_session
from db.models import Outbox, OutboxKind, OutboxStatus
from db.session import DatabaseTimeout, GroupCommit, execute_committing
from handlers.errors import is_database_outage
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


def test_jobs_recorded_together_are_stored_exactly_as_given(db, engine):
    recorder = JobRecorder(engine)
    payloads = [
        {"type": "click", "value": 'bill "7" \\ 1', "text": "Zoë — 10 000 ¥ ✓", "nested": [1, {"a": None}]},
        {"type": "command", "text": "reject 7 it's wrong; 100% off", "empty": ""},
        {"type": "click", "value": "line\nbreak\ttab", "odd": "a NUL \x00 and a lone surrogate \ud800"},
    ]
    jobs = [(f"bill:{index}", f"U0USER{index}", payloads[index % 3], signed(f"{index:064x}")) for index in range(12)]
    jobs.append(("bill:0", "U0USER0", payloads[0], signed(f"{0:064x}")))  # the first one's signature again
    jobs.append(("bill:99", "U0SOCKET", payloads[1], None))  # Socket Mode: no signature
    outcomes: list = [None] * len(jobs)
    start_together = threading.Barrier(len(jobs))

    def record(index: int) -> None:
        lane, user, payload, signature = jobs[index]
        start_together.wait()
        outcomes[index] = recorder.record(lane, user, payload, signed=signature)

    threads = [threading.Thread(target=record, args=(index,)) for index in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    # Of the two requests with one signature, whichever came first is kept and the other refused.
    assert sorted(outcomes[index] for index in (0, 12)) == [False, True]
    assert all(outcomes[index] is True for index in range(len(jobs)) if index not in (0, 12))
    with db() as session:
        rows = session.scalars(select(Outbox).order_by(Outbox.id)).all()
    stored = {(row.lane, row.slack_user_id, row.dedupe_key): row for row in rows}
    expected = {(lane, user, f"request:{signature.digest}" if signature else None): payload
                for lane, user, payload, signature in jobs}
    assert set(stored) == set(expected)
    for key, row in stored.items():
        assert row.payload == expected[key]
        assert (row.kind, row.status, row.attempts, row.outcome_unknown) == (
            OutboxKind.JOB, OutboxStatus.PENDING, 0, False)
        assert row.available_at == row.created_at
        assert abs(row.created_at - datetime.now(timezone.utc)) < timedelta(minutes=1)


@pytest.mark.postgres_only  # a single call into libpq: PostgreSQL's
def test_a_statement_that_commits_by_itself_is_refused_where_a_transaction_is_open_or_would_be(engine):
    with engine.connect() as connection:
        connection.exec_driver_sql("SELECT 1")  # SQLAlchemy began a transaction
        with pytest.raises(InvalidRequestError, match="needs an autocommit connection"):
            execute_committing(connection, "SELECT 1")
    with engine.begin() as connection:  # nothing sent yet, but the transaction is there to roll back
        with pytest.raises(InvalidRequestError, match="needs an autocommit connection"):
            execute_committing(connection, "SELECT 1")


@pytest.mark.postgres_only
def test_a_statement_the_database_refuses_raises_sqlalchemys_error_and_the_connection_goes_on(engine):
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        with pytest.raises(IntegrityError, match="duplicate key") as refused:
            execute_committing(connection, "INSERT INTO outbox (kind, lane, status, attempts, outcome_unknown, "
                                "available_at, created_at, dedupe_key) SELECT 'job', 'lane', 'pending', 0, false, "
                                "now(), now(), $1 FROM generate_series(1, 2)", "the same key twice")
        # The database's detail quotes the key, and its context can quote a parameter: neither is repeated.
        assert "duplicate key value violates unique constraint" in str(refused.value)
        assert "the same key twice" not in str(refused.value)
        assert execute_committing(connection, "SELECT $1 || $2", "still ", "usable") == ["still usable"]
        assert execute_committing(connection, "SELECT NULL") == [None]
        assert execute_committing(connection, "SELECT count(*)::text FROM outbox WHERE dedupe_key = $1",
                                   "the same key twice") == ["0"]


@pytest.mark.postgres_only
def test_a_connection_the_database_ended_is_an_outage_and_is_not_used_again(engine):
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        [backend] = execute_committing(connection, "SELECT pg_backend_pid()::text")
        with engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": int(backend)})
        with pytest.raises(DBAPIError) as ended:
            execute_committing(connection, "SELECT 1")
        assert is_database_outage(ended.value)
        assert connection.invalidated


@pytest.mark.postgres_only
def test_a_closed_connection_is_an_outage(engine):
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.connection.driver_connection.close()
        with pytest.raises(DBAPIError) as closed:
            execute_committing(connection, "SELECT 1")
        assert is_database_outage(closed.value)
        assert connection.invalidated


@pytest.mark.postgres_only
def test_the_recorder_reports_its_ended_connection_as_an_outage_then_records_on_a_new_one(db, engine, monkeypatch):
    monkeypatch.setattr(db_session, "KEEP_CONNECTION_SECONDS", 60.0)  # the recorder keeps its connection meanwhile
    recorder = JobRecorder(engine)
    assert recorder.record("bill:1", "U0CSM", {"type": "click"}, signed=signed("01" * 32)) is True
    with engine.connect() as other:  # every other connection to the test database ends, the recorder's among them
        other.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid()"))

    with pytest.raises(DBAPIError) as ended:
        recorder.record("bill:2", "U0CSM", {"type": "click"}, signed=signed("02" * 32))
    assert is_database_outage(ended.value)  # the person is told the database is unavailable
    assert recorder.record("bill:3", "U0CSM", {"type": "click"}, signed=signed("03" * 32)) is True

    with db() as session:
        keys = session.scalars(select(Outbox.dedupe_key).order_by(Outbox.id)).all()
    assert keys == [f"request:{'01' * 32}", f"request:{'03' * 32}"]
