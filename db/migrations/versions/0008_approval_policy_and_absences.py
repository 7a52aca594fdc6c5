"""The approval policy a bill follows, recorded with the action that set its amount; absences and delegates

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Not a batch operation: on SQLite that would rebuild bill_actions and lose its append-only triggers.
    op.add_column('bill_actions', sa.Column('policy', sa.JSON(), nullable=True))
    op.add_column('bill_actions', sa.Column('require_csm_approval', sa.Boolean(), nullable=True))
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('away_until', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('delegate_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_users_delegate_id_users'), 'users', ['delegate_id'], ['id'])
        batch_op.create_check_constraint('delegate_only_when_away', 'delegate_id IS NULL OR away_until IS NOT NULL')
        batch_op.create_check_constraint('delegate_not_self', 'delegate_id IS NULL OR delegate_id <> id')


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_constraint('delegate_not_self', type_='check')
        batch_op.drop_constraint('delegate_only_when_away', type_='check')
        batch_op.drop_constraint(batch_op.f('fk_users_delegate_id_users'), type_='foreignkey')
        batch_op.drop_column('delegate_id')
        batch_op.drop_column('away_until')
    op.drop_column('bill_actions', 'require_csm_approval')
    op.drop_column('bill_actions', 'policy')
