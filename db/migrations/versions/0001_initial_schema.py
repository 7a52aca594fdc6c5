"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None

# Money is exact: NUMERIC on PostgreSQL, an integer count of millionths / cents on SQLite (db.types.Money).
UNIT_COST = sa.Numeric(18, 6).with_variant(sa.BigInteger(), "sqlite")
AMOUNT = sa.Numeric(20, 2).with_variant(sa.BigInteger(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('role', sa.Enum('finance', 'customer_success', 'sales', name='role', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('password_digest', sa.String(length=60), nullable=False),
    sa.Column('session_token', sa.String(length=64), nullable=False),
    sa.Column('slack_user_id', sa.String(length=32), nullable=True),
    sa.Column('created_at', TIMESTAMP, nullable=False),
    sa.CheckConstraint('length(name) > 0', name=op.f('ck_users_name_not_empty')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('email', name=op.f('uq_users_email')),
    sa.UniqueConstraint('name', name=op.f('uq_users_name')),
    sa.UniqueConstraint('session_token', name=op.f('uq_users_session_token')),
    sa.UniqueConstraint('slack_user_id', name=op.f('uq_users_slack_user_id'))
    )
    op.create_table('customers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('csm_id', sa.Integer(), nullable=True),
    sa.Column('billing_address', sa.Text(), nullable=False),
    sa.Column('billing_email', sa.String(length=254), nullable=False),
    sa.Column('monthly_api_limit', sa.BigInteger(), nullable=False),
    sa.Column('overage_unit_cost', UNIT_COST, nullable=False),
    sa.Column('start_date', sa.Date(), nullable=False),
    sa.Column('end_date', sa.Date(), nullable=True),
    sa.Column('require_csm_approval', sa.Boolean(), nullable=False),
    sa.CheckConstraint('end_date IS NULL OR end_date >= start_date', name=op.f('ck_customers_end_after_start')),
    sa.CheckConstraint('length(name) > 0', name=op.f('ck_customers_name_not_empty')),
    sa.CheckConstraint('monthly_api_limit >= 0', name=op.f('ck_customers_limit_not_negative')),
    sa.CheckConstraint('overage_unit_cost >= 0', name=op.f('ck_customers_unit_cost_not_negative')),
    sa.ForeignKeyConstraint(['csm_id'], ['users.id'], name=op.f('fk_customers_csm_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customers')),
    sa.UniqueConstraint('name', name=op.f('uq_customers_name'))
    )
    op.create_table('link_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('selector', sa.String(length=16), nullable=False),
    sa.Column('code_digest', sa.String(length=60), nullable=False),
    sa.Column('expires_at', TIMESTAMP, nullable=False),
    sa.Column('used_at', TIMESTAMP, nullable=True),
    sa.Column('created_at', TIMESTAMP, nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_link_codes_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_link_codes')),
    sa.UniqueConstraint('selector', name=op.f('uq_link_codes_selector'))
    )
    with op.batch_alter_table('link_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_link_codes_user_id'), ['user_id'], unique=False)

    op.create_table('bills',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('month', sa.Integer(), nullable=False),
    sa.Column('api_usage', sa.BigInteger(), nullable=False),
    sa.Column('monthly_api_limit', sa.BigInteger(), nullable=False),
    sa.Column('overage_units', sa.BigInteger(), nullable=False),
    sa.Column('overage_unit_cost', UNIT_COST, nullable=False),
    sa.Column('overage_amount', AMOUNT, nullable=False),
    sa.Column('status', sa.Enum('DRAFT', 'FINAL', 'WRITEOFF', 'SENT', name='bill_status', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('slack_channel', sa.String(length=32), nullable=True),
    sa.Column('slack_ts', sa.String(length=32), nullable=True),
    sa.Column('created_at', TIMESTAMP, nullable=False),
    sa.Column('updated_at', TIMESTAMP, nullable=False),
    sa.CheckConstraint('api_usage >= 0', name=op.f('ck_bills_usage_not_negative')),
    sa.CheckConstraint('month BETWEEN 1 AND 12', name=op.f('ck_bills_month_in_range')),
    sa.CheckConstraint('monthly_api_limit >= 0', name=op.f('ck_bills_limit_not_negative')),
    sa.CheckConstraint('overage_amount > 0', name=op.f('ck_bills_amount_positive')),
    sa.CheckConstraint('overage_unit_cost >= 0', name=op.f('ck_bills_unit_cost_not_negative')),
    sa.CheckConstraint('overage_units = api_usage - monthly_api_limit', name=op.f('ck_bills_units_are_overage')),
    sa.CheckConstraint('overage_units > 0', name=op.f('ck_bills_units_positive')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_bills_customer_id_customers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bills')),
    sa.UniqueConstraint('customer_id', 'year', 'month', name=op.f('uq_bills_customer_id_year_month'))
    )
    with op.batch_alter_table('bills', schema=None) as batch_op:
        batch_op.create_index('ix_bills_year_month_status', ['year', 'month', 'status'], unique=False)

    op.create_table('usages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('month', sa.Integer(), nullable=False),
    sa.Column('api_usage', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('api_usage >= 0', name=op.f('ck_usages_usage_not_negative')),
    sa.CheckConstraint('month BETWEEN 1 AND 12', name=op.f('ck_usages_month_in_range')),
    sa.CheckConstraint('year BETWEEN 1900 AND 9999', name=op.f('ck_usages_year_in_range')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_usages_customer_id_customers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_usages')),
    sa.UniqueConstraint('customer_id', 'year', 'month', name=op.f('uq_usages_customer_id_year_month'))
    )
    with op.batch_alter_table('usages', schema=None) as batch_op:
        batch_op.create_index('ix_usages_year_month', ['year', 'month'], unique=False)

    op.create_table('bill_actions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('bill_id', sa.Integer(), nullable=False),
    sa.Column('stakeholder_id', sa.Integer(), nullable=True),
    sa.Column('action', sa.Enum('DRAFT', 'APPROVE', 'REJECT', 'EDIT', 'SEND', 'UNDO', name='action', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('status_before', sa.Enum('DRAFT', 'FINAL', 'WRITEOFF', 'SENT', name='status_before', native_enum=False, create_constraint=True, length=16), nullable=True),
    sa.Column('status_after', sa.Enum('DRAFT', 'FINAL', 'WRITEOFF', 'SENT', name='status_after', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('unit_cost_before', UNIT_COST, nullable=True),
    sa.Column('unit_cost_after', UNIT_COST, nullable=True),
    sa.Column('undone_action_id', sa.Integer(), nullable=True),
    sa.Column('created_at', TIMESTAMP, nullable=False),
    sa.CheckConstraint("(action = 'UNDO') = (undone_action_id IS NOT NULL)", name=op.f('ck_bill_actions_undo_names_its_action')),
    sa.CheckConstraint('comment IS NULL OR length(comment) <= 2000', name=op.f('ck_bill_actions_comment_length')),
    sa.ForeignKeyConstraint(['bill_id'], ['bills.id'], name=op.f('fk_bill_actions_bill_id_bills')),
    sa.ForeignKeyConstraint(['stakeholder_id'], ['users.id'], name=op.f('fk_bill_actions_stakeholder_id_users')),
    sa.ForeignKeyConstraint(['undone_action_id'], ['bill_actions.id'], name=op.f('fk_bill_actions_undone_action_id_bill_actions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bill_actions')),
    sa.UniqueConstraint('undone_action_id', name=op.f('uq_bill_actions_undone_action_id'))
    )
    with op.batch_alter_table('bill_actions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bill_actions_bill_id'), ['bill_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('bill_actions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_bill_actions_bill_id'))

    op.drop_table('bill_actions')
    with op.batch_alter_table('usages', schema=None) as batch_op:
        batch_op.drop_index('ix_usages_year_month')

    op.drop_table('usages')
    with op.batch_alter_table('bills', schema=None) as batch_op:
        batch_op.drop_index('ix_bills_year_month_status')

    op.drop_table('bills')
    with op.batch_alter_table('link_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_link_codes_user_id'))

    op.drop_table('link_codes')
    op.drop_table('customers')
    op.drop_table('users')
