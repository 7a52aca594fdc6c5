"""Alembic environment: the URL comes from the caller's connection or from the settings."""

from alembic import context
from sqlalchemy import pool

from db.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    from bot.settings import load_settings
    from db.session import make_engine

    url = config.attributes.get("database_url") or load_settings().sqlalchemy_url
    engine = make_engine(url, poolclass=pool.NullPool)
    with engine.begin() as connection:
        _configure(connection)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run them against a database")
run_migrations_online()
