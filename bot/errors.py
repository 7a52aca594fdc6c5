"""Domain errors. Each carries the sentence shown to the person who caused it."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from db.models import ActionType


class BillProcessError(Exception):
    """Base of every error a user can cause; `str(error)` is the message to show them."""


class InvalidInput(BillProcessError):
    """The input is malformed or out of range."""


class InvalidFields(InvalidInput):
    """Values that cannot be used, each named: `problems` lists (field, reason), the reason naming it too."""

    def __init__(self, problems: list[tuple[str | None, str]]):
        super().__init__("; ".join(reason for _, reason in problems))
        self.problems = problems


class NotFound(BillProcessError):
    """The bill, customer or account does not exist."""


class NotAllowed(BillProcessError):
    """The acting account's role may not do this."""


class NotApprover(NotAllowed):
    """The acting account may approve bills, but not this one (it belongs to another CSM)."""


class WaitingForOther(NotAllowed):
    """The bill needs another approval first; the message names whom it waits for."""


class InvalidTransition(BillProcessError):
    """The bill's current state does not allow this action."""


class AlreadyDone(InvalidTransition):
    """Somebody's action got there first; the message says who did what, and when.

    The same facts come as fields so that a caller can render the person as a mention: `action` is the
    action that got there first (an `ActionType`: APPROVE, REJECT, EDIT, SEND or UNDO); `user_id`, `user_name`
    and `slack_user_id` name who took it (all None for the scheduler); `at` is when (UTC).
    """

    def __init__(
        self,
        message: str,
        *,
        bill_id: int | None = None,
        action: ActionType | None = None,
        user_id: int | None = None,
        user_name: str | None = None,
        slack_user_id: str | None = None,
        at: datetime | None = None,
    ):
        super().__init__(message)
        self.bill_id = bill_id
        self.action = action
        self.user_id = user_id
        self.user_name = user_name
        self.slack_user_id = slack_user_id
        self.at = at

    @classmethod
    def of(cls, message: str, *, bill_id: int, action: ActionType, who, at: datetime):
        """The refusal naming who (an account, or None for nobody) got there first with `action`, and when."""
        return cls(
            message,
            bill_id=bill_id,
            action=action,
            user_id=who.id if who else None,
            user_name=who.name if who else None,
            slack_user_id=who.slack_user_id if who else None,
            at=at,
        )


class MonthNotEnded(BillProcessError):
    """Bills for a month can only be generated once it is over."""


class Conflict(BillProcessError):
    """The change clashes with existing data (a name or email already taken, a Slack user already linked)."""


class DeliveryFailed(BillProcessError):
    """The bill's email was not accepted (by the mail server, or the mail folder); the bill stays FINAL."""


class DeliveryUncertain(BillProcessError):
    """The mail server may have accepted the email without saying so: it went silent or away after the
    message was handed over. Sending it again could email the customer twice."""


class SendInProgress(AlreadyDone):
    """Someone's send of the bill is on its way; the message says who started it and when."""


class SendUncertain(InvalidTransition):
    """An earlier send of the bill may have reached the customer; only a send on purpose emails it again."""

    def __init__(self, message: str, *, bill_id: int):
        super().__init__(message)
        self.bill_id = bill_id
