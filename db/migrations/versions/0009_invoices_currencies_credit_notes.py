"""Invoices, currencies and credit notes: customers' and bills' currency, a sent bill's invoice number and
dates, credit notes, gapless yearly number sequences, and the actions that record usage corrections,
resends and credit notes

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

OLD_ACTIONS = ('DRAFT', 'APPROVE', 'REJECT', 'EDIT', 'SEND', 'UNDO')
NEW_ACTIONS = OLD_ACTIONS + ('RECOMPUTE', 'NOTE', 'RESEND', 'CREDIT')

# SQLite rebuilds a table to change its constraints, and the rebuilt bill_actions has no triggers:
# they are made again (as in 0003 and 0004).
SQLITE_APPEND_ONLY = (
    """
CREATE TRIGGER bill_actions_no_update BEFORE UPDATE ON bill_actions
BEGIN
    SELECT RAISE(ABORT, 'bill_actions is append-only: recorded actions are never changed');
END
""",
    """
CREATE TRIGGER bill_actions_no_delete BEFORE DELETE ON bill_actions
BEGIN
    SELECT RAISE(ABORT, 'bill_actions is append-only: recorded actions are never deleted');
END
""",
)


def _actions_in(words) -> str:
    return 'action IN (' + ', '.join(f"'{word}'" for word in words) + ')'


def _sqlite() -> bool:
    return op.get_bind().dialect.name == 'sqlite'


def upgrade() -> None:
    op.create_table(
        'number_sequences',
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('year', sa.Integer(), nullable=False),
        sa.Column('last_number', sa.Integer(), nullable=False),
        sa.CheckConstraint('last_number > 0', name=op.f('ck_number_sequences_last_number_positive')),
        sa.PrimaryKeyConstraint('kind', 'year', name=op.f('pk_number_sequences')),
    )
    amount = sa.BigInteger() if _sqlite() else sa.Numeric(precision=20, scale=3)
    op.create_table(
        'credit_notes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('bill_id', sa.Integer(), nullable=False),
        sa.Column('number', sa.String(length=64), nullable=False),
        sa.Column('issue_date', sa.Date(), nullable=False),
        sa.Column('amount', amount, nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('issuer', sa.JSON(), nullable=False),
        sa.Column('bill_to', sa.JSON(), nullable=False),
        sa.Column('created_by_id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('emailed_at', sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint('amount > 0', name=op.f('ck_credit_notes_amount_positive')),
        sa.CheckConstraint('length(reason) BETWEEN 1 AND 2000', name=op.f('ck_credit_notes_reason_length')),
        sa.ForeignKeyConstraint(['bill_id'], ['bills.id'], name=op.f('fk_credit_notes_bill_id_bills')),
        sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_credit_notes_created_by_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_credit_notes')),
        sa.UniqueConstraint('number', name=op.f('uq_credit_notes_number')),
    )
    op.create_index(op.f('ix_credit_notes_bill_id'), 'credit_notes', ['bill_id'], unique=False)

    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('currency', sa.String(length=3), server_default='USD', nullable=False))

    with op.batch_alter_table('bills', schema=None) as batch_op:
        batch_op.add_column(sa.Column('currency', sa.String(length=3), server_default='USD', nullable=False))
        batch_op.add_column(sa.Column('invoice_number', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('issue_date', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('due_date', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('issuer', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('bill_to', sa.JSON(), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_bills_invoice_number'), ['invoice_number'])
        if not _sqlite():  # SQLite keeps amounts as integers, rescaled below
            batch_op.alter_column(
                'overage_amount',
                existing_type=sa.Numeric(precision=20, scale=2),
                type_=sa.Numeric(precision=20, scale=3),
                existing_nullable=False,
            )
        batch_op.drop_constraint(batch_op.f('ck_bills_units_positive'), type_='check')
        batch_op.drop_constraint(batch_op.f('ck_bills_amount_positive'), type_='check')
        batch_op.create_check_constraint(
            batch_op.f('ck_bills_units_positive'), "overage_units > 0 OR status = 'WRITEOFF'"
        )
        batch_op.create_check_constraint(
            batch_op.f('ck_bills_amount_positive'),
            "overage_amount > 0 OR (status = 'WRITEOFF' AND overage_amount = 0)",
        )
        batch_op.create_check_constraint(
            batch_op.f('ck_bills_invoice_whole'),
            '(invoice_number IS NULL) = (issue_date IS NULL) AND (issue_date IS NULL) = (due_date IS NULL)',
        )
    if _sqlite():
        # Amounts were stored in cents; they are stored in thousandths now.
        op.execute('UPDATE bills SET overage_amount = overage_amount * 10')

    with op.batch_alter_table('bill_actions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('usage_before', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('usage_after', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('amount_before', amount, nullable=True))
        batch_op.add_column(sa.Column('amount_after', amount, nullable=True))
        batch_op.add_column(sa.Column('credit_note_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f('fk_bill_actions_credit_note_id_credit_notes'), 'credit_notes', ['credit_note_id'], ['id']
        )
        batch_op.drop_constraint(batch_op.f('ck_bill_actions_action'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_bill_actions_action'), _actions_in(NEW_ACTIONS))
    if _sqlite():
        for trigger in SQLITE_APPEND_ONLY:
            op.execute(trigger)


def downgrade() -> None:
    with op.batch_alter_table('bill_actions', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_bill_actions_action'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_bill_actions_action'), _actions_in(OLD_ACTIONS))
        batch_op.drop_constraint(batch_op.f('fk_bill_actions_credit_note_id_credit_notes'), type_='foreignkey')
        batch_op.drop_column('credit_note_id')
        batch_op.drop_column('amount_after')
        batch_op.drop_column('amount_before')
        batch_op.drop_column('usage_after')
        batch_op.drop_column('usage_before')
    if _sqlite():
        for trigger in SQLITE_APPEND_ONLY:
            op.execute(trigger)
        op.execute('UPDATE bills SET overage_amount = overage_amount / 10')

    with op.batch_alter_table('bills', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_bills_invoice_whole'), type_='check')
        batch_op.drop_constraint(batch_op.f('ck_bills_amount_positive'), type_='check')
        batch_op.drop_constraint(batch_op.f('ck_bills_units_positive'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_bills_units_positive'), 'overage_units > 0')
        batch_op.create_check_constraint(batch_op.f('ck_bills_amount_positive'), 'overage_amount > 0')
        if not _sqlite():
            batch_op.alter_column(
                'overage_amount',
                existing_type=sa.Numeric(precision=20, scale=3),
                type_=sa.Numeric(precision=20, scale=2),
                existing_nullable=False,
            )
        batch_op.drop_constraint(batch_op.f('uq_bills_invoice_number'), type_='unique')
        batch_op.drop_column('bill_to')
        batch_op.drop_column('issuer')
        batch_op.drop_column('due_date')
        batch_op.drop_column('issue_date')
        batch_op.drop_column('invoice_number')
        batch_op.drop_column('currency')

    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_column('currency')

    op.drop_index(op.f('ix_credit_notes_bill_id'), table_name='credit_notes')
    op.drop_table('credit_notes')
    op.drop_table('number_sequences')
