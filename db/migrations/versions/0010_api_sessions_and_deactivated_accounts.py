"""API sessions and login attempts, deactivated accounts, and who took an action no account took

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

ORIGIN_CHECK = "origin IN ('scheduler', 'operator', 'policy', 'import')"


def upgrade() -> None:
    op.create_table('api_sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('token_digest', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_api_sessions_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_sessions')),
    sa.UniqueConstraint('token_digest', name=op.f('uq_api_sessions_token_digest'))
    )
    with op.batch_alter_table('api_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_sessions_user_id'), ['user_id'], unique=False)

    op.create_table('login_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('address', sa.String(length=64), nullable=False),
    sa.Column('succeeded', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_login_attempts'))
    )
    with op.batch_alter_table('login_attempts', schema=None) as batch_op:
        batch_op.create_index('ix_login_attempts_address_created_at', ['address', 'created_at'], unique=False)
        batch_op.create_index('ix_login_attempts_name_created_at', ['name', 'created_at'], unique=False)

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('deactivated_at', sa.DateTime(timezone=True), nullable=True))

    # A plain ADD COLUMN on both databases, never a copy of the table: on SQLite a copy loses its triggers.
    if op.get_bind().dialect.name == 'postgresql':
        op.add_column('bill_actions', sa.Column('origin', sa.String(length=16), nullable=True))
        op.create_check_constraint('origin', 'bill_actions', ORIGIN_CHECK)
    else:
        op.execute(f'ALTER TABLE bill_actions ADD COLUMN origin VARCHAR(16) CONSTRAINT ck_bill_actions_origin CHECK ({ORIGIN_CHECK})')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_constraint(op.f('ck_bill_actions_origin'), 'bill_actions', type_='check')
    op.drop_column('bill_actions', 'origin')

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('deactivated_at')

    with op.batch_alter_table('login_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_login_attempts_name_created_at')
        batch_op.drop_index('ix_login_attempts_address_created_at')

    op.drop_table('login_attempts')
    with op.batch_alter_table('api_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_sessions_user_id'))

    op.drop_table('api_sessions')
