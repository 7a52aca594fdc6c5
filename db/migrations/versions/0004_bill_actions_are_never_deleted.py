"""Forbid deleting a recorded bill action

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

POSTGRESQL_NO_DELETE = """
CREATE TRIGGER bill_actions_no_delete BEFORE DELETE ON bill_actions
    FOR EACH ROW EXECUTE FUNCTION bill_actions_append_only();
"""

SQLITE_NO_DELETE = """
CREATE TRIGGER bill_actions_no_delete BEFORE DELETE ON bill_actions
BEGIN
    SELECT RAISE(ABORT, 'bill_actions is append-only: recorded actions are never deleted');
END
"""


def upgrade() -> None:
    op.execute(POSTGRESQL_NO_DELETE if op.get_bind().dialect.name == 'postgresql' else SQLITE_NO_DELETE)


def downgrade() -> None:
    on_table = ' ON bill_actions' if op.get_bind().dialect.name == 'postgresql' else ''
    op.execute('DROP TRIGGER bill_actions_no_delete' + on_table)
