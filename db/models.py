"""The tables of BillProcess as SQLAlchemy 2 typed models."""

from __future__ import annotations

import enum
from datetime import date, datetime, timezone
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    Enum,
    ForeignKey,
    Index,
    Integer,
    JSON,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from db.types import AMOUNT, UNIT_COST, UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


DEFAULT_CURRENCY = "USD"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Role(str, enum.Enum):
    FINANCE = "finance"
    CUSTOMER_SUCCESS = "customer_success"
    SALES = "sales"

    @property
    def label(self) -> str:
        return {"finance": "Finance", "customer_success": "Customer Success", "sales": "Sales"}[self.value]


class BillStatus(str, enum.Enum):
    DRAFT = "DRAFT"
    FINAL = "FINAL"
    WRITEOFF = "WRITEOFF"
    SENT = "SENT"


class ActionOrigin(str, enum.Enum):
    """Who or what took an action that no account took (its stakeholder is empty)."""

    SCHEDULER = "scheduler"  # the scheduled monthly generation
    OPERATOR = "operator"  # an operator on the command line, acting as no account
    POLICY = "policy"  # the approval policy, approving a small bill when it is drafted (bot/approval.py)
    IMPORT = "import"  # a usage import, correcting the bills of a month it changed (bot/corrections.py)

    @property
    def label(self) -> str:
        return {
            "scheduler": "the scheduler",
            "operator": "an operator (command line)",
            "policy": "the approval policy",
            "import": "a usage import",
        }[self.value]


class ActionType(str, enum.Enum):
    DRAFT = "DRAFT"
    APPROVE = "APPROVE"
    REJECT = "REJECT"
    EDIT = "EDIT"
    SEND = "SEND"
    UNDO = "UNDO"
    RECOMPUTE = "RECOMPUTE"  # a usage import changed the bill's usage, and so maybe its amount
    NOTE = "NOTE"  # something happened that concerns the bill without changing it (usage corrected after it)
    RESEND = "RESEND"  # a sent bill emailed once more, with the same invoice number
    CREDIT = "CREDIT"  # a credit note issued against a sent bill


def _stored_enum(enum_class: type[enum.Enum], name: str) -> Enum:
    """A portable enum: VARCHAR plus a CHECK of the stored words, on every database."""
    return Enum(
        enum_class,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        validate_strings=True,
        values_callable=lambda members: [member.value for member in members],
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    email: Mapped[str | None] = mapped_column(String(254), unique=True)
    role: Mapped[Role] = mapped_column(_stored_enum(Role, "role"))
    password_digest: Mapped[str] = mapped_column(String(60))
    session_token: Mapped[str] = mapped_column(String(64), unique=True)
    slack_user_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Away until this day (inclusive): the steps that name this person may be taken by their delegate,
    # or by anyone of their role when they named none (bot/approval.py).
    away_until: Mapped[date | None] = mapped_column(Date)
    delegate_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # Set while the account may not act anywhere (Slack, the API, the command line); its history stays.
    deactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    delegate: Mapped[User | None] = relationship(remote_side="User.id", lazy="selectin", join_depth=1)

    __table_args__ = (
        CheckConstraint("length(name) > 0", name="name_not_empty"),
        CheckConstraint("delegate_id IS NULL OR away_until IS NOT NULL", name="delegate_only_when_away"),
        CheckConstraint("delegate_id IS NULL OR delegate_id <> id", name="delegate_not_self"),
    )

    @property
    def active(self) -> bool:
        return self.deactivated_at is None


class ApiSession(Base):
    """A login to the JSON API: only the SHA-256 digest of its random bearer token is kept."""

    __tablename__ = "api_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)  # hex SHA-256
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()


class LoginAttempt(Base):
    """A password login to the API, kept to throttle guessing per account name and per address."""

    __tablename__ = "login_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))  # the account name as given, known or not
    address: Mapped[str] = mapped_column(String(64))  # the client's IP address
    succeeded: Mapped[bool]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_login_attempts_name_created_at", "name", "created_at"),
        Index("ix_login_attempts_address_created_at", "address", "created_at"),
    )


class LinkCode(Base):
    """A one-time code that links a Slack user to an account; only its bcrypt digest is kept."""

    __tablename__ = "link_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    selector: Mapped[str] = mapped_column(String(16), unique=True)
    code_digest: Mapped[str] = mapped_column(String(60))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    user: Mapped[User] = relationship()


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    csm_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    billing_address: Mapped[str] = mapped_column(Text)
    billing_email: Mapped[str] = mapped_column(String(254))
    monthly_api_limit: Mapped[int] = mapped_column(BigInteger)
    overage_unit_cost: Mapped[Decimal] = mapped_column(UNIT_COST)
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)
    require_csm_approval: Mapped[bool] = mapped_column(default=False)
    # ISO 4217; bills take it when they are drafted.
    currency: Mapped[str] = mapped_column(String(3), default=DEFAULT_CURRENCY, server_default=DEFAULT_CURRENCY)

    csm: Mapped[User | None] = relationship()

    def __init__(self, **fields):
        fields.setdefault("currency", DEFAULT_CURRENCY)  # also before the row is written
        super().__init__(**fields)

    __table_args__ = (
        CheckConstraint("length(name) > 0", name="name_not_empty"),
        CheckConstraint("monthly_api_limit >= 0", name="limit_not_negative"),
        CheckConstraint("monthly_api_limit <= 1000000000000", name="limit_at_most_max_calls"),
        CheckConstraint("overage_unit_cost >= 0", name="unit_cost_not_negative"),
        CheckConstraint("end_date IS NULL OR end_date >= start_date", name="end_after_start"),
    )


class Usage(Base):
    __tablename__ = "usages"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    year: Mapped[int] = mapped_column(Integer)
    month: Mapped[int] = mapped_column(Integer)
    api_usage: Mapped[int] = mapped_column(BigInteger)

    customer: Mapped[Customer] = relationship()

    __table_args__ = (
        UniqueConstraint("customer_id", "year", "month"),
        CheckConstraint("month BETWEEN 1 AND 12", name="month_in_range"),
        CheckConstraint("year BETWEEN 1900 AND 9999", name="year_in_range"),
        CheckConstraint("api_usage >= 0", name="usage_not_negative"),
        CheckConstraint("api_usage <= 1000000000000", name="usage_at_most_max_calls"),
        Index("ix_usages_year_month", "year", "month"),
    )


class Bill(Base):
    __tablename__ = "bills"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    year: Mapped[int] = mapped_column(Integer)
    month: Mapped[int] = mapped_column(Integer)
    api_usage: Mapped[int] = mapped_column(BigInteger)
    monthly_api_limit: Mapped[int] = mapped_column(BigInteger)
    overage_units: Mapped[int] = mapped_column(BigInteger)
    overage_unit_cost: Mapped[Decimal] = mapped_column(UNIT_COST)
    overage_amount: Mapped[Decimal] = mapped_column(AMOUNT)
    status: Mapped[BillStatus] = mapped_column(_stored_enum(BillStatus, "bill_status"))
    slack_channel: Mapped[str | None] = mapped_column(String(32))
    slack_ts: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # Set while the bill's email is on its way, cleared once the outcome is known; a marker that stays
    # means the mail server may have the email (see bot/workflow.py `send`).
    sending_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sending_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    sending_error: Mapped[str | None] = mapped_column(String(300))  # why the outcome is unknown, when known
    # The currency of the amounts, the customer's when the bill was drafted.
    currency: Mapped[str] = mapped_column(String(3), default=DEFAULT_CURRENCY, server_default=DEFAULT_CURRENCY)
    # The invoice, set when the bill is first sent and never changed (bot/invoices.py): its number from the
    # gapless yearly sequence, its dates, and the issuer and customer as they were then.
    invoice_number: Mapped[str | None] = mapped_column(String(64), unique=True)
    issue_date: Mapped[date | None] = mapped_column(Date)
    due_date: Mapped[date | None] = mapped_column(Date)
    issuer: Mapped[dict | None] = mapped_column(JSON)
    bill_to: Mapped[dict | None] = mapped_column(JSON)

    customer: Mapped[Customer] = relationship()
    actions: Mapped[list[BillAction]] = relationship(back_populates="bill", order_by="BillAction.id")
    sending_by: Mapped[User | None] = relationship()
    credit_notes: Mapped[list[CreditNote]] = relationship(back_populates="bill", order_by="CreditNote.id")

    def __init__(self, **fields):
        fields.setdefault("currency", DEFAULT_CURRENCY)  # also before the row is written
        super().__init__(**fields)

    __table_args__ = (
        UniqueConstraint("customer_id", "year", "month"),
        CheckConstraint("month BETWEEN 1 AND 12", name="month_in_range"),
        CheckConstraint("api_usage >= 0", name="usage_not_negative"),
        CheckConstraint("monthly_api_limit >= 0", name="limit_not_negative"),
        # A bill written off because corrected usage left no overage keeps the corrected figures.
        CheckConstraint("overage_units > 0 OR status = 'WRITEOFF'", name="units_positive"),
        CheckConstraint("overage_unit_cost >= 0", name="unit_cost_not_negative"),
        CheckConstraint("overage_amount > 0 OR (status = 'WRITEOFF' AND overage_amount = 0)", name="amount_positive"),
        CheckConstraint("overage_units = api_usage - monthly_api_limit", name="units_are_overage"),
        Index("ix_bills_year_month_status", "year", "month", "status"),
        CheckConstraint("(sending_started_at IS NULL) = (sending_by_id IS NULL)", name="sending_marker_whole"),
        CheckConstraint(
            "(invoice_number IS NULL) = (issue_date IS NULL) AND (issue_date IS NULL) = (due_date IS NULL)",
            name="invoice_whole",
        ),
    )


class BillAction(Base):
    """One change of a bill. Append-only: rows are never updated or deleted."""

    __tablename__ = "bill_actions"

    id: Mapped[int] = mapped_column(primary_key=True)
    bill_id: Mapped[int] = mapped_column(ForeignKey("bills.id"), index=True)
    stakeholder_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    action: Mapped[ActionType] = mapped_column(_stored_enum(ActionType, "action"))
    comment: Mapped[str | None] = mapped_column(Text)
    status_before: Mapped[BillStatus | None] = mapped_column(_stored_enum(BillStatus, "status_before"))
    status_after: Mapped[BillStatus] = mapped_column(_stored_enum(BillStatus, "status_after"))
    unit_cost_before: Mapped[Decimal | None] = mapped_column(UNIT_COST)
    unit_cost_after: Mapped[Decimal | None] = mapped_column(UNIT_COST)
    undone_action_id: Mapped[int | None] = mapped_column(ForeignKey("bill_actions.id"), unique=True)
    # What a DRAFT or EDIT fixed of the bill's approval (bot/approval.py): the policy file's rules (empty:
    # none), and whether the customer required its CSM's approval then.
    policy: Mapped[dict | None] = mapped_column(JSON(none_as_null=True))
    require_csm_approval: Mapped[bool | None]
    # A RECOMPUTE (and the UNDO of one) records the usage and amount it changed.
    usage_before: Mapped[int | None] = mapped_column(BigInteger)
    usage_after: Mapped[int | None] = mapped_column(BigInteger)
    amount_before: Mapped[Decimal | None] = mapped_column(AMOUNT)
    amount_after: Mapped[Decimal | None] = mapped_column(AMOUNT)
    credit_note_id: Mapped[int | None] = mapped_column(ForeignKey("credit_notes.id"))  # a CREDIT's note
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Who or what acted when no account did (an empty stakeholder); empty on older rows: the scheduler.
    origin: Mapped[ActionOrigin | None] = mapped_column(_stored_enum(ActionOrigin, "origin"))

    bill: Mapped[Bill] = relationship(back_populates="actions")
    stakeholder: Mapped[User | None] = relationship()
    credit_note: Mapped[CreditNote | None] = relationship()

    __table_args__ = (
        CheckConstraint("comment IS NULL OR length(comment) <= 2000", name="comment_length"),
        CheckConstraint(
            "(action = 'UNDO') = (undone_action_id IS NOT NULL)", name="undo_names_its_action"
        ),
    )


class CreditNote(Base):
    """A credit note against a sent bill: numbered from its own yearly sequence, never changed."""

    __tablename__ = "credit_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    bill_id: Mapped[int] = mapped_column(ForeignKey("bills.id"), index=True)
    number: Mapped[str] = mapped_column(String(64), unique=True)
    issue_date: Mapped[date] = mapped_column(Date)
    amount: Mapped[Decimal] = mapped_column(AMOUNT)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(Text)
    issuer: Mapped[dict] = mapped_column(JSON)
    bill_to: Mapped[dict] = mapped_column(JSON)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    emailed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # when the mail server accepted it

    bill: Mapped[Bill] = relationship(back_populates="credit_notes")
    created_by: Mapped[User] = relationship()

    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("length(reason) BETWEEN 1 AND 2000", name="reason_length"),
    )


class NumberSequence(Base):
    """The last number given in one gapless yearly sequence (invoices, credit notes)."""

    __tablename__ = "number_sequences"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_number: Mapped[int] = mapped_column(Integer)

    __table_args__ = (CheckConstraint("last_number > 0", name="last_number_positive"),)


class LinkAttempt(Base):
    """A `/bill link CODE` attempt, kept to lock out a Slack user who keeps guessing."""

    __tablename__ = "link_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    slack_user_id: Mapped[str] = mapped_column(String(32))
    succeeded: Mapped[bool]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_link_attempts_slack_user_id_created_at", "slack_user_id", "created_at"),)


class SlackEvent(Base):
    """An Events API delivery already handled, so that Slack's retries of it are processed once."""

    __tablename__ = "slack_events"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OutboxStatus(str, enum.Enum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class OutboxKind(str, enum.Enum):
    """What an outbox row asks the delivery workers to do."""

    JOB = "job"  # a click or a command, recorded before its acknowledgement, to apply
    BILL_MESSAGE = "bill_message"  # post the bill's message, or bring it up to the bill's current state
    THREAD_REPLY = "thread_reply"  # one action, in the bill's thread
    HOMES = "homes"  # republish every linked person's App Home
    HOME = "home"  # republish one person's App Home
    RESPOND = "respond"  # an answer to one person: ephemeral through a response_url, else a DM
    REMINDER = "reminder"  # one approver's reminder DM of the day
    GENERATION = "generation"  # a month's generation summary, updated while its bills are posted


class Outbox(Base):
    """Work that follows a change: written in the change's transaction, done by the delivery workers.

    Rows of one `lane` are delivered one at a time in id order (a bill's post before its thread replies
    and updates); rows of different lanes go out in parallel.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    kind: Mapped[OutboxKind] = mapped_column(_stored_enum(OutboxKind, "outbox_kind"))
    lane: Mapped[str] = mapped_column(String(80))
    bill_id: Mapped[int | None] = mapped_column(ForeignKey("bills.id"), index=True)
    slack_user_id: Mapped[str | None] = mapped_column(String(32))
    payload: Mapped[dict | None] = mapped_column(JSON)
    dedupe_key: Mapped[str | None] = mapped_column(String(120), unique=True)
    status: Mapped[OutboxStatus] = mapped_column(_stored_enum(OutboxStatus, "outbox_status"), default=OutboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A call that may have reached Slack without its answer reaching us: look before posting again.
    outcome_unknown: Mapped[bool] = mapped_column(default=False)
    last_error: Mapped[str | None] = mapped_column(String(300))
    slack_channel: Mapped[str | None] = mapped_column(String(32))
    slack_ts: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        Index(
            "ix_outbox_pending",
            "id",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index(
            "ix_outbox_pending_lane",
            "lane",
            "id",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index("ix_outbox_status_finished_at", "status", "finished_at"),
    )


class ScheduledRun(Base):
    """One occurrence of a scheduled job, claimed by the instance that runs it (so it runs once)."""

    __tablename__ = "scheduled_runs"

    job: Mapped[str] = mapped_column(String(32), primary_key=True)
    fire_time: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SeenSignature(Base):
    """The signature of a request from Slack already accepted, so that a replay of it is refused."""

    __tablename__ = "seen_signatures"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)  # hex HMAC-SHA256
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
