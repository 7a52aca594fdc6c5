"""Test databases: every database test runs on SQLite and, when TEST_DATABASE_URL is set, on PostgreSQL.

Each backend's schema is built once per run by the real migrations; each test starts from empty
tables. With CI=true a PostgreSQL server that cannot be reached fails the run instead of skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from bot import approval
from db.migrate import upgrade
from db.session import make_engine, make_session_factory
from tests.factories import empty_tables

IN_CI = os.environ.get("CI", "").lower() == "true"
POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "")
BACKENDS = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])

if IN_CI and not POSTGRES_URL:
    raise pytest.UsageError("CI=true needs TEST_DATABASE_URL pointing at PostgreSQL")


def _postgres_test_database() -> Iterator[str]:
    """Create a database of our own on the TEST_DATABASE_URL server, and drop it afterwards."""
    server = make_url(POSTGRES_URL).set(drivername="postgresql+psycopg")
    name = f"billprocess_test_{uuid.uuid4().hex[:12]}"
    admin = make_engine(server.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        message = f"PostgreSQL at TEST_DATABASE_URL is unreachable: {exc.orig}"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request, tmp_path_factory) -> Iterator[str]:
    """The URL of a migrated, empty test database for one backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'billprocess.db'}"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url
        return
    for url in _postgres_test_database():
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url


@pytest.fixture(scope="session")
def engine(database_url) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def db(engine) -> sessionmaker[Session]:
    """A session factory on empty tables; tests open sessions from it as the services' callers do."""
    empty_tables(engine)
    return make_session_factory(engine)


@pytest.fixture
def session(db) -> Iterator[Session]:
    with db() as session:
        yield session


@pytest.fixture
def cli_env(monkeypatch, database_url, engine, tmp_path):
    """Environment for running the command line against the test database."""
    empty_tables(engine)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("BCRYPT_ROUNDS", "4")
    monkeypatch.setenv("MAIL_DIR", str(tmp_path / "mail"))
    monkeypatch.setenv("TIMEZONE", "UTC")
    return tmp_path


@pytest.fixture(autouse=True)
def default_approval_policy():
    """Every test starts, and leaves, with the default approval policy (a command may configure another)."""
    approval.reset()
    yield
    approval.reset()


def pytest_collection_modifyitems(config, items):
    """Tests marked postgres_only run on PostgreSQL alone: their SQLite variants are not collected."""
    sqlite_only = [item for item in items if item.get_closest_marker("postgres_only") and "[sqlite" in item.nodeid]
    if sqlite_only:
        config.hook.pytest_deselected(items=sqlite_only)
        items[:] = [item for item in items if item not in sqlite_only]
