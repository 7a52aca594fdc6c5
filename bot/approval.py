"""The approval policy: which approvals a bill needs, in order, who may give each, and who may act now.

Every other module asks this one; none knows how many steps a bill has or which roles take them.

A bill's steps are the customer's usual ones (one approval by Customer Success or Sales; or, when the
customer requires its CSM's approval, the CSM and then Sales) followed by the extra steps of the policy
file's thresholds that the bill's amount reaches. The policy a bill follows is the one recorded with the
action that last set its amount (its DRAFT, or an EDIT): a policy change never moves a bill mid-approval,
and an edit re-derives the steps (the amount may cross a threshold).

Progress is derived from the action log: approvals count when they come after the latest effective
DRAFT or EDIT; they fill the steps in order, each step needing its number of distinct people. A bill
below `auto_approve_below` is approved by the policy itself when it is drafted (an APPROVE with no
stakeholder); Finance may undo that, and the bill then takes its usual steps.

Separation of duties: one person never takes two steps of a bill, and whoever last edited a bill
cannot approve it. Delegation: while a person named by a step is away, their delegate (or, when they
named none, anyone of their role) may take the step for them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import object_session

from bot.errors import AlreadyDone, NotAllowed, NotApprover, WaitingForOther
from bot.formatting import actor_name, money, roles_label, timestamp
from bot.money import format_amount
from bot.settings import Settings, SettingsError
from db.models import ActionType, Bill, BillAction, BillStatus, Customer, Role, User

APPROVER_ROLES = frozenset({Role.CUSTOMER_SUCCESS, Role.SALES})
# What only records something about a bill (a note, a resend, a credit note), never changing it.
RECORDS_ONLY = frozenset({ActionType.NOTE, ActionType.RESEND, ActionType.CREDIT})
PERSON_PREFIX = "name:"
MAX_APPROVERS = 10
POLICY_KEYS = ("auto_approve_below", "thresholds")
THRESHOLD_KEYS = ("at_least", "by", "approvers")


class PolicyError(ValueError):
    """The policy file is wrong; the message names the key."""


# --- the rules, as the policy file states them ----------------------------------------------------------


@dataclass(frozen=True)
class Threshold:
    """An extra step for bills of at least `at_least`: by anyone of `role`, or by the person `person`."""

    at_least: Decimal
    role: Role | None
    person: str | None
    approvers: int = 1

    @property
    def by(self) -> str:
        return f"{PERSON_PREFIX}{self.person}" if self.person else self.role.value

    def describe(self) -> str:
        who = self.person if self.person else self.role.label
        people = f"{self.approvers} different people from {who}" if self.approvers > 1 else who
        return f"a bill of {format_amount(self.at_least)} or more (in its currency) also needs {people}"


@dataclass(frozen=True)
class Policy:
    """The rules a policy file adds to every customer's usual steps; the default adds none."""

    auto_approve_below: Decimal | None = None
    thresholds: tuple[Threshold, ...] = ()

    @property
    def is_default(self) -> bool:
        return self == Policy()

    def to_json(self) -> dict | None:
        """What a bill records of the policy it follows; None for the default policy."""
        if self.is_default:
            return None
        return {
            "auto_approve_below": str(self.auto_approve_below) if self.auto_approve_below is not None else None,
            "thresholds": [
                {"at_least": str(rule.at_least), "by": rule.by, "approvers": rule.approvers}
                for rule in self.thresholds
            ],
        }

    @classmethod
    def from_json(cls, data: dict | None) -> Policy:
        return cls() if data is None else parse_policy(data)

    def describe(self) -> list[str]:
        """The rules in force, one sentence each, as `billprocess policy show` prints them."""
        lines = [
            "Every bill needs its customer's usual approval: one by Customer Success or Sales, or, for a"
            " customer that requires its CSM's approval, the CSM's and then Sales'.",
        ]
        if self.auto_approve_below is not None:
            lines.append(
                f"A bill below {format_amount(self.auto_approve_below)} (in its currency) is approved automatically"
                " when it is drafted;"
                " Finance can undo that, and the bill then takes its usual steps."
            )
        lines += [f"Extra step {index}: {rule.describe()}." for index, rule in enumerate(self.thresholds, start=1)]
        lines.append("One person never takes two steps of a bill; whoever last edited a bill cannot approve it.")
        return lines


def _amount(value: Any, key: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise PolicyError(f"{key}: {value!r} is not an amount; write one such as 10000.00")
    try:
        # YAML reads 50.00 as a float; its shortest repr is the number as written.
        amount = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except InvalidOperation:
        raise PolicyError(f"{key}: {value!r} is not an amount; write one such as 10000.00") from None
    if not amount.is_finite() or amount <= 0:
        raise PolicyError(f"{key}: {value!r} must be an amount above 0")
    if amount != amount.quantize(Decimal("0.01")):
        raise PolicyError(f"{key}: {value!r} has more than 2 decimal places")
    return amount.quantize(Decimal("0.01"))


def _unknown_keys(data: dict, known: Sequence[str], where: str) -> None:
    for key in data:
        if key not in known:
            raise PolicyError(f"{where}{key}: unknown key; the keys are {', '.join(known)}")


def _threshold(data: Any, where: str) -> Threshold:
    if not isinstance(data, dict):
        raise PolicyError(f"{where[:-1]}: each threshold is a mapping with at_least, by and approvers")
    _unknown_keys(data, THRESHOLD_KEYS, where)
    if "at_least" not in data:
        raise PolicyError(f"{where}at_least: missing; the amount from which the step applies")
    if "by" not in data:
        raise PolicyError(f"{where}by: missing; a role (finance, customer_success, sales) or a person (name:alice)")
    at_least = _amount(data["at_least"], f"{where}at_least")
    by = data["by"]
    role = person = None
    if isinstance(by, str) and by.startswith(PERSON_PREFIX) and by[len(PERSON_PREFIX) :].strip():
        person = by[len(PERSON_PREFIX) :].strip()
    elif isinstance(by, str) and by in {role.value for role in Role}:
        role = Role(by)
    else:
        raise PolicyError(
            f"{where}by: {by!r} is neither a role (finance, customer_success, sales) nor a person (name:alice)"
        )
    approvers = data.get("approvers", 1)
    if isinstance(approvers, bool) or not isinstance(approvers, int) or not 1 <= approvers <= MAX_APPROVERS:
        raise PolicyError(f"{where}approvers: {approvers!r} must be a whole number from 1 to {MAX_APPROVERS}")
    if person is not None and approvers != 1:
        raise PolicyError(f"{where}approvers: a step by one person ({by}) takes exactly 1 approver")
    return Threshold(at_least, role, person, approvers)


def parse_policy(data: Any) -> Policy:
    """The policy a parsed policy file states; PolicyError names the first bad key."""
    if data is None:
        return Policy()
    if not isinstance(data, dict):
        raise PolicyError("the policy file must be a mapping with the keys auto_approve_below and thresholds")
    _unknown_keys(data, POLICY_KEYS, "")
    below = data.get("auto_approve_below")
    auto = _amount(below, "auto_approve_below") if below is not None else None
    rules = data.get("thresholds") or []
    if not isinstance(rules, list):
        raise PolicyError("thresholds: must be a list of steps, each with at_least, by and approvers")
    return Policy(auto, tuple(_threshold(rule, f"thresholds[{index}].") for index, rule in enumerate(rules)))


def load_policy(path: Path) -> Policy:
    """The policy in the file at `path`; PolicyError names the file and the bad key."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise PolicyError(f"{path}: is a folder, not a policy file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise PolicyError(f"{path}: cannot be read ({error.__class__.__name__})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise PolicyError(f"{path}: not valid YAML{where}") from None
    try:
        return parse_policy(data)
    except PolicyError as error:
        raise PolicyError(f"{path}: {error}") from None


@dataclass
class _InForce:
    """What this process was configured with at start: the policy new bills follow, and the settings."""

    policy: Policy = field(default_factory=Policy)
    settings: Settings | None = None


_in_force = _InForce()


def configure(settings: Settings) -> Policy:
    """Read APPROVAL_POLICY once at start: the default file may be missing, a file named explicitly may not."""
    path = settings.approval_policy
    if "approval_policy" in settings.model_fields_set or path.exists():
        try:
            policy = load_policy(path)
        except PolicyError as error:
            raise SettingsError(f"APPROVAL_POLICY {error}") from None
    else:
        policy = Policy()
    _in_force.policy, _in_force.settings = policy, settings
    return policy


def reset() -> None:
    """Forget what the process was configured with: the default policy, today in UTC."""
    _in_force.policy, _in_force.settings = Policy(), None


def use(policy: Policy) -> None:
    """Make `policy` the one new bills follow in this process."""
    _in_force.policy = policy


def in_force() -> Policy:
    return _in_force.policy


def today() -> date:
    """Today in TIMEZONE, for absences (UTC until the process is configured)."""
    settings = _in_force.settings
    return settings.today() if settings is not None else datetime.now(timezone.utc).date()


def named_steps(policy: Policy, name: str) -> list[str]:
    """What the policy asks of the person called `name`, one sentence each (empty when it names them nowhere)."""
    return [
        f"the approval policy names {name} for bills of {format_amount(rule.at_least)} or more"
        f" (thresholds[{index}] of {_in_force.settings.approval_policy if _in_force.settings else 'its file'})"
        for index, rule in enumerate(policy.thresholds)
        if rule.person == name
    ]


def check_people(policy: Policy, session) -> None:
    """Refuse a policy naming a person who has no account; PolicyError names the key."""
    for index, rule in enumerate(policy.thresholds):
        if rule.person is not None and session.scalar(select(User.id).where(User.name == rule.person)) is None:
            raise PolicyError(f"thresholds[{index}].by: no account is named {rule.person!r}")


# --- absences ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Absence:
    """A person who cannot take their steps: away until a day (inclusive), or, with no day, barred on one
    bill by separation of duties; and whom they named to approve for them, if anyone."""

    person: User
    until: date | None
    delegate: User | None

    @property
    def stand_in(self) -> str:
        return self.delegate.name if self.delegate is not None else f"anyone in {self.person.role.label}"

    @property
    def text(self) -> str:
        """"carol is away until 12 Dec — dave approves for them"."""
        return f"{self.person.name} is away until {self.until.day} {self.until:%b} — {self.stand_in} approves for them"

    def text_for(self, step: Step) -> str:
        if self.until is None and self.person.deactivated_at is not None:
            return f"{self.person.name}'s account is deactivated, so {self.stand_in} approves step {step.number}"
        if self.until is None:
            return (
                f"{self.person.name} already took part in this bill, so {self.stand_in} approves"
                f" step {step.number} for them"
            )
        return self.text

    def covers(self, user: User) -> bool:
        """True when `user` may take the person's steps meanwhile."""
        if user.id == self.person.id:
            return False
        if self.delegate is not None:
            return user.id == self.delegate.id
        return user.role is self.person.role


def absence(person: User | None, today: date) -> Absence | None:
    """The person's absence on `today`, if they are away."""
    if person is None or person.away_until is None or person.away_until < today:
        return None
    return Absence(person, person.away_until, person.delegate)


# --- a bill's steps and its progress ----------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One approval step of a bill, the approvals it has, and who may take it."""

    number: int
    roles: frozenset[Role]
    person: User | None  # the one person who must take it, when the step names one
    reason: str  # why the bill needs it, as a person reads it
    approvers: int
    approvals: tuple[BillAction, ...] = ()
    missing: str | None = None  # a person the policy names who has no account
    # The person it names may not take it (they took another step, edited the bill last, or their account is
    # deactivated), so their stand-in takes it.
    barred: bool = False

    @property
    def done(self) -> bool:
        return len(self.approvals) >= self.approvers

    @property
    def approved_by(self) -> list[User | None]:
        return [approval.stakeholder for approval in self.approvals]

    @property
    def roles_label(self) -> str:
        return roles_label(self.roles)

    @property
    def who(self) -> str:
        """Who takes the step, in a sentence: "carol", "Sales", "2 people from Finance"."""
        if self.person is not None:
            return self.person.name
        if self.missing is not None:
            return self.missing
        return f"{self.approvers} people from {self.roles_label}" if self.approvers > 1 else self.roles_label

    @property
    def label(self) -> str:
        """Who takes the step and why: "carol (the customer's CSM)", "Sales (amount ≥ 10,000.00)"."""
        if self.missing is not None:
            return f"{self.missing}, who has no account ({self.reason})"
        return f"{self.who} ({self.reason})"

    def stand_in(self, today: date) -> Absence | None:
        """Who takes the step for the person it names, when they are away or may not take it here."""
        if self.person is None:
            return None
        away = absence(self.person, today)
        if away is None and self.barred:
            return Absence(self.person, None, None)
        return away

    def may_take(self, user: User, today: date) -> bool:
        """True when `user` is someone who may take this step (separation of duties aside)."""
        if self.person is None:
            return self.missing is None and user.role in self.roles
        if user.id == self.person.id:
            return True
        covering = self.stand_in(today)
        return covering is not None and covering.covers(user)


@dataclass(frozen=True)
class Progress:
    """The steps a bill needs under the policy it follows, how far it got, and whom it waits for."""

    status: BillStatus
    steps: tuple[Step, ...]
    auto_approval: BillAction | None  # the policy's own approval, when it approved the bill when drafted
    last_editor: User | None  # who made the latest effective edit: they cannot approve
    approvers: frozenset[int]  # who gave an approval that counts (or had one given for them)
    counted: tuple[BillAction, ...]  # the approvals that count, by people, oldest first
    today: date

    @property
    def waiting_for(self) -> Step | None:
        """The step to be taken next; None unless the bill is a DRAFT."""
        if self.status is not BillStatus.DRAFT:
            return None
        return next((step for step in self.steps if not step.done), None)

    @property
    def done_steps(self) -> tuple[Step, ...]:
        return tuple(step for step in self.steps if step.done)

    @property
    def numbered(self) -> bool:
        """True when the bill has more than one step, so that steps are shown with their numbers."""
        return len(self.steps) > 1

    def taken_by(self, user: User) -> Step | None:
        """The step `user` took (or someone took for them while they were away), if any."""
        for step in self.steps:
            for approval in step.approvals:
                if _actor_id(approval) == user.id or (step.person is not None and step.person.id == user.id):
                    return step
        return None

    def has_approved(self, user: User) -> bool:
        return user.id in self.approvers

    def stand_ins(self) -> list[tuple[Step, Absence]]:
        """The steps still to take whose person is away or may not take them, with who stands in."""
        found = []
        for step in self.steps:
            covering = step.stand_in(self.today) if not step.done else None
            if covering is not None:
                found.append((step, covering))
        return found

    def notes(self) -> list[str]:
        """Who approves for whom, one sentence each: "carol is away until 12 Dec — dave approves for them"."""
        return [covering.text_for(step) for step, covering in self.stand_ins()]

    def may_approve(self, user: User) -> bool:
        """True when `user` may give the approval the bill waits for now."""
        step = self.waiting_for
        if step is None or not step.may_take(user, self.today) or self.has_approved(user):
            return False
        if self.taken_by(user) is not None:
            return False
        return self.last_editor is None or self.last_editor.id != user.id

    def may_reject(self, user: User) -> bool:
        """True when `user` is one of the bill's approvers (at any step) while it is a DRAFT."""
        return self.status is BillStatus.DRAFT and any(step.may_take(user, self.today) for step in self.steps)


def _actor_id(action: BillAction) -> int | None:
    """Who took the action; None for the approval policy's own approval (or the scheduler's DRAFT)."""
    return action.stakeholder.id if action.stakeholder is not None else action.stakeholder_id


def effective_actions(bill: Bill) -> list[BillAction]:
    """The bill's changes that still count: not UNDO rows, not undone by one, not records only; oldest first."""
    undone = {action.undone_action_id for action in bill.actions if action.action is ActionType.UNDO}
    return [
        action
        for action in bill.actions
        if action.action is not ActionType.UNDO and action.action not in RECORDS_ONLY and action.id not in undone
    ]


def sets_amount(action: BillAction) -> bool:
    """True for what gives a bill its amount: its DRAFT, an EDIT, a usage correction that changed it.

    Approvals count after the latest of them, and each records the rules the bill follows from then on.
    """
    if action.action in (ActionType.DRAFT, ActionType.EDIT):
        return True
    return action.action is ActionType.RECOMPUTE and action.amount_before != action.amount_after


def _usable_csm(customer: Customer) -> User | None:
    """The customer's CSM, when it has one who is (still) an active Customer Success user."""
    csm = customer.csm
    usable = csm is not None and csm.role is Role.CUSTOMER_SUCCESS and csm.deactivated_at is None
    return csm if usable else None


def customer_terms(customer: Customer) -> str:
    """The customer's usual approval, as a person reads it: "the CSM (carol), then Sales"."""
    if not customer.require_csm_approval:
        return f"one approval, by {roles_label(APPROVER_ROLES)}"
    csm = _usable_csm(customer)
    return f"the CSM ({csm.name}), then Sales" if csm else "Customer Success (it has no CSM), then Sales"


def _usual_steps(bill: Bill, csm_then_sales: bool) -> list[Step]:
    if not csm_then_sales:
        return [Step(0, APPROVER_ROLES, None, "the customer's usual approval", 1)]
    csm = _usable_csm(bill.customer)
    first_reason = "the customer's CSM" if csm is not None else "the customer has no CSM"
    return [
        Step(0, frozenset({Role.CUSTOMER_SUCCESS}), csm, first_reason, 1),
        Step(0, frozenset({Role.SALES}), None, "after the customer's CSM", 1),
    ]


def _person(bill: Bill, name: str, people: Mapping[str, User] | None) -> User | None:
    """The account a threshold names: from `people` when given, else looked up once per session."""
    if people is not None:
        return people.get(name)
    session = object_session(bill)
    if session is None:
        raise RuntimeError("a bill's approval progress is read while its session is open")
    people = session.info.setdefault("approval_people", {})
    if name not in people:
        people[name] = session.scalar(select(User).where(User.name == name))
    return people[name]


def _threshold_steps(bill: Bill, policy: Policy, people: Mapping[str, User] | None) -> list[Step]:
    steps = []
    for rule in policy.thresholds:
        if bill.overage_amount < rule.at_least:
            continue
        reason = f"amount ≥ {money(rule.at_least, bill.currency)}"
        if rule.person is None:
            steps.append(Step(0, frozenset({rule.role}), None, reason, rule.approvers))
            continue
        person = _person(bill, rule.person, people)
        if person is None:
            steps.append(Step(0, frozenset(), None, reason, 1, missing=rule.person))
        else:
            steps.append(Step(0, frozenset({person.role}), person, reason, 1))
    return steps


def _fill(steps: list[Step], approvals: Iterable[BillAction], status: BillStatus) -> list[list[BillAction]]:
    """The approvals that count for each step, in order."""
    given: list[list[BillAction]] = [[] for _ in steps]
    index = 0
    for approval in approvals:
        while index < len(steps) and len(given[index]) >= steps[index].approvers:
            index += 1
        if index == len(steps):
            break
        given[index].append(approval)
    if status is BillStatus.DRAFT and steps and all(len(g) >= s.approvers for g, s in zip(given, steps)):
        # A DRAFT always lacks its last approval; more were counted only for a bill drafted before its
        # customer's terms were recorded with it, whose terms then changed: it still waits for its last one.
        given[-1] = given[-1][: steps[-1].approvers - 1]
    return given


def progress(bill: Bill, on: date | None = None, *, people: Mapping[str, User] | None = None) -> Progress:
    """Where the bill's approval stands on the day `on` (default: today), from its actions and its policy.

    The people a policy names are looked up in the bill's session, or in `people` (accounts by name).
    """
    effective = effective_actions(bill)
    start = max((index + 1 for index, action in enumerate(effective) if sets_amount(action)), default=0)
    basis = effective[start - 1] if start else None  # the DRAFT or EDIT whose rules the bill follows
    policy = Policy.from_json(basis.policy) if basis is not None else Policy()
    csm_then_sales = bill.customer.require_csm_approval
    if basis is not None and basis.require_csm_approval is not None:
        csm_then_sales = basis.require_csm_approval
    counted = [action for action in effective[start:] if action.action is ActionType.APPROVE]
    auto = next((approval for approval in counted if _actor_id(approval) is None), None)
    by_people = [approval for approval in counted if _actor_id(approval) is not None]
    rules = _usual_steps(bill, csm_then_sales) + _threshold_steps(bill, policy, people)
    given = _fill(rules, by_people, bill.status)
    edits = [action for action in effective if action.action is ActionType.EDIT]
    editor = edits[-1].stakeholder if edits else None
    approvers = {_actor_id(approval) for approval in by_people}
    # An approval given for the person a step names (by their stand-in) counts as theirs.
    approvers |= {rule.person.id for rule, approvals in zip(rules, given) if rule.person is not None and approvals}
    steps = []
    for number, (rule, approvals) in enumerate(zip(rules, given, strict=True), start=1):
        person = rule.person
        barred = (
            person is not None
            and not approvals
            and (
                person.id in approvers
                or (editor is not None and editor.id == person.id)
                or person.deactivated_at is not None
            )
        )
        steps.append(replace(rule, number=number, approvals=tuple(approvals), barred=barred))
    return Progress(bill.status, tuple(steps), auto, editor, frozenset(approvers), tuple(by_people), on or today())


def approval_comment(step: Step, of: int, user: User) -> str | None:
    """What an approval records of its step: "step 1 of 2: the customer's CSM; for carol, who is away"."""
    parts = [f"step {step.number} of {of}: {step.reason}"] if of > 1 else []
    if step.person is not None and step.person.id != user.id:
        parts.append(f"for {step.person.name}, who is away")
    return "; ".join(parts) or None


def auto_approval_comment(policy: Policy) -> str:
    """The comment of the policy's own approval, naming the rule."""
    return f"approved automatically: below {format_amount(policy.auto_approve_below)} (approval policy)"


# --- the checks: each raises the refusal, or returns what the change needs ----------------------------------


def check_approver(bill: Bill, actor: User, today: date, doing: str) -> None:
    """Refuse someone whose role takes no step of the bill ("approve", "reject")."""
    state = progress(bill, today)
    if any(step.may_take(actor, today) for step in state.steps):
        return
    roles = {role for step in state.steps for role in step.roles}
    if actor.role not in roles | APPROVER_ROLES:
        raise NotAllowed(f"Only {_roles_sentence(roles)} can {doing} bill #{bill.id}")


def check_approve(bill: Bill, actor: User, today: date) -> Step:
    """The step a DRAFT's approval by `actor` would take now, or the refusal saying why they cannot."""
    state = progress(bill, today)
    pending = state.waiting_for
    assert pending is not None  # a DRAFT always lacks its last approval
    if state.has_approved(actor):
        raise _approved_already(bill, state, actor, pending, today)
    if pending.may_take(actor, today):
        if state.last_editor is not None and state.last_editor.id == actor.id:
            raise NotApprover(f"You edited bill #{bill.id} last; whoever last edited a bill cannot approve it")
        return pending
    for step in state.done_steps:
        if step.may_take(actor, today):
            given = step.approvals[-1]
            raise _refusal(
                bill,
                given,
                f"Bill #{bill.id} was already approved by {actor_name(given)} at {timestamp(given.created_at)};"
                f" it is waiting for {pending.who} now",
            )
    if any(step.may_take(actor, today) for step in state.steps[pending.number :]):
        raise WaitingForOther(f"Bill #{bill.id} is waiting for {pending.label} to approve first")
    if state.done_steps and actor.role not in pending.roles:
        done = state.done_steps[-1]
        raise WaitingForOther(
            f"Bill #{bill.id} was approved by {actor_name(done.approvals[-1])} for {done.roles_label};"
            f" it is waiting for {pending.who} now"
        )
    raise NotApprover(f"Only {_takers(pending, today)} can approve bill #{bill.id} now; none of its steps is yours")


def _approved_already(bill: Bill, state: Progress, actor: User, pending: Step, today: date) -> AlreadyDone:
    """The refusal for someone who took a step of the bill already, themselves or through a stand-in."""
    # Among every approval that counts: one read while another change commits may not fill a step yet.
    own = next((given for given in state.counted if _actor_id(given) == actor.id), None)
    rule = " (one person never takes two steps of a bill)" if pending.may_take(actor, today) else ""
    if own is not None:
        return _refusal(
            bill,
            own,
            f"Bill #{bill.id} was already approved by {actor.name} at {timestamp(own.created_at)};"
            f" it is waiting for {pending.who} now{rule}",
        )
    step = state.taken_by(actor)
    given = step.approvals[0]
    return _refusal(
        bill,
        given,
        f"Bill #{bill.id}'s step {step.number} was approved for you by {actor_name(given)}"
        f" at {timestamp(given.created_at)}; one person never takes two steps of a bill",
    )


def _refusal(bill: Bill, action: BillAction, message: str) -> AlreadyDone:
    return AlreadyDone.of(message, bill_id=bill.id, action=action.action, who=action.stakeholder, at=action.created_at)


def check_reject(bill: Bill, actor: User, today: date) -> None:
    """Refuse a DRAFT's rejection by someone who takes none of its steps."""
    state = progress(bill, today)
    if not state.may_reject(actor):
        takers = " or ".join(dict.fromkeys(_takers(step, today) for step in state.steps))
        raise NotApprover(f"Only {takers} can reject bill #{bill.id}")


def _roles_sentence(roles: set[Role]) -> str:
    names = [role.label for role in Role if role in roles]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _takers(step: Step, today: date) -> str:
    """Who may take the step, for a refusal: "carol (the customer's CSM)" or "Sales"."""
    if step.person is None:
        return step.roles_label if step.missing is None else f"{step.missing} (who has no account)"
    covering = step.stand_in(today)
    if covering is None:
        return f"{step.person.name} ({step.reason})"
    if covering.until is None:
        return f"{covering.stand_in} for {step.person.name} ({step.reason})"
    return f"{step.person.name} ({step.reason}), or {covering.stand_in} while they are away"
