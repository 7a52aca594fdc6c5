"""Domain errors. Each carries the sentence shown to the person who caused it."""

from __future__ import annotations


class BillProcessError(Exception):
    """Base of every error a user can cause; `str(error)` is the message to show them."""


class InvalidInput(BillProcessError):
    """The input is malformed or out of range."""


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
    """Somebody else's action got there first; the message says who did what, and when."""


class MonthNotEnded(BillProcessError):
    """Bills for a month can only be generated once it is over."""


class Conflict(BillProcessError):
    """The change clashes with existing data (a name or email already taken, a Slack user already linked)."""
