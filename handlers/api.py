"""The JSON API under `/api`, served by `serve` beside Slack's events: the same services, permissions and
refusals as Slack, and every change reaches Slack the same way (the services write the outbox).

Routes are declared below with pydantic models (flask-openapi3), which validate each request and make
the OpenAPI document at `/api/openapi.json`. A caller is a person, by the bearer token of a login
(`POST /api/session`), or an operator, by the token in API_OPERATOR_TOKEN: operators manage accounts and
customers, persons act on bills. Every refusal is an RFC 9457 problem document (`application/problem+json`)
with a specific `detail`; bad input names its field.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, Literal

from flask import Response, current_app, request
from flask_openapi3 import APIBlueprint, Info, OpenAPI, Tag
from flask_openapi3.models import Schema
from flask_openapi3.utils import get_model_schema
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.exceptions import HTTPException

from bot import accounts, approval, billing, bills, customers, logins, workflow
from bot.errors import (
    AlreadyDone,
    BillProcessError,
    Conflict,
    DeliveryFailed,
    DeliveryUncertain,
    InvalidFields,
    InvalidInput,
    InvalidTransition,
    MonthNotEnded,
    NotAllowed,
    NotFound,
    WaitingForOther,
)
from bot.formatting import actor_name, bill_amount
from bot.imports import CUSTOMER_COLUMNS, OPTIONAL_CUSTOMER_COLUMNS
from bot.invoices import Invoicing
from bot.mailer import Mailer
from bot.parsing import parse_reason
from bot.money import plain
from bot.parsing import parse_email
from bot.periods import Period
from bot.settings import Settings
from bot.text import storable
from db.models import ActionType, Bill, BillAction, BillStatus, Customer, Role, User
from handlers.errors import database_outage, is_database_outage

log = logging.getLogger(__name__)

PREFIX = "/api"
DOCUMENT_PATH = f"{PREFIX}/openapi.json"
PROBLEM_TYPE = "application/problem+json"
MAX_ID = bills.MAX_ROW_ID
MAX_PER_PAGE = 200
BEARER = [{"bearer": []}]
# A customer's JSON fields are a customers file's columns.
CUSTOMER_FIELDS = CUSTOMER_COLUMNS + OPTIONAL_CUSTOMER_COLUMNS


@dataclass(frozen=True)
class ApiServices:
    """What the routes need; kept in the Flask app's `extensions`."""

    settings: Settings
    sessions: sessionmaker[Session]
    mailer: Mailer
    invoicing: Invoicing


def services() -> ApiServices:
    return current_app.extensions["billprocess"]


@contextmanager
def database() -> Iterator[Session]:
    with services().sessions() as session:
        yield session


# --- who is calling --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """A person (by a login's token) or an operator (by API_OPERATOR_TOKEN, as no account)."""

    user: User | None
    token: str = dataclasses.field(repr=False)

    @property
    def operator(self) -> bool:
        return self.user is None


def caller() -> Caller:
    """The caller of this request, by its bearer token; NotAuthenticated without a valid one."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if not header:
        raise logins.NotAuthenticated(
            "send a bearer token (Authorization: Bearer TOKEN); POST /api/session with your name and password gives one"
        )
    if scheme.lower() != "bearer" or not token:
        raise logins.NotAuthenticated("the Authorization header must be `Bearer TOKEN`")
    operator_token = services().settings.api_operator_token
    if operator_token is not None and hmac.compare_digest(
        token.encode("utf-8", "surrogatepass"), operator_token.get_secret_value().encode()
    ):
        return Caller(user=None, token=token)
    with database() as session:
        return Caller(user=logins.authenticate(session=session, token=token), token=token)


def person() -> User:
    """The account of the person calling; operators act as no account. What it may do, the services say."""
    who = caller()
    if who.user is None:
        raise NotAllowed("the operator token acts as no account; log in as a person (POST /api/session) for this")
    return who.user


def operator() -> None:
    """Refuse anyone but an operator."""
    if not caller().operator:
        raise NotAllowed("only operators (with API_OPERATOR_TOKEN) manage accounts and customers")


# --- problem documents (RFC 9457) ----------------------------------------------------------------


class FieldProblem(BaseModel):
    field: str = Field(description="the input at fault: a body field, query or path parameter")
    detail: str


class Problem(BaseModel):
    """An RFC 9457 problem document: what went wrong, for a person to read in `detail`."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldProblem] | None = Field(default=None, description="each bad input (422 only)")


@dataclass(frozen=True)
class HttpStatus:
    code: int
    title: str


UNAUTHORIZED = HttpStatus(401, "Unauthorized")
FORBIDDEN = HttpStatus(403, "Forbidden")
NOT_FOUND = HttpStatus(404, "Not Found")
CONFLICT = HttpStatus(409, "Conflict")
UNPROCESSABLE = HttpStatus(422, "Unprocessable Content")
TOO_MANY = HttpStatus(429, "Too Many Requests")
BAD_GATEWAY = HttpStatus(502, "Bad Gateway")
UNAVAILABLE = HttpStatus(503, "Service Unavailable")
STATUSES = {status.code: status for status in (
    UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT, UNPROCESSABLE, TOO_MANY, BAD_GATEWAY, UNAVAILABLE)}

# Domain errors, most specific first: WaitingForOther is a NotAllowed, but a matter of the bill's state.
ERROR_STATUS: list[tuple[type[Exception], HttpStatus]] = [
    (logins.NotAuthenticated, UNAUTHORIZED),
    (logins.TooManyAttempts, TOO_MANY),
    (WaitingForOther, CONFLICT),
    (NotAllowed, FORBIDDEN),
    (NotFound, NOT_FOUND),
    (AlreadyDone, CONFLICT),
    (InvalidTransition, CONFLICT),
    (Conflict, CONFLICT),
    (DeliveryFailed, BAD_GATEWAY),
    (DeliveryUncertain, BAD_GATEWAY),
    (InvalidInput, UNPROCESSABLE),
    (MonthNotEnded, UNPROCESSABLE),
    (BillProcessError, UNPROCESSABLE),
]


def problem(status: HttpStatus, detail: str, *, errors: list[FieldProblem] | None = None,
            headers: dict[str, str] | None = None) -> Response:
    document = Problem(title=status.title, status=status.code, detail=detail, instance=request.path, errors=errors)
    body = document.model_dump_json(exclude_none=True)
    return Response(body, status=status.code, mimetype=PROBLEM_TYPE, headers=headers)


def domain_problem(error: BillProcessError) -> Response:
    status = next(status for kind, status in ERROR_STATUS if isinstance(error, kind))
    headers = {}
    if status is UNAUTHORIZED:
        headers["WWW-Authenticate"] = 'Bearer realm="billprocess"'
    if isinstance(error, logins.TooManyAttempts):
        headers["Retry-After"] = str(error.retry_after)
    errors = None
    if isinstance(error, InvalidFields):
        errors = [FieldProblem(field=field or "body", detail=reason) for field, reason in error.problems]
    elif isinstance(error, BadField):
        errors = [FieldProblem(field=error.field, detail=str(error))]
    return problem(status, str(error), errors=errors, headers=headers)


class BadField(InvalidInput):
    """Input refused by a service's parser, with the field it came from."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@contextmanager
def field(name: str) -> Iterator[None]:
    """Name the field when the parsing inside refuses its value."""
    try:
        yield
    except InvalidFields:
        raise
    except (InvalidInput, MonthNotEnded) as refusal:
        raise BadField(name, str(refusal)) from None


def invalid_request(error: ValidationError) -> Response:
    """A request that does not match its operation's models: 422, each field with what is wrong."""
    errors = []
    for item in error.errors(include_url=False, include_input=False):  # the input may be a password
        location = ".".join(str(part) for part in item["loc"]) or "body"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "model_type":  # names the model, which means nothing to the caller
            message = "must be a JSON object"
        elif item["type"] == "extra_forbidden":
            message = "is not one this route takes"
        elif item["type"] == "string_pattern_mismatch":
            message = PATTERN_MEANING.get(item["ctx"]["pattern"], message)
        errors.append(FieldProblem(field=location, detail=message))
    if request.content_length and request.get_json(silent=True) is None and request.method in ("POST", "PATCH", "PUT"):
        detail = "the body must be a JSON object (Content-Type: application/json)"
    else:
        detail = "; ".join(f"{item.field}: {item.detail}" for item in errors)
    return problem(UNPROCESSABLE, detail, errors=errors)


def _problem_response(status: HttpStatus) -> dict:
    return {
        "description": status.title,
        "content": {PROBLEM_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def refusals(*codes: int) -> dict:
    """The problem documents an operation may answer with, for its `responses`."""
    return {code: _problem_response(STATUSES[code]) for code in codes}


# --- what the API takes ----------------------------------------------------------------------------


def _storable(value: str) -> str:
    try:
        return storable(value, "The text")
    except InvalidInput as refusal:
        raise ValueError(str(refusal)) from None


# Text a database can store: no NUL (the document says so too, for clients that check before sending).
Text = Annotated[str, AfterValidator(_storable), Field(json_schema_extra={"pattern": r"^[^\x00]*$"})]
MONTH_PATTERN = r"^[0-9]{4}-[0-9]{2}$"
Month = Annotated[str, Field(pattern=MONTH_PATTERN, description="a month, YYYY-MM")]
RowId = Annotated[int, Field(ge=1, le=MAX_ID)]
RoleName = Literal["finance", "customer_success", "sales"]
StatusName = Literal["DRAFT", "FINAL", "WRITEOFF", "SENT"]
ActionName = Literal[tuple(action.value for action in ActionType)]
MONTH = Field(pattern=MONTH_PATTERN, description="a month, YYYY-MM", examples=["2026-10"])
MONEY = Field(
    pattern=r"^[0-9]+(\.[0-9]{1,3})?$", description="an exact amount in the currency's units, with its places",
    examples=["1500.00"],
)
CURRENCY = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217", examples=["USD"])
UNIT_COST = Field(pattern=r"^[0-9]+\.[0-9]{6}$", description="an exact cost per call", examples=["0.000125"])


PATTERN_MEANING = {
    MONTH_PATTERN: "must be a month written YYYY-MM, e.g. 2026-10",
}


class Body(BaseModel):
    """A JSON body: its values of the types the document says (no 0 for false), and no others."""

    model_config = ConfigDict(extra="forbid", strict=True)


class OptionalBody(Body):
    """A body that may be left out altogether."""

    model_config = ConfigDict(extra="forbid", strict=True, openapi_extra={"required": False})

    @model_validator(mode="before")
    @classmethod
    def _absent_is_empty(cls, value: Any) -> Any:
        # No body at all is an empty one; a body of JSON's null, or that is not JSON, is refused as usual.
        return {} if value is None and not request.get_data(cache=True) else value


class Credentials(Body):
    name: Text = Field(min_length=1, max_length=accounts.NAME_MAX_LENGTH)
    password: Text = Field(min_length=1, max_length=1000)


class NewUser(Body):
    name: Text = Field(min_length=1, max_length=accounts.NAME_MAX_LENGTH)
    role: RoleName
    email: Text | None = Field(default=None, max_length=254)
    password: Text = Field(min_length=1, max_length=1000)


class UserChange(Body):
    """Exactly one change: a new name, a new role (with `force` when it affects more), or active or not."""

    name: Text | None = Field(default=None, min_length=1, max_length=accounts.NAME_MAX_LENGTH)
    role: RoleName | None = None
    force: bool = Field(
        default=False,
        description="change the role or the name even when it affects customers, the team or the approval policy",
    )
    active: bool | None = Field(default=None, description="false deactivates the account, true reactivates it")


class NewPassword(Body):
    password: Text = Field(min_length=1, max_length=1000)


class CustomerTerms(Body):
    """A customer's terms, as the columns of a customers file hold them; checked as a file's rows are."""

    billing_address: Text | None = Field(default=None, max_length=2000)
    billing_email: Text | None = Field(default=None, max_length=254)
    monthly_api_limit: int | None = Field(default=None, description="API calls a month without overage")
    overage_unit_cost: Text | None = Field(default=None, max_length=40, description="e.g. 0.000125")
    start_date: Text | None = Field(default=None, max_length=20, description="YYYY-MM-DD")
    end_date: Text | None = Field(default=None, max_length=20, description="YYYY-MM-DD; null: none")
    require_csm_approval: bool | None = Field(default=None, description="two-step approval: the CSM, then Sales")
    csm: Text | None = Field(
        default=None, max_length=accounts.NAME_MAX_LENGTH, description="an account name; null: none"
    )
    currency: Text | None = Field(default=None, max_length=3, description="ISO 4217, e.g. USD (the default)")

    def file_values(self, given_only: bool) -> dict[str, str]:
        """The values as a customers file holds them; `given_only` leaves out what the body does not name."""
        values = {}
        for name in CUSTOMER_FIELDS:
            if name not in type(self).model_fields or (given_only and name not in self.model_fields_set):
                continue
            value = getattr(self, name)
            if isinstance(value, bool):
                value = "true" if value else "false"
            values[name] = "" if value is None else str(value)
        return values


class NewCustomer(CustomerTerms):
    name: Text = Field(min_length=1, max_length=200)
    require_csm_approval: bool = Field(default=False, description="two-step approval: the CSM, then Sales")


class Reason(Body):
    reason: Text = Field(max_length=10_000, description="1–2000 characters")


class OptionalReason(OptionalBody):
    reason: Text | None = Field(default=None, max_length=10_000)


class UnitCost(Body):
    unit_cost: Text = Field(max_length=40, description="the new cost per call, an exact decimal such as 0.0125")


class SendOptions(OptionalBody):
    again: bool = Field(default=False, description="email it once more after a send that was not confirmed")
    delivered: bool = Field(
        default=False, description="record it as sent, without emailing, after a send that was not confirmed"
    )


class Generate(OptionalBody):
    month: Month | None = Field(default=None, description="YYYY-MM; default: last month")


class UserPath(BaseModel):
    user_id: RowId


class CustomerPath(BaseModel):
    customer_id: RowId


class BillPath(BaseModel):
    bill_id: RowId


def _never_null(schema: dict) -> None:
    """A query parameter is left out or has a value; it is never null (a query string cannot say null)."""
    for prop in schema.get("properties", {}).values():
        choices = [choice for choice in prop.pop("anyOf", []) if choice.get("type") != "null"]
        if len(choices) == 1:
            prop.update(choices[0])
        elif choices:
            prop["anyOf"] = choices
        if prop.get("default") is None:
            prop.pop("default", None)


class Query(BaseModel):
    """Query parameters: the ones the document names, and no others."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_never_null)


class BillFilters(Query):
    status: StatusName | None = None
    month: Month | None = None
    customer_id: RowId | None = None
    page: int = Field(default=1, ge=1, le=1_000_000)
    per_page: int = Field(default=50, ge=1, le=MAX_PER_PAGE)


class UsageQuery(Query):
    customer_id: RowId
    year: int | None = Field(default=None, ge=1900, le=9999, description="default: every recorded month")


# --- what the API answers --------------------------------------------------------------------------


class UserRef(BaseModel):
    id: int
    name: str


class UserOut(UserRef):
    role: RoleName
    email: str | None
    slack_linked: bool
    active: bool
    created_at: datetime


class UserList(BaseModel):
    items: list[UserOut]


class SessionOut(BaseModel):
    token: str = Field(description="send it back as `Authorization: Bearer TOKEN`; it is shown only once")
    expires_at: datetime
    user: UserOut


class CustomerRef(BaseModel):
    id: int
    name: str


class CustomerOut(CustomerRef):
    billing_address: str
    billing_email: str
    monthly_api_limit: int
    overage_unit_cost: str = UNIT_COST
    start_date: date
    end_date: date | None
    require_csm_approval: bool
    csm: UserRef | None
    currency: str = CURRENCY


class CustomerList(BaseModel):
    items: list[CustomerOut]


class UsageMonth(BaseModel):
    month: str = MONTH
    api_usage: int | None = Field(description="null: no usage recorded for the month")
    limit: int
    over_limit: bool
    overage: int


class BillOut(BaseModel):
    id: int
    customer: CustomerRef
    month: str = MONTH
    status: StatusName
    api_usage: int
    monthly_api_limit: int
    overage_units: int
    overage_unit_cost: str = UNIT_COST
    overage_amount: str = MONEY
    currency: str = CURRENCY
    amount: str = Field(description="the amount as people read it", examples=["$1,500.00"])
    invoice_number: str | None = Field(description="given when the bill is first sent")
    issue_date: date | None
    due_date: date | None
    created_at: datetime
    updated_at: datetime


class CustomerDetail(CustomerOut):
    usage: list[UsageMonth] = Field(description="the 12 months ending last month, oldest first")
    bills: list[BillOut] = Field(description="the latest bills, newest first")
    bill_count: int


class UsageOut(BaseModel):
    customer: CustomerRef
    year: int | None
    months: list[UsageMonth]


class ActionOut(BaseModel):
    id: int
    action: ActionName
    by: str = Field(description="who took it: an account's name, or the scheduler, an operator, the approval"
                                " policy or a usage import")
    user: UserRef | None
    status_before: StatusName | None
    status_after: StatusName
    comment: str | None
    unit_cost_before: str | None = UNIT_COST
    unit_cost_after: str | None = UNIT_COST
    undid_action_id: int | None
    at: datetime


class StepOut(BaseModel):
    number: int
    who: str = Field(description="who takes the step, as a person reads it")
    roles: list[RoleName]
    user: UserRef | None = Field(description="the one person who may take it, when only one may")
    approvers: int = Field(description="how many distinct people must approve")
    reason: str | None = Field(description="why the bill needs this step")
    done: bool
    approved_by: list[UserRef]
    approved_at: datetime | None


class ApprovalOut(BaseModel):
    steps: list[StepOut]
    waiting_for: int | None = Field(description="the number of the step the bill waits for; null unless DRAFT")


class SendingOut(BaseModel):
    started_at: datetime
    by: UserRef | None
    uncertain: bool = Field(description="the email may have reached the customer: send again only on purpose")
    summary: str


class CreditNoteOut(BaseModel):
    number: str
    issue_date: date
    amount: str = MONEY
    currency: str = CURRENCY
    reason: str
    emailed: bool


class BillDetail(BillOut):
    approval: ApprovalOut
    history: list[ActionOut]
    sending: SendingOut | None
    credit_notes: list[CreditNoteOut]
    warnings: list[str] = Field(default=[], description="what the change did not manage, e.g. an email that failed")
    you_can: list[Literal["approve", "reject", "edit", "send", "undo", "resend", "credit"]] = Field(
        description="what the caller may do with the bill now"
    )


class BillPage(BaseModel):
    items: list[BillOut]
    page: int
    per_page: int
    total: int


class GenerationOut(BaseModel):
    month: str = MONTH
    created: int
    totals: dict[str, str] = Field(description="the created bills' total per currency (never added across them)")
    skipped: dict[str, int] = Field(description="customers skipped, by reason")
    summary: list[str] = Field(description="the summary as `/bill generate` says it")


# --- from the domain to the answers ----------------------------------------------------------------


def _user_ref(user: User | None) -> UserRef | None:
    return UserRef(id=user.id, name=user.name) if user is not None else None


def _user(user: User) -> UserOut:
    return UserOut(id=user.id, name=user.name, role=user.role.value, email=user.email,
                   slack_linked=user.slack_user_id is not None, active=user.active, created_at=user.created_at)


def _customer(customer: Customer) -> CustomerOut:
    return CustomerOut(**_customer_fields(customer))


def _customer_fields(customer: Customer) -> dict:
    return {
        "id": customer.id,
        "name": customer.name,
        "billing_address": customer.billing_address,
        "billing_email": customer.billing_email,
        "monthly_api_limit": customer.monthly_api_limit,
        "overage_unit_cost": f"{customer.overage_unit_cost:.6f}",
        "start_date": customer.start_date,
        "end_date": customer.end_date,
        "require_csm_approval": customer.require_csm_approval,
        "csm": _user_ref(customer.csm),
        "currency": customer.currency,
    }


def _month(usage: customers.MonthUsage) -> UsageMonth:
    return UsageMonth(month=str(usage.period), api_usage=usage.api_usage, limit=usage.limit,
                      over_limit=usage.over_limit, overage=usage.overage)


def _bill_fields(bill: Bill) -> dict:
    return {
        "id": bill.id,
        "customer": CustomerRef(id=bill.customer.id, name=bill.customer.name),
        "month": f"{bill.year:04d}-{bill.month:02d}",
        "status": bill.status.value,
        "api_usage": bill.api_usage,
        "monthly_api_limit": bill.monthly_api_limit,
        "overage_units": bill.overage_units,
        "overage_unit_cost": f"{bill.overage_unit_cost:.6f}",
        "overage_amount": plain(bill.overage_amount, bill.currency),
        "currency": bill.currency,
        "amount": bill_amount(bill),
        "invoice_number": bill.invoice_number,
        "issue_date": bill.issue_date,
        "due_date": bill.due_date,
        "created_at": bill.created_at,
        "updated_at": bill.updated_at,
    }


def _bill(bill: Bill) -> BillOut:
    return BillOut(**_bill_fields(bill))


def _cost(cost) -> str | None:
    return f"{cost:.6f}" if cost is not None else None


def _action(action: BillAction) -> ActionOut:
    return ActionOut(
        id=action.id, action=action.action.value, by=actor_name(action), user=_user_ref(action.stakeholder),
        status_before=action.status_before.value if action.status_before else None,
        status_after=action.status_after.value, comment=action.comment,
        unit_cost_before=_cost(action.unit_cost_before), unit_cost_after=_cost(action.unit_cost_after),
        undid_action_id=action.undone_action_id, at=action.created_at,
    )


def approval_steps(bill: Bill) -> ApprovalOut:
    """The approvals the bill needs, in order, and how far it got: the one place the API reads them."""
    state = approval.progress(bill)
    waiting = state.waiting_for
    steps = [
        StepOut(
            number=step.number,
            who=step.label,
            roles=[role.value for role in Role if role in step.roles],
            user=_user_ref(step.person),
            approvers=step.approvers,
            reason=step.reason,
            done=step.done,
            approved_by=[ref for ref in (_user_ref(given.stakeholder) for given in step.approvals) if ref is not None],
            approved_at=step.approvals[-1].created_at if step.approvals else None,
        )
        for step in state.steps
    ]
    return ApprovalOut(steps=steps, waiting_for=waiting.number if waiting else None)


def _bill_detail(bill: Bill, user: User | None, warnings: list[str] | None = None) -> BillDetail:
    current = workflow.sending(bill)
    sending = None
    if current is not None:
        sending = SendingOut(started_at=current.started_at, by=_user_ref(current.by), uncertain=current.uncertain,
                             summary=current.summary)
    allowed = workflow.available_actions(bill, user) if user is not None else set()
    return BillDetail(
        **_bill_fields(bill),
        approval=approval_steps(bill),
        history=[_action(action) for action in bill.actions],
        credit_notes=[
            CreditNoteOut(number=note.number, issue_date=note.issue_date, amount=plain(note.amount, note.currency),
                          currency=note.currency, reason=note.reason, emailed=note.emailed_at is not None)
            for note in bill.credit_notes
        ],
        sending=sending,
        warnings=warnings or [],
        you_can=[action.value.lower() for action in ActionType if action in allowed],
    )


def reply(model: BaseModel, status: int = 200) -> Response:
    return Response(model.model_dump_json(), status=status, mimetype="application/json")


def _bill_now(bill_id: int, user: User | None, warnings: list[str] | None = None) -> Response:
    with database() as session:
        return reply(_bill_detail(bills.get_bill(session=session, bill_id=bill_id), user, warnings or []))


# --- the routes ------------------------------------------------------------------------------------

def _routes(name: str, *, secured: bool = True) -> APIBlueprint:
    """The routes of one tag; every operation's id is its function's name."""
    return APIBlueprint(
        name, __name__, url_prefix=PREFIX, abp_tags=[Tag(name=name)], abp_security=BEARER if secured else None,
        abp_responses=refusals(422, 503), operation_id_callback=lambda *, name, **_: name,
    )


sessions_api = _routes("session", secured=False)
users_api = _routes("users")
customers_api = _routes("customers")
bills_api = _routes("bills")
BLUEPRINTS = (sessions_api, users_api, customers_api, bills_api)


@sessions_api.post("/session", responses={201: SessionOut, **refusals(401, 403, 422, 429)})
def log_in(body: Credentials):
    """Log in with an account's name and password: a new bearer token, valid for SESSION_HOURS.

    After 5 failed logins within 15 minutes for one account name, or from one address, logins are refused
    (429) until the window has passed.
    """
    settings = services().settings
    with database() as session:
        login = logins.login(session=session, name=body.name, password=body.password,
                             address=request.remote_addr or "unknown", hours=settings.session_hours,
                             rounds=settings.bcrypt_rounds)
    return reply(SessionOut(token=login.token, expires_at=login.expires_at, user=_user(login.user)), 201)


@sessions_api.delete("/session", security=BEARER, responses={204: None, **refusals(401, 403)})
def log_out():
    """Log out: the bearer token sent ends (other sessions of the account stay)."""
    who = caller()
    if who.operator:
        raise NotAllowed("the operator token is not a session; there is nothing to log out")
    with database() as session:
        logins.logout(session=session, token=who.token)
    return Response(status=204)


@users_api.post("/users", responses={201: UserOut, **refusals(401, 403, 409, 422)})
def create_user(body: NewUser):
    """Create an account (operators only)."""
    operator()
    with database() as session:
        with field("name"):
            accounts.check_name(body.name)
        with field("password"):
            accounts.check_password(body.password)
        with field("email"):
            email = parse_email(body.email, "The account's email") if body.email else None
        user = accounts.add_user(session=session, name=body.name, role=Role(body.role), email=email,
                                 password=body.password, rounds=services().settings.bcrypt_rounds)
    return reply(_user(user), 201)


@users_api.get("/users", responses={200: UserList, **refusals(401, 403)})
def list_users():
    """Every account, by role and name."""
    caller()
    with database() as session:
        return reply(UserList(items=[_user(user) for user in accounts.list_users(session=session)]))


@users_api.get("/users/<user_id>", responses={200: UserOut, **refusals(401, 403, 404, 422)})
def get_user(path: UserPath):
    """One account."""
    caller()
    with database() as session:
        return reply(_user(accounts.get_user_by_id(session=session, user_id=path.user_id)))


@users_api.patch("/users/<user_id>", responses={200: UserOut, **refusals(401, 403, 404, 409, 422)})
def change_user(path: UserPath, body: UserChange):
    """Rename an account, change its role, or deactivate or reactivate it: one change a request (operators only).

    A role change that affects more than the account (it is a customer's CSM, or the only Finance account)
    is refused with what it affects (409) unless `force` is true. A deactivated account cannot act anywhere
    and is unlinked from Slack; its API sessions end.
    """
    operator()
    given = sorted(name for name in ("name", "role", "active") if getattr(body, name) is not None)
    if len(given) != 1:
        got = f", not {' and '.join(given)}" if given else ""
        raise BadField("body", f"give exactly one of name, role or active{got}")
    with database() as session:
        if body.name is not None:
            with field("name"):
                try:
                    user = accounts.rename(session=session, account=path.user_id, new_name=body.name,
                                           force=body.force)
                except accounts.NeedsForce as refusal:
                    raise Conflict(f'{refusal}; send "force": true to rename anyway') from None
        elif body.role is not None:
            try:
                user = accounts.set_role(session=session, account=path.user_id, role=Role(body.role),
                                         force=body.force).user
            except accounts.NeedsForce as refusal:
                raise Conflict(f'{refusal}; send "force": true to change it anyway') from None
        elif body.active:
            user = accounts.reactivate(session=session, account=path.user_id)
        else:
            user = accounts.deactivate(session=session, account=path.user_id).user
    return reply(_user(user))


@users_api.put("/users/<user_id>/password", responses={200: UserOut, **refusals(401, 403, 404, 422)})
def set_password(path: UserPath, body: NewPassword):
    """Set a new password (operators only); every API session of the account ends."""
    operator()
    with database() as session, field("password"):
        user, _ = accounts.reset_password(session=session, account=path.user_id, password=body.password,
                                          rounds=services().settings.bcrypt_rounds)
    return reply(_user(user))


@customers_api.get("/customers", responses={200: CustomerList, **refusals(401, 403)})
def list_customers():
    """Every customer and its terms, by name."""
    caller()
    with database() as session:
        found = customers.list_customers(session=session)
        return reply(CustomerList(items=[_customer(customer) for customer in found]))


@customers_api.get("/customers/<customer_id>", responses={200: CustomerDetail, **refusals(401, 403, 404, 422)})
def get_customer(path: CustomerPath):
    """A customer's terms, its usage over the 12 months ending last month, and its latest bills."""
    caller()
    today = services().settings.today()
    with database() as session:
        found = customers.get_customer(session=session, customer_id=path.customer_id)
        seen = customers.overview(session=session, customer=found, today=today)
        return reply(CustomerDetail(
            **_customer_fields(found),
            usage=[_month(month) for month in seen.months],
            bills=[_bill(bill) for bill in seen.bills],
            bill_count=seen.bill_count,
        ))


@customers_api.post("/customers", responses={201: CustomerOut, **refusals(401, 403, 409, 422)})
def create_customer(body: NewCustomer):
    """Add a customer (operators only), checked exactly as a row of a customers file."""
    operator()
    with database() as session:
        customer = customers.add_customer(session=session, values={"name": body.name, **body.file_values(False)})
    return reply(_customer(customer), 201)


@customers_api.patch("/customers/<customer_id>", responses={200: CustomerOut, **refusals(401, 403, 404, 409, 422)})
def change_customer(path: CustomerPath, body: CustomerTerms):
    """Change some of a customer's terms (operators only); null clears `end_date` or `csm`."""
    operator()
    with database() as session:
        customer = customers.edit_customer(session=session, customer=path.customer_id,
                                           changes=body.file_values(True))
    return reply(_customer(customer))


@customers_api.get("/usage", responses={200: UsageOut, **refusals(401, 403, 404, 422)})
def get_usage(query: UsageQuery):
    """A customer's monthly API usage: the twelve months of `year`, or every recorded month."""
    caller()
    with database() as session:
        found = customers.get_customer(session=session, customer_id=query.customer_id)
        history = customers.usage_of(session=session, customer=found, year=query.year)
        return reply(UsageOut(customer=CustomerRef(id=found.id, name=found.name), year=history.year,
                              months=[_month(month) for month in history.months]))


@bills_api.get("/bills", responses={200: BillPage, **refusals(401, 403, 422)})
def list_bills(query: BillFilters):
    """Bills matching every filter given, oldest month first, a page at a time."""
    caller()
    with field("month"):
        period = Period.parse(query.month) if query.month else None
    with database() as session:
        found = bills.page_of_bills(
            session=session, status=BillStatus(query.status) if query.status else None, period=period,
            customer_id=query.customer_id, page=query.page, per_page=query.per_page,
        )
        return reply(BillPage(items=[_bill(bill) for bill in found.bills], page=found.page,
                              per_page=found.per_page, total=found.total))


@bills_api.get("/bills/<bill_id>", responses={200: BillDetail, **refusals(401, 403, 404, 422)})
def get_bill(path: BillPath):
    """A bill with its history, its approval steps, and what the caller may do with it now."""
    return _bill_now(path.bill_id, caller().user)


@bills_api.post("/bills", responses={200: GenerationOut, **refusals(401, 403, 422)})
def generate(body: Generate):
    """Generate a month's bills (Finance); they are posted to Slack as `/bill generate` posts them."""
    user = person()
    settings = services().settings
    with field("month"):
        period = Period.parse(body.month) if body.month else Period.previous(settings.zone)
        with database() as session:
            summary = billing.generate_month(session=session, period=period, actor=user, today=settings.today())
    return reply(GenerationOut(
        month=str(summary.period), created=summary.created,
        totals={currency: plain(total, currency) for currency, total in summary.totals.items()},
        skipped={reason.value: count for reason, count in summary.skipped.items() if count},
        summary=summary.lines(),
    ))


BILL_ACTION = {200: BillDetail, **refusals(401, 403, 404, 409, 422)}


@bills_api.patch("/bills/<bill_id>/approve", responses=BILL_ACTION)
def approve(path: BillPath):
    """Approve a bill (Customer Success, Sales); its last required approval makes it FINAL."""
    user = person()
    with database() as session:
        workflow.approve(session=session, bill_id=path.bill_id, actor=user)
    return _bill_now(path.bill_id, user)


@bills_api.patch("/bills/<bill_id>/reject", responses=BILL_ACTION)
def reject(path: BillPath, body: Reason):
    """Reject a DRAFT bill with a reason (its approvers); the overage is written off."""
    user = person()
    with database() as session, field("reason"):
        workflow.reject(session=session, bill_id=path.bill_id, actor=user, reason=body.reason)
    return _bill_now(path.bill_id, user)


@bills_api.patch("/bills/<bill_id>/edit", responses=BILL_ACTION)
def edit(path: BillPath, body: UnitCost):
    """Change a DRAFT bill's unit cost (Finance); its approvals start over."""
    user = person()
    with field("unit_cost"):
        cost = workflow.parse_unit_cost(body.unit_cost)
    with database() as session, field("unit_cost"):
        workflow.edit(session=session, bill_id=path.bill_id, actor=user, unit_cost=cost)
    return _bill_now(path.bill_id, user)


@bills_api.patch("/bills/<bill_id>/send", responses={**BILL_ACTION, **refusals(502)})
def send(path: BillPath, body: SendOptions):
    """Email a FINAL bill to the customer (Finance). After a send that was not confirmed, `again` emails it
    once more and `delivered` records it as sent without emailing it."""
    user = person()
    if body.again and body.delivered:
        raise BadField("delivered", "give again or delivered, not both")
    with database() as session:
        if body.delivered:
            workflow.mark_delivered(session=session, bill_id=path.bill_id, actor=user)
        else:
            workflow.send(session=session, bill_id=path.bill_id, actor=user, deliver=services().mailer.send_bill,
                          again=body.again, invoicing=services().invoicing)
    return _bill_now(path.bill_id, user)


@bills_api.patch("/bills/<bill_id>/undo", responses=BILL_ACTION)
def undo(path: BillPath, body: OptionalReason):
    """Undo a bill's latest approval, rejection or edit (who took it, or Finance), with an optional reason."""
    user = person()
    with database() as session, field("reason"):
        workflow.undo(session=session, bill_id=path.bill_id, actor=user, reason=body.reason)
    return _bill_now(path.bill_id, user)


class ResendOptions(OptionalBody):
    to: Text | None = Field(default=None, max_length=254, description="another address; default: the billing email")


class CreditRequest(Body):
    amount: Text = Field(max_length=40, description="in the bill's currency, at most what is left of its total",
                         examples=["120.00"])
    reason: Text = Field(max_length=10_000, description="1–2000 characters")


@bills_api.patch("/bills/<bill_id>/resend", responses={**BILL_ACTION, **refusals(502)})
def resend(path: BillPath, body: ResendOptions):
    """Email a SENT bill's invoice again, with the same number (Finance), to its billing email or `to`."""
    user = person()
    with database() as session, field("to"):
        workflow.resend(session=session, bill_id=path.bill_id, actor=user, deliver=services().mailer.resend_bill,
                        to=body.to)
    return _bill_now(path.bill_id, user)


@bills_api.patch("/bills/<bill_id>/credit", responses=BILL_ACTION)
def credit(path: BillPath, body: CreditRequest):
    """Issue a credit note against a SENT bill's invoice (Finance) and email it to the customer."""
    user = person()
    with field("reason"):
        parse_reason(body.reason, required=True, doing="issue a credit note")
    with database() as session, field("amount"):
        credited = workflow.credit(session=session, bill_id=path.bill_id, actor=user, amount=body.amount,
                                   reason=body.reason, deliver=services().mailer.send_credit_note,
                                   invoicing=services().invoicing)
    warnings = []
    if credited.email_error:
        warnings.append(
            f"credit note {credited.note.number} is issued, but emailing it failed: {credited.email_error};"
            f" PATCH /api/bills/{path.bill_id}/resend emails the invoice with its credit notes"
        )
    return _bill_now(path.bill_id, user, warnings)


# --- the application -------------------------------------------------------------------------------


def create_api(settings: Settings, sessions: sessionmaker[Session], *, mailer: Mailer | None = None) -> OpenAPI:
    """The API's WSGI application; handlers/web.py hands it every request under /api."""
    api = OpenAPI(
        __name__,
        info=Info(title="BillProcess", version="1", description=__doc__.split("\n\n")[0]),
        security_schemes={"bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "a login's token (POST /api/session), or API_OPERATOR_TOKEN for operators",
        }},
        doc_ui=False,
        validation_error_status=422,
        validation_error_callback=invalid_request,
    )
    api.extensions["billprocess"] = ApiServices(
        settings, sessions, mailer or Mailer.from_settings(settings), Invoicing.from_settings(settings)
    )
    api.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    for blueprint in BLUEPRINTS:
        api.register_api(blueprint)
    _add_schema(api, Problem)
    api.add_url_rule(DOCUMENT_PATH, "openapi", lambda: Response(json.dumps(api.api_doc), mimetype="application/json"))
    api.register_error_handler(BillProcessError, domain_problem)
    api.register_error_handler(HTTPException, _http_problem)
    api.register_error_handler(Exception, _unexpected)
    return api


def _add_schema(api: OpenAPI, model: type[BaseModel]) -> None:
    """Put `model`'s schema, and those it refers to, among the document's components."""
    document = get_model_schema(model)
    for name, definition in document.pop("$defs", {}).items():
        api.components_schemas[name] = Schema(**definition)
    api.components_schemas[model.__name__] = Schema(**document)


def _http_problem(error: HTTPException) -> Response:
    """Flask's own refusals (no such route, a method the route does not take) as problem documents."""
    code = error.code or 400
    status = STATUSES.get(code, HttpStatus(code, error.name))
    if code == 404:
        detail = f"there is no API route {request.path}; the routes are listed at {DOCUMENT_PATH}"
    elif code == 405:
        allowed = ", ".join(sorted(error.valid_methods or []))
        detail = f"{request.path} does not take {request.method}; it takes {allowed}"
    else:
        detail = error.description or error.name
    response = problem(status, detail)
    for name, value in error.get_headers():
        if name.lower() == "allow":
            response.headers["Allow"] = value
    return response


def _unexpected(error: Exception) -> Response:
    if isinstance(error, DBAPIError) and is_database_outage(error):
        database_outage.failed(error)
        return problem(UNAVAILABLE, "the database is unavailable right now; try again in a minute")
    error_id = uuid.uuid4().hex[:8]
    log.error("unexpected error %s in %s %s", error_id, request.method, request.path, exc_info=error)
    return problem(HttpStatus(500, "Internal Server Error"),
                   f"something went wrong on our side (error {error_id}); quote the error id")
