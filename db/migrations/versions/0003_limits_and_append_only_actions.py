"""Bound usage and limits to what amounts can hold; forbid changing a recorded bill action

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

MAX_CALLS = 1_000_000_000_000  # bot.billing.MAX_CALLS

POSTGRESQL_NO_UPDATE = """
CREATE FUNCTION bill_actions_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'bill_actions is append-only: recorded actions are never changed';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER bill_actions_no_update BEFORE UPDATE ON bill_actions
    FOR EACH ROW EXECUTE FUNCTION bill_actions_append_only();
"""

SQLITE_NO_UPDATE = """
CREATE TRIGGER bill_actions_no_update BEFORE UPDATE ON bill_actions
BEGIN
    SELECT RAISE(ABORT, 'bill_actions is append-only: recorded actions are never changed');
END
"""


def upgrade() -> None:
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.create_check_constraint('limit_at_most_max_calls', f'monthly_api_limit <= {MAX_CALLS}')
    with op.batch_alter_table('usages', schema=None) as batch_op:
        batch_op.create_check_constraint('usage_at_most_max_calls', f'api_usage <= {MAX_CALLS}')
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(POSTGRESQL_NO_UPDATE)
    else:
        op.execute(SQLITE_NO_UPDATE)


def downgrade() -> None:
    op.execute('DROP TRIGGER bill_actions_no_update' + (' ON bill_actions' if op.get_bind().dialect.name == 'postgresql' else ''))
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP FUNCTION bill_actions_append_only()')
    with op.batch_alter_table('usages', schema=None) as batch_op:
        batch_op.drop_constraint('usage_at_most_max_calls', type_='check')
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_constraint('limit_at_most_max_calls', type_='check')
