"""Engines and sessions. Each caller opens its own session; nothing here is shared across threads."""

from __future__ import annotations

from sqlalchemy import Delete, Engine, create_engine, event
from sqlalchemy.exc import IntegrityError
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
