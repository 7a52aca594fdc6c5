"""Engines and sessions. Each caller opens its own session; nothing here is shared across threads
(a GroupCommit writes from a thread of its own, with connections of its own)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, NoReturn, TypeVar

from sqlalchemy import Connection, Delete, Engine, Table, create_engine, event
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, IntegrityError, InvalidRequestError
from sqlalchemy.exc import TimeoutError as DatabaseTimeout
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

# Connections kept open per process on PostgreSQL: one per request thread of `serve` (waitress runs 16),
# so that acknowledging a click never waits to open one; a few more for bursts, closed again after use.
POOL_SIZE = 16
POOL_OVERFLOW = 4


def make_engine(url: str, **kwargs) -> Engine:
    """An engine for `url`; SQLite gets foreign keys on and writers that queue instead of failing."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    if "poolclass" not in kwargs:
        kwargs = {"pool_size": POOL_SIZE, "max_overflow": POOL_OVERFLOW, **kwargs}
    return create_engine(url, pool_pre_ping=True, **kwargs)


def _sqlite_on_connect(dbapi_connection, _record) -> None:
    # Let SQLAlchemy emit BEGIN itself so that it can take the write lock up front (see below).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.close()


def _sqlite_begin_immediate(connection) -> None:
    # A deferred transaction that reads then writes can fail with "database is locked" when another
    # writer got in between; taking the lock at BEGIN makes concurrent writers wait their turn.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def add_once(sessions: sessionmaker[Session], row: DeclarativeBase, *, prune: Delete | None = None) -> bool:
    """Commit `row`; False when a row with its key was there already. `prune` then runs in a commit of its own.

    The unique key decides, so that concurrent callers, in this process or another, each get one answer.
    """
    with sessions() as session:
        try:
            with session.begin():
                session.add(row)
        except IntegrityError:
            return False
        if prune is not None:
            with session.begin():
                session.execute(prune)
    return True


Item = TypeVar("Item")


def stored_once(items: Sequence[Item], key: Callable[[Item], str | None],
                insert: Callable[[list[Item]], Iterable[str | None]]) -> list[bool]:
    """For each item, whether `insert` stored it. `insert` gets the items whose key is None or first in the
    batch, and returns the keys the database took (it refuses a key it already has, by a unique index)."""
    first: dict[str, int] = {}  # the same key twice in one batch: the second is refused
    keys = [key(item) for item in items]
    for index, item_key in enumerate(keys):
        if item_key is not None:
            first.setdefault(item_key, index)
    stored = set(insert([item for index, (item, item_key) in enumerate(zip(items, keys))
                         if item_key is None or first[item_key] == index]))
    return [item_key is None or (item_key in stored and first[item_key] == index)
            for index, item_key in enumerate(keys)]


def insert_once(connection: Connection, table: Table, key: str, rows: Sequence[dict]) -> list[bool]:
    """Insert the rows in the caller's transaction, except those whose `key` (a unique index) the table has
    already or an earlier row has; for each row, whether it was stored."""
    insert = (postgresql_insert if connection.dialect.name == "postgresql" else sqlite_insert)(table)
    insert = insert.on_conflict_do_nothing(index_elements=[key]).returning(table.c[key])
    return stored_once(rows, lambda row: row[key], lambda new: connection.scalars(insert, new))


def execute_committing(connection: Connection, statement: str, *params: str) -> list[str | None]:
    """Run one PostgreSQL statement (not COPY; $1, $2, … take `params`, as text) on an autocommit connection, so
    that it has committed when this returns; the first column of each row it returns. Errors are SQLAlchemy's,
    with the database's primary message only: its detail and context can quote the parameters.

    It is a single call into libpq, which waits for the database without holding Python's GIL. psycopg's own
    execution takes the GIL back after each of its waits, and it and SQLAlchemy cost more Python than such a
    statement itself: with many request threads wanting the GIL, every acknowledgement waiting for the
    statement waited for those turns too.
    """
    import psycopg  # here: on SQLite it is never needed, and importing it costs every start a tenth of a second
    from psycopg import pq

    driver = connection.connection.driver_connection
    if driver.closed:
        _lost(connection, statement, psycopg.OperationalError("the connection is closed"))
    if not driver.autocommit or driver.pgconn.transaction_status != pq.TransactionStatus.IDLE:
        raise InvalidRequestError("a statement that commits by itself needs an autocommit connection, idle")
    encoding = driver.info.encoding
    try:
        result = driver.pgconn.exec_params(statement.encode(encoding), [param.encode(encoding) for param in params])
    except psycopg.Error as error:  # libpq could not send it or got no answer at all
        _lost(connection, statement, error)
    if result.status not in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
        primary = result.error_field(pq.DiagnosticField.MESSAGE_PRIMARY) or result.error_message
        error = type(psycopg.errors.error_from_result(result))(primary.decode(encoding, "replace").strip())
        if driver.closed:
            _lost(connection, statement, error)
        raise DBAPIError.instance(statement, None, error, psycopg.Error)
    values = (result.get_value(row, 0) for row in range(result.ntuples))
    return [None if value is None else value.decode(encoding) for value in values]


def _lost(connection: Connection, statement: str, error: Exception) -> NoReturn:
    """The database connection is gone: it is not given to anyone again, and the error says so."""
    import psycopg

    connection.invalidate()
    raise DBAPIError.instance(statement, None, error, psycopg.Error, connection_invalidated=True) from error


Result = TypeVar("Result")
GROUP_COMMIT_BATCH = 200  # writes committed together at the most
GROUP_COMMIT_TIMEOUT = 2.5  # seconds a caller waits for its commit
KEEP_CONNECTION_SECONDS = 1.0  # an autocommit GroupCommit's connection is returned after this long unused


def _held_lock() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


@dataclass
class _Waiting(Generic[Item]):
    item: Item
    # Held while the write is pending: the batching thread releases it once the write is done, which is what
    # the caller waits for. A bare lock costs less than an Event (a condition around a lock) on every request.
    pending: threading.Lock = field(default_factory=_held_lock)
    result: Any = None
    error: Exception | None = None


class GroupCommit(Generic[Item, Result]):
    """Writes that arrive together share one transaction; each caller waits for the commit of its own.

    `write(connection, items)` runs in one transaction for a batch of items and returns one result per
    item. Many requests waiting on the database at once then cost it a few commits, not one each, and
    every caller still returns only once its write is durable (or raises the error the batch met).

    With `autocommit`, `write` is a single statement, which commits on its own: on a connection the batching
    thread keeps while writes keep coming (it is returned after KEEP_CONNECTION_SECONDS without any, and
    after a failure), a batch then costs one round trip to the database instead of four (check the
    connection, begin, write, commit), which is what an acknowledgement waiting for it feels most.
    """

    def __init__(self, engine: Engine, write: Callable[[Connection, Sequence[Item]], Sequence[Result]],
                 *, name: str, autocommit: bool = False):
        self.engine = engine
        self.write = write
        self.name = name
        self.autocommit = autocommit
        self._queue: queue.SimpleQueue[_Waiting[Item]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._connection: Connection | None = None  # only the batching thread uses it

    def submit(self, item: Item) -> Result:
        waiting = _Waiting(item)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
        self._queue.put(waiting)
        if not waiting.pending.acquire(timeout=GROUP_COMMIT_TIMEOUT):
            # Slack gives up on the request at 3 s; the person is told the database did not answer.
            raise DatabaseTimeout(f"the database did not commit within {GROUP_COMMIT_TIMEOUT:g} s")
        if waiting.error is not None:
            raise waiting.error
        return waiting.result

    def _run(self) -> None:
        while True:
            try:
                batch = [self._queue.get(timeout=KEEP_CONNECTION_SECONDS)]
            except queue.Empty:
                self._close()  # back to the pool while nothing is asked
                batch = [self._queue.get()]
            while len(batch) < GROUP_COMMIT_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            results: Sequence[Any] = [None] * len(batch)
            error = None
            try:
                results = self._write([waiting.item for waiting in batch])
            except Exception as failure:  # handed to every caller of the batch, each of which reports it
                error = failure
            for waiting, result in zip(batch, results):
                waiting.result, waiting.error = result, error
                waiting.pending.release()

    def _write(self, items: list[Item]) -> Sequence[Result]:
        if not self.autocommit:
            with self.engine.begin() as connection:
                return self.write(connection, items)
        if self._connection is None:
            self._connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            return self.write(self._connection, items)
        except Exception:
            self._close()  # a connection the database dropped is discarded, not reused
            raise

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
