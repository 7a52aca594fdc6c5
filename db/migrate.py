"""Schema migrations: `python main.py db upgrade` runs these against the configured database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, inspect

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        config.attributes["database_url"] = url
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Create or upgrade the schema to `revision` on the engine's database."""
    config = alembic_config()
    with engine.connect() as connection, _sqlite_foreign_keys_off(connection):
        with connection.begin():
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            _check_foreign_keys(connection)


class BrokenReferences(Exception):
    """A migration left rows that refer to rows that do not exist (SQLite checks them only at the end)."""


@contextmanager
def _sqlite_foreign_keys_off(connection: Connection) -> Iterator[None]:
    """SQLite changes a table's constraints by building a new table and dropping the old one, which its
    foreign keys forbid while other tables refer to it; SQLite's own procedure turns them off around the
    transaction and checks every reference before the commit (_check_foreign_keys)."""
    if connection.dialect.name != "sqlite":
        yield
        return
    raw = connection.connection.dbapi_connection
    raw.execute("PRAGMA foreign_keys = OFF")  # outside any transaction, where SQLite allows it
    try:
        yield
    finally:
        raw.execute("PRAGMA foreign_keys = ON")


def _check_foreign_keys(connection: Connection) -> None:
    if connection.dialect.name != "sqlite":
        return
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        table, row, parent, _ = broken[0]
        raise BrokenReferences(f"row {row} of {table} refers to a missing row of {parent} ({len(broken)} in all)")


class NewerSchema(Exception):
    """The database was migrated by a newer release than this one."""


def is_current(engine: Engine) -> bool:
    """True when the database schema is at the newest migration; NewerSchema when it is past it."""
    scripts = ScriptDirectory.from_config(alembic_config())
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return False
        revision = MigrationContext.configure(connection).get_current_revision()
    if revision is not None and revision not in {script.revision for script in scripts.walk_revisions()}:
        raise NewerSchema(f"the database was migrated by a newer release of BillProcess (revision {revision})")
    return revision == scripts.get_current_head()
