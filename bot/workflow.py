"""The approval workflow (SPEC §4): approve, reject, edit, send (or mark as sent) and undo a bill.

Each service owns its transaction: it locks the bill's row, reloads the acting account, checks the
rules, changes the bill and writes exactly one bill action, all in one commit; a refusal raises a
domain error and changes nothing. `send` alone takes three short transactions, so that no lock is
held while the mail server answers (see there). Call a service with a session that has no transaction in progress.

Which approvals a bill needs, who may give them and how far it got is the approval policy's to say
(bot/approval.py): this module asks it. An action counts while it is effective, that is, not an UNDO
and not undone by one.

A sent bill is never changed; `resend` emails its invoice again and `credit` issues a credit note against
it. A usage import corrects bills with `correct_usage`, in the import's transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from bot import approval, outbox, permissions
from bot.accounts import check_active
from bot.approval import RECORDS_ONLY, effective_actions
from bot.errors import (
    AlreadyDone,
    BillProcessError,
    DeliveryFailed,
    DeliveryUncertain,
    InvalidInput,
    InvalidTransition,
    NotAllowed,
    NotFound,
    SendInProgress,
    SendUncertain,
)
from bot.formatting import ACTION_WORDS, actor_name, person_name, timestamp
from bot.invoices import Invoicing, bill_to, credited
from bot.money import format_money, overage_amount, parse_amount
from bot.money import minor_unit as minor_unit_of
from bot.parsing import REASON_MAX_LENGTH, parse_email, parse_reason, parse_unit_cost
from bot.permissions import Power
from db.models import (
    ActionOrigin,
    ActionType,
    Bill,
    BillAction,
    BillStatus,
    CreditNote,
    OutboxKind,
    User,
    utcnow,
)

# A send that started less long ago may still be talking to the mail server (which the mailer gives 30 s
# at most); an older one whose outcome was never recorded was interrupted.
SEND_IN_PROGRESS_FOR = timedelta(minutes=2)

UNDOABLE = frozenset({ActionType.APPROVE, ActionType.REJECT, ActionType.EDIT, ActionType.RECOMPUTE})


# --- the bill's history -------------------------------------------------------------------------------


def undo_target(bill: Bill) -> BillAction | None:
    """The action an undo would revert now: the latest effective APPROVE, REJECT or EDIT, if any."""
    if bill.status is BillStatus.SENT or bill.sending_started_at is not None:
        return None
    effective = effective_actions(bill)
    if effective and effective[-1].action in UNDOABLE:
        return effective[-1]
    return None


def history(bill: Bill) -> list[BillAction]:
    """Every action on the bill, oldest first, undone ones and UNDO rows included."""
    return list(bill.actions)


@dataclass(frozen=True)
class Sending:
    """A send of the bill whose outcome is not recorded: on its way, or interrupted (uncertain)."""

    bill_id: int
    started_at: datetime
    by: User | None
    error: str | None  # why the outcome is unknown, when the sender saw it happen
    uncertain: bool

    @property
    def summary(self) -> str:
        """What Finance needs to know, in one or two sentences."""
        who, at = person_name(self.by), timestamp(self.started_at)
        if not self.uncertain:
            return (
                f"Bill #{self.bill_id} is being emailed by {who} since {at}."
                f" If this is still shown at {timestamp(self.started_at + SEND_IN_PROGRESS_FOR)}, the send was"
                " interrupted and the customer may or may not have the email."
            )
        why = f" ({self.error})" if self.error else ""
        return (
            f"Sending of bill #{self.bill_id} is uncertain: {who} started emailing it at {at} and the outcome"
            f" was never confirmed{why}. The customer may have received it."
        )

    @property
    def how_to_send_again(self) -> str:
        """What Finance does next: send it again on purpose, or record it as sent when the customer has it."""
        return (
            "Check with the customer; to email the bill once more, send it again on purpose: Send again on its"
            f" message, `/bill send {self.bill_id} again`,"
            f" or `billprocess bills send {self.bill_id} --as NAME --again`. If they have it, record it as sent"
            f" without emailing it again: Mark as sent, `/bill send {self.bill_id} delivered`,"
            f" or `billprocess bills send {self.bill_id} --as NAME --delivered`."
        )


def sending(bill: Bill, now: datetime | None = None) -> Sending | None:
    """The bill's send in flight or interrupted, if any, as it stands at `now` (default: now)."""
    if bill.sending_started_at is None:
        return None
    age = (now or utcnow()) - bill.sending_started_at
    uncertain = bill.sending_error is not None or age >= SEND_IN_PROGRESS_FOR
    return Sending(bill.id, bill.sending_started_at, bill.sending_by, bill.sending_error, uncertain)


# --- the rules: each check raises the refusal, or returns what the change needs -----------------


def _already_done(bill: Bill, action: BillAction, message: str | None = None) -> AlreadyDone:
    who = action.stakeholder
    if message is None:
        message = (
            f"Bill #{bill.id} was already {ACTION_WORDS[action.action].past} by {actor_name(action)} at {timestamp(action.created_at)}"
        )
    return AlreadyDone.of(message, bill_id=bill.id, action=action.action, who=who, at=action.created_at)


def latest_change(bill: Bill) -> BillAction | None:
    """The bill's latest effective action; its id is the version of the bill a person is shown."""
    effective = effective_actions(bill)
    return effective[-1] if effective else None


def _moved_on(bill: Bill) -> BillProcessError:
    """The refusal for acting on a DRAFT-only action once someone moved the bill out of DRAFT."""
    latest = latest_change(bill)
    if latest is None or latest.status_after is not bill.status:
        return InvalidTransition(f"Bill #{bill.id} is {bill.status.value}")
    return _already_done(bill, latest)


def _check_approve(bill: Bill, actor: User) -> approval.Step:
    today = approval.today()
    approval.check_approver(bill, actor, today, "approve")
    if bill.status is not BillStatus.DRAFT:
        raise _moved_on(bill)
    return approval.check_approve(bill, actor, today)


def _check_reject(bill: Bill, actor: User) -> None:
    today = approval.today()
    approval.check_approver(bill, actor, today, "reject")
    if bill.status is not BillStatus.DRAFT:
        raise _moved_on(bill)
    approval.check_reject(bill, actor, today)


def _check_edit(bill: Bill, actor: User) -> None:
    permissions.require(actor, Power.EDIT)
    if bill.status is not BillStatus.DRAFT:
        raise InvalidTransition(
            f"Bill #{bill.id} is {bill.status.value}; only a DRAFT bill's unit cost can be edited"
        )


def _check_send(bill: Bill, actor: User, again: bool = False) -> None:
    """Refuse a send that is not allowed; `again` sends a bill whose earlier send is uncertain."""
    permissions.require(actor, Power.SEND)
    if bill.status is BillStatus.FINAL:
        _check_not_sending(bill, again)
        return
    latest = latest_change(bill)
    if bill.status is BillStatus.SENT and latest is not None and latest.action is ActionType.SEND:
        raise _already_done(bill, latest)
    if bill.status is BillStatus.DRAFT:
        pending = approval.progress(bill).waiting_for
        waiting = f", waiting for {pending.label} to approve" if pending else ""
        raise InvalidTransition(f"Bill #{bill.id} is still a DRAFT{waiting}; only a FINAL bill can be sent")
    if bill.status is BillStatus.WRITEOFF and latest is not None and latest.action is ActionType.REJECT:
        raise InvalidTransition(
            f"Bill #{bill.id} was rejected by {actor_name(latest)} at {timestamp(latest.created_at)}"
            " and written off; only a FINAL bill can be sent"
        )
    raise InvalidTransition(f"Bill #{bill.id} is {bill.status.value}; only a FINAL bill can be sent")


def _check_not_sending(bill: Bill, again: bool) -> None:
    current = sending(bill)
    if current is None:
        return
    if not current.uncertain:
        raise _in_progress(bill, current)
    if not again:
        raise SendUncertain(f"{current.summary} {current.how_to_send_again}", bill_id=bill.id)


def _in_progress(bill: Bill, current: Sending) -> SendInProgress:
    message = (
        f"Bill #{bill.id} is being sent by {person_name(current.by)} since {timestamp(current.started_at)};"
        " look at it again in a minute"
    )
    return SendInProgress.of(message, bill_id=bill.id, action=ActionType.SEND, who=current.by, at=current.started_at)


def _check_mark_delivered(bill: Bill, actor: User) -> Sending:
    """Refuse recording a bill as sent without an email, unless its earlier send is uncertain."""
    permissions.require(actor, Power.MARK_SENT)
    latest = latest_change(bill)
    if bill.status is BillStatus.SENT and latest is not None and latest.action is ActionType.SEND:
        raise _already_done(bill, latest)
    if bill.status is not BillStatus.FINAL:
        raise InvalidTransition(
            f"Bill #{bill.id} is {bill.status.value}; only a FINAL bill whose send was interrupted"
            " can be marked as sent"
        )
    current = sending(bill)
    if current is None:
        raise InvalidTransition(f"Bill #{bill.id} has no interrupted send to confirm")
    if not current.uncertain:
        raise _in_progress(bill, current)
    return current


def _check_sent_invoice(bill: Bill, actor: User, power: Power, doing: str, done: str) -> None:
    """Refuse acting on a bill's invoice (`doing`: "resend", "credit"; `done`: "sent again", "credited")
    unless it was sent with one."""
    permissions.require(actor, power)
    if bill.status is not BillStatus.SENT:
        raise InvalidTransition(f"Bill #{bill.id} is {bill.status.value}; only a SENT bill's invoice can be {done}")
    if bill.invoice_number is None:
        raise InvalidTransition(f"Bill #{bill.id} was sent before invoices were numbered; it has no invoice to {doing}")


def _check_resend(bill: Bill, actor: User) -> None:
    _check_sent_invoice(bill, actor, Power.RESEND, "resend", "sent again")


def _check_credit(bill: Bill, actor: User) -> None:
    _check_sent_invoice(bill, actor, Power.CREDIT, "credit", "credited")
    if credited(bill) >= bill.overage_amount:
        raise InvalidTransition(
            f"Invoice {bill.invoice_number} is credited in full already"
            f" ({format_money(bill.overage_amount, bill.currency)})"
        )


def _check_undo(bill: Bill, actor: User, action_id: int | None = None) -> BillAction:
    latest = latest_change(bill)
    if bill.status is BillStatus.SENT:
        if latest is not None and latest.action is ActionType.SEND:
            raise _already_done(
                bill,
                latest,
                f"Bill #{bill.id} was already sent by {actor_name(latest)} at {timestamp(latest.created_at)};"
                " a sent bill cannot be undone",
            )
        raise InvalidTransition(f"Bill #{bill.id} has been sent; a sent bill cannot be undone")
    if bill.sending_started_at is not None:
        # Its email may be with the customer already: the approval it was sent on stands.
        raise InvalidTransition(f"Bill #{bill.id} is being emailed, or may have been; it cannot be undone now")
    if action_id is not None:
        _check_undo_meant(bill, action_id)
    target = undo_target(bill)
    if target is None:
        raise InvalidTransition(f"Bill #{bill.id} has nothing to undo")
    if target.stakeholder_id != actor.id and not permissions.allowed(actor, Power.UNDO_ANYONES):
        who, anyone = actor_name(target), permissions.roles_label(Power.UNDO_ANYONES)
        noun = ACTION_WORDS[target.action].noun
        if target.stakeholder_id is None:  # the approval policy's own approval, or a usage import's correction
            raise NotAllowed(f"Only {anyone} can undo the {noun} of bill #{bill.id} by {who}")
        raise NotAllowed(f"Only {who} or {anyone} can undo {who}'s {noun} of bill #{bill.id}")
    return target


def _check_undo_meant(bill: Bill, action_id: int) -> None:
    """Refuse when the action the caller meant to undo is no longer the one an undo would revert."""
    meant = next((action for action in bill.actions if action.id == action_id), None)
    if meant is None:
        raise NotFound(f"Bill #{bill.id} has no action #{action_id}")
    if meant.action not in UNDOABLE:
        raise InvalidTransition(
            f"Only approvals, rejections, edits and usage corrections can be undone, not a {meant.action.value}"
        )
    undoing = next((action for action in bill.actions if action.undone_action_id == action_id), None)
    if undoing is not None:
        raise _already_done(
            bill,
            undoing,
            f"{actor_name(meant)}'s {ACTION_WORDS[meant.action].noun} of bill #{bill.id}"
            f" was already undone by {actor_name(undoing)} at {timestamp(undoing.created_at)}",
        )
    latest = latest_change(bill)
    if latest is not None and latest is not meant:
        raise _already_done(
            bill,
            latest,
            f"Bill #{bill.id} has changed since: {ACTION_WORDS[latest.action].past} by {actor_name(latest)}"
            f" at {timestamp(latest.created_at)}",
        )


def _what_happened(bill: Bill, action: BillAction) -> str:
    """One action as "edited by fiona at 2026-11-03 10:32 UTC"."""
    by = f"by {actor_name(action)} at {timestamp(action.created_at)}"
    if action.action is ActionType.UNDO:
        undone = next((earlier for earlier in bill.actions if earlier.id == action.undone_action_id), None)
        if undone is not None:
            return f"{actor_name(undone)}'s {ACTION_WORDS[undone.action].noun} undone {by}"
    return f"{ACTION_WORDS[action.action].past} {by}"


def check_unchanged(bill: Bill, seen_action_id: int | None, doing: str) -> None:
    """Refuse when the bill changed since the person saw it (its latest effective action is another one).

    `seen_action_id` is the id of the latest effective action the person was shown (None: not known,
    nothing to compare); `doing` names what they were about to do ("approving").
    """
    if seen_action_id is None:
        return
    latest = latest_change(bill)
    if latest is not None and latest.id == seen_action_id:
        return
    # What happened since is the newest entry in the log: an UNDO row when the seen action was undone.
    newest = bill.actions[-1] if bill.actions else None
    if newest is None:
        raise InvalidTransition(f"Bill #{bill.id} changed since you saw it. Look at it again before {doing}.")
    raise _already_done(
        bill,
        newest,
        f"Bill #{bill.id} changed since you saw it: {_what_happened(bill, newest)}."
        f" Look at it again before {doing}.",
    )


_CHECKS: dict[ActionType, Callable[[Bill, User], object]] = {
    ActionType.APPROVE: _check_approve,
    ActionType.REJECT: _check_reject,
    ActionType.EDIT: _check_edit,
    ActionType.SEND: _check_send,
    ActionType.UNDO: _check_undo,
    ActionType.RESEND: _check_resend,
    ActionType.CREDIT: _check_credit,
}


def check(bill: Bill, user: User, action: ActionType) -> None:
    """Raise the refusal `user` would get for `action` on the bill now; return when it is allowed."""
    _CHECKS[action](bill, user)


def available_actions(bill: Bill, user: User) -> set[ActionType]:
    """The actions `user` could take on the bill now, by the same rules the services apply."""
    allowed = set()
    for action in _CHECKS:
        try:
            check(bill, user, action)
        except BillProcessError:
            continue
        allowed.add(action)
    return allowed


# --- the services ----------------------------------------------------------------------------------


def approve(*, session: Session, bill_id: int, actor: User, seen_action_id: int | None = None) -> Bill:
    """Give the bill the approval it waits for; the last one required makes it FINAL.

    `seen_action_id`, when given, is the bill's latest effective action as the person saw it; if the
    bill has changed since, the approval is refused (here and in `reject` and `send` alike).
    """
    with session.begin():
        bill, user = _lock(session, bill_id, actor)
        step = _check_approve(bill, user)
        check_unchanged(bill, seen_action_id, "approving")
        steps = approval.progress(bill).steps
        last = step.number == len(steps) and len(step.approvals) + 1 >= step.approvers
        _record(
            bill,
            user,
            ActionType.APPROVE,
            BillStatus.FINAL if last else BillStatus.DRAFT,
            comment=approval.approval_comment(step, len(steps), user),
        )
        _load_for_display(bill)
    return bill


def reject(
    *, session: Session, bill_id: int, actor: User, reason: str, seen_action_id: int | None = None
) -> Bill:
    """Write the bill off, with a reason of 1–2000 characters."""
    with session.begin():
        bill, user = _lock(session, bill_id, actor)
        _check_reject(bill, user)
        check_unchanged(bill, seen_action_id, "rejecting")
        comment = parse_reason(reason, required=True)
        _record(bill, user, ActionType.REJECT, BillStatus.WRITEOFF, comment=comment)
        _load_for_display(bill)
    return bill


def edit(*, session: Session, bill_id: int, actor: User, unit_cost: Decimal | str) -> Bill:
    """Change a DRAFT's unit cost and recompute its amount; approvals collected so far stop counting."""
    with session.begin():
        bill, user = _lock(session, bill_id, actor)
        _check_edit(bill, user)
        cost = parse_unit_cost(unit_cost)
        old_cost, old_amount = bill.overage_unit_cost, bill.overage_amount
        if cost == old_cost:
            raise InvalidInput(f"Bill #{bill.id}'s unit cost is already {cost:.6f}")
        currency = bill.currency
        amount = overage_amount(bill.overage_units, cost, currency)
        if amount <= 0:
            raise InvalidInput(
                f"A unit cost of {cost:.6f} makes bill #{bill.id}'s amount {format_money(amount, currency)};"
                f" a bill must be for at least {format_money(minor_unit_of(currency), currency)}"
                " (reject it to write it off)"
            )
        bill.overage_unit_cost, bill.overage_amount = cost, amount
        _record(
            bill,
            user,
            ActionType.EDIT,
            BillStatus.DRAFT,
            comment=(
                f"unit cost {old_cost:.6f} → {cost:.6f},"
                f" amount {format_money(old_amount, currency)} → {format_money(amount, currency)}"
            ),
            unit_cost_before=old_cost,
            unit_cost_after=cost,
        )
        _load_for_display(bill)
    return bill


def send(
    *,
    session: Session,
    bill_id: int,
    actor: User,
    deliver: Callable[[Bill], str | None],
    seen_action_id: int | None = None,
    again: bool = False,
    invoicing: Invoicing | None = None,
) -> Bill:
    """Email a FINAL bill with `deliver`; only once it returns does the bill become SENT.

    The first send gives the bill its invoice (number, dates, parties; `invoicing` says how) in the
    transaction that records the send on the bill, and the bill keeps it whatever the outcome: a send
    after a refused one emails the same invoice, so that no number is skipped and none is given twice.

    The send is recorded on the bill before the email goes out, and no lock is held while the mail server
    answers. When `deliver` raises DeliveryFailed (the email was refused), the record is cleared, nothing
    else changes and the error propagates. When the outcome is unknown (DeliveryUncertain, or the process
    dies), the record stays: the bill shows its sending as uncertain, and a plain send of it is refused
    until Finance sends it `again` on purpose. `deliver` may say where the email went; that is recorded
    with the SEND action.
    """
    with session.begin():
        bill, user = _lock(session, bill_id, actor)
        _check_send(bill, user, again)
        check_unchanged(bill, seen_action_id, "sending")
        (invoicing or Invoicing()).issue_invoice(session, bill, again=again)
        started_at = utcnow()
        _mark_sending(bill, started_at, user)
        _load_for_display(bill)  # what `deliver` reads, loaded now: no transaction stays open while it runs
    try:
        where = deliver(bill)
    except DeliveryFailed:
        with session.begin():
            bill, user = _lock(session, bill_id, actor)
            if bill.sending_started_at == started_at:
                _mark_sending(bill, None, None)
        raise
    except DeliveryUncertain as unknown:
        with session.begin():
            bill, user = _lock(session, bill_id, actor)
            if bill.sending_started_at == started_at:
                _mark_sending(bill, started_at, user, error=str(unknown))
            current = sending(bill)
            _load_for_display(bill)
        if current is None:  # another send finished it meanwhile
            raise
        raise SendUncertain(f"{current.summary} {current.how_to_send_again}", bill_id=bill.id) from unknown
    with session.begin():
        bill, user = _lock(session, bill_id, actor)
        if bill.status is BillStatus.FINAL:  # a send again that overtook this one may have recorded it
            comment = f"invoice {bill.invoice_number} emailed to {bill.customer.billing_email}" + (
                f" via {where}" if where else ""
            )
            _mark_sending(bill, None, None, refresh=False)  # the SEND below refreshes what Slack shows
            _record(bill, user, ActionType.SEND, BillStatus.SENT, comment=comment[:REASON_MAX_LENGTH])
        _load_for_display(bill)
    return bill


def mark_delivered(*, session: Session, bill_id: int, actor: User, seen_action_id: int | None = None) -> Bill:
    """Record a bill whose send was interrupted as SENT without emailing it again.

    For when Finance knows the interrupted email reached the customer (they confirmed it, or the mail
    server's log shows it was accepted); the SEND action names the interrupted send.
    """
    with session.begin():
        bill, user = _lock(session, bill_id, actor)
        interrupted = _check_mark_delivered(bill, user)
        check_unchanged(bill, seen_action_id, "marking it as sent")
        why = f" ({interrupted.error})" if interrupted.error else ""
        comment = (
            f"confirmed delivered to {bill.customer.billing_email} without emailing it again; the interrupted"
            f" send was started by {person_name(interrupted.by)} at {timestamp(interrupted.started_at)}{why}"
        )
        _mark_sending(bill, None, None, refresh=False)  # the SEND below refreshes what Slack shows
        _record(bill, user, ActionType.SEND, BillStatus.SENT, comment=comment[:REASON_MAX_LENGTH])
        _load_for_display(bill)
    return bill


def undo(
    *, session: Session, bill_id: int, actor: User, reason: str | None = None, action_id: int | None = None
) -> Bill:
    """Revert the latest effective APPROVE, REJECT or EDIT, restoring status, unit cost and amount.

    `action_id`, when given, is the action the caller means to undo (the one a button was shown for);
    if someone else undid it or acted since, the undo is refused instead of reverting another action.
    """
    with session.begin():
        bill, user = _lock(session, bill_id, actor)
        target = _check_undo(bill, user, action_id)
        comment = parse_reason(reason, required=False)
        cost_before = cost_after = None
        figures: dict = {}
        if target.action is ActionType.EDIT:
            assert target.unit_cost_before is not None
            cost_before, cost_after = bill.overage_unit_cost, target.unit_cost_before
            bill.overage_unit_cost = cost_after
            bill.overage_amount = overage_amount(bill.overage_units, cost_after, bill.currency)
        if target.action is ActionType.RECOMPUTE:
            assert target.usage_before is not None and target.amount_before is not None
            figures = _usage_change(bill, target.usage_before, target.amount_before)
        assert target.status_before is not None  # only a DRAFT action has none, and it is never undone
        _record(
            bill,
            user,
            ActionType.UNDO,
            target.status_before,
            comment=comment,
            unit_cost_before=cost_before,
            unit_cost_after=cost_after,
            undone=target,
            **figures,
        )
        _load_for_display(bill)
    return bill


def resend(
    *,
    session: Session,
    bill_id: int,
    actor: User,
    deliver: Callable[[Bill, str], str | None],
    to: str | None = None,
) -> Bill:
    """Email a SENT bill's invoice once more, unchanged, to its billing email or to the address `to`.

    Nothing changes until the mail server has accepted it; then a RESEND action records where it went.
    """
    with session.begin():
        bill, user = _lock(session, bill_id, actor)
        _check_resend(bill, user)
        address = parse_email(to, "The email address") if to is not None else bill.customer.billing_email
        _load_for_display(bill)
    where = deliver(bill, address)
    with session.begin():
        bill, user = _lock(session, bill_id, actor)
        comment = f"invoice {bill.invoice_number} emailed again to {address}" + (f" via {where}" if where else "")
        if address == bill.customer.billing_email:  # its credit notes went with it: they have been emailed now
            for note in bill.credit_notes:
                note.emailed_at = note.emailed_at or utcnow()
        _record(bill, user, ActionType.RESEND, bill.status, comment=comment[:REASON_MAX_LENGTH])
        _load_for_display(bill)
    return bill


@dataclass(frozen=True)
class Credited:
    """A credit note just issued, and whether its email went out (`email_error` says why not)."""

    bill: Bill
    note: CreditNote
    email_error: str | None


def credit(
    *,
    session: Session,
    bill_id: int,
    actor: User,
    amount: Decimal | str,
    reason: str,
    deliver: Callable[[CreditNote], str | None],
    invoicing: Invoicing | None = None,
) -> Credited:
    """Issue a credit note against a SENT bill and email it; the bill's notes never add up to more than its total.

    The note, its number and the CREDIT action commit together; the email follows, and a failed email
    leaves the note issued (`resend` emails it again, with the invoice).
    """
    invoicing = invoicing or Invoicing()
    with session.begin():
        bill, user = _lock(session, bill_id, actor)
        _check_credit(bill, user)
        value = _credit_amount(bill, amount)
        text = parse_reason(reason, required=True, doing="issue a credit note")
        assert text is not None
        today = invoicing.today()
        note = CreditNote(
            bill=bill,
            number=invoicing.credit_note_number(session, today),
            issue_date=today,
            amount=value,
            currency=bill.currency,
            reason=text,
            issuer=bill.issuer or invoicing.issuer.as_stored(),
            bill_to=bill.bill_to or bill_to(bill.customer),
            created_by=user,
            created_at=utcnow(),
        )
        session.add(note)
        session.flush()
        comment = f"credit note {note.number} for {format_money(value, bill.currency)}: {text}"
        _record(bill, user, ActionType.CREDIT, bill.status, comment=comment[:REASON_MAX_LENGTH], credit_note=note)
        _load_for_display(bill)
    try:
        deliver(note)
    except (DeliveryFailed, DeliveryUncertain) as error:
        return Credited(bill, note, str(error))
    with session.begin():
        emailed = session.get(CreditNote, note.id, populate_existing=True)
        emailed.emailed_at = utcnow()
        note.emailed_at = emailed.emailed_at
        outbox.refresh_bill(session, bill.id)  # its message stops saying "not emailed yet"
    return Credited(bill, note, None)


def _credit_amount(bill: Bill, amount: Decimal | str) -> Decimal:
    currency = bill.currency
    value = parse_amount(amount if isinstance(amount, str) else f"{amount:f}", currency, what="The credit")
    already = credited(bill)
    left = bill.overage_amount - already
    if value > left:
        so_far = f", {format_money(already, currency)} of it credited already" if already else ""
        raise InvalidInput(
            f"A credit note cannot exceed what is left of invoice {bill.invoice_number}: at most"
            f" {format_money(left, currency)} (the invoice is for {format_money(bill.overage_amount, currency)}"
            f"{so_far})"
        )
    return value


# --- usage corrected after billing (bot/corrections.py runs this in a usage import's transaction) ------


@dataclass(frozen=True)
class Correction:
    """What a usage correction did to one bill: `outcome` is "recomputed", "left" or "flagged"."""

    bill: Bill
    outcome: str
    message: str


def correct_usage(session: Session, bill: Bill, usage: int, cause: str) -> Correction | None:
    """Apply corrected usage to a bill locked in the caller's transaction; None when the usage is the same.

    A DRAFT or FINAL bill is recomputed (one RECOMPUTE action with the old and new usage and amount);
    when the amount changes, approvals start over and a FINAL bill is a DRAFT again, and a bill left with
    no overage, or less than the currency's smallest unit, is written off. A WRITEOFF bill stays and gets
    a note; a SENT bill (or one whose email may be with the customer) is never changed: it gets a note and
    is flagged for a credit note.
    """
    if usage == bill.api_usage:
        return None
    currency = bill.currency
    old_usage, old_amount = bill.api_usage, bill.overage_amount
    units = usage - bill.monthly_api_limit
    amount = overage_amount(max(units, 0), bill.overage_unit_cost, currency)
    change = f"usage {old_usage:,} → {usage:,} calls"
    name = bill.invoice_number or f"#{bill.id}"
    if bill.status is BillStatus.SENT or bill.sending_started_at is not None:
        sent = "was sent" if bill.status is BillStatus.SENT else "is being emailed, or may have been"
        if amount < old_amount:
            advice = f"issue a credit note (the corrected amount is {format_money(old_amount - amount, currency)} less)"
        elif amount > old_amount:
            advice = f"the corrected amount, {format_money(amount, currency)}, is more than was billed"
        else:
            advice = "its amount would be the same"
        _note(bill, f"{cause}: {change} after the bill {sent}; it stays as it is: {advice}")
        return Correction(bill, "flagged", f"bill {name} {sent}: {advice}")
    if bill.status is BillStatus.WRITEOFF:
        _note(bill, f"{cause}: {change}; the bill stays written off")
        return Correction(bill, "left", f"bill {name} is written off and stays so ({change})")
    figures = _usage_change(bill, usage, amount)
    if units <= 0 or amount <= 0:
        why = "within the monthly limit" if units <= 0 else f"below {format_money(minor_unit_of(currency), currency)}"
        status, outcome = BillStatus.WRITEOFF, f"written off: {why}"
    elif amount != old_amount:
        status, outcome = BillStatus.DRAFT, "approvals start over"
    else:
        status, outcome = bill.status, "the amount is the same"
    comment = (
        f"{cause}: {change}, amount {format_money(old_amount, currency)} → {format_money(amount, currency)};"
        f" {outcome}"
    )
    _record(bill, None, ActionType.RECOMPUTE, status, comment=comment[:REASON_MAX_LENGTH], origin=ActionOrigin.IMPORT,
            **figures)
    return Correction(bill, "recomputed", f"bill {name}: {change}; {outcome}")


def _usage_change(bill: Bill, usage: int, amount: Decimal) -> dict:
    """Set the bill's usage (its overage follows) and amount; returns the before and after for the action."""
    figures = {
        "usage_before": bill.api_usage,
        "usage_after": usage,
        "amount_before": bill.overage_amount,
        "amount_after": amount,
    }
    bill.api_usage = usage
    bill.overage_units = usage - bill.monthly_api_limit
    bill.overage_amount = amount
    return figures


def _note(bill: Bill, comment: str) -> None:
    _record(bill, None, ActionType.NOTE, bill.status, comment=comment[:REASON_MAX_LENGTH], origin=ActionOrigin.IMPORT)


# --- plumbing --------------------------------------------------------------------------------------


def _lock(session: Session, bill_id: int, actor: User) -> tuple[Bill, User]:
    """The bill, locked for this transaction, and the acting account, both read fresh."""
    if isinstance(bill_id, bool) or not isinstance(bill_id, int):
        raise InvalidInput(f"{bill_id!r} is not a bill number")
    actor_id = actor.id
    # Objects the caller loaded earlier may be stale; everything the rules read comes from this transaction.
    session.expire_all()
    bill = session.scalars(
        select(Bill).where(Bill.id == bill_id).with_for_update().execution_options(populate_existing=True)
    ).one_or_none()
    if bill is None:
        raise NotFound(f"Bill #{bill_id} does not exist")
    user = session.get(User, actor_id, populate_existing=True)
    if user is None:
        raise NotFound(f"Account #{actor_id} does not exist")
    return bill, check_active(user)


def _mark_sending(
    bill: Bill, started_at: datetime | None, user: User | None, *, error: str | None = None, refresh: bool = True
) -> None:
    """Set (or clear, with None) the record of the bill's email in flight; Slack shows the change."""
    bill.sending_started_at = started_at
    bill.sending_by = user
    bill.sending_error = error[:300] if error else None
    bill.updated_at = Bill.updated_at  # the bill itself is unchanged: keep its on-update default from firing
    session = object_session(bill)
    session.flush()
    if refresh:
        outbox.refresh_bill(session, bill.id)
        outbox.add(session, OutboxKind.HOMES, "homes")


def _record(
    bill: Bill,
    user: User | None,
    action: ActionType,
    status_after: BillStatus,
    *,
    comment: str | None = None,
    unit_cost_before: Decimal | None = None,
    unit_cost_after: Decimal | None = None,
    undone: BillAction | None = None,
    usage_before: int | None = None,
    usage_after: int | None = None,
    amount_before: Decimal | None = None,
    amount_after: Decimal | None = None,
    credit_note: CreditNote | None = None,
    origin: ActionOrigin | None = None,
) -> BillAction:
    """Move the bill to `status_after` and append the one action that records the change.

    An action that gives the bill its amount records the approval rules it follows from then on.
    """
    now = utcnow()
    entry = BillAction(
        stakeholder=user,
        origin=origin,
        action=action,
        comment=comment,
        status_before=bill.status,
        status_after=status_after,
        unit_cost_before=unit_cost_before,
        unit_cost_after=unit_cost_after,
        undone_action_id=undone.id if undone is not None else None,
        usage_before=usage_before,
        usage_after=usage_after,
        amount_before=amount_before,
        amount_after=amount_after,
        credit_note=credit_note,
        created_at=now,
    )
    if approval.sets_amount(entry):
        entry.policy = approval.in_force().to_json()
        entry.require_csm_approval = bill.customer.require_csm_approval
    bill.status = status_after  # first: appending loads the actions, which flushes the bill as it is then
    if action not in RECORDS_ONLY:  # a note, a resend or a credit note leaves the bill itself as it was
        bill.updated_at = now
    bill.actions.append(entry)
    session = object_session(bill)
    session.flush()
    # What Slack must show of this change commits with it (bot/outbox.py); the delivery workers post it.
    outbox.bill_changed(session, bill.id, entry.id)
    return entry


def _load_for_display(bill: Bill) -> None:
    """Load what callers read after the commit (approval state, history), while the transaction is open."""
    customer = bill.customer
    _ = customer.csm, bill.sending_by
    for action in bill.actions:
        _ = action.stakeholder, action.credit_note
    for note in bill.credit_notes:
        _ = note.created_by
