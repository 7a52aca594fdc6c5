"""A bill's email in flight: who started sending it and when, kept until the outcome is known

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('bills', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sending_started_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('sending_by_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('sending_error', sa.String(length=300), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_bills_sending_by_id_users'), 'users', ['sending_by_id'], ['id'])
        batch_op.create_check_constraint(
            'sending_marker_whole', '(sending_started_at IS NULL) = (sending_by_id IS NULL)'
        )


def downgrade() -> None:
    with op.batch_alter_table('bills', schema=None) as batch_op:
        batch_op.drop_constraint('sending_marker_whole', type_='check')
        batch_op.drop_constraint(batch_op.f('fk_bills_sending_by_id_users'), type_='foreignkey')
        batch_op.drop_column('sending_error')
        batch_op.drop_column('sending_by_id')
        batch_op.drop_column('sending_started_at')
