"""Schema migrations: `python main.py db upgrade` runs these against the configured database."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, inspect

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
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


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
