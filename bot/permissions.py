"""Which role may do what, apart from approving and rejecting (bot/approval.py decides those).

The services call `require` before they change anything; Slack and the command line only ask
`allowed` to decide what to offer (the `/bill help` list, the App Home), never to refuse.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from bot import formatting
from bot.errors import NotAllowed
from db.models import Role, User


class Power(enum.Enum):
    GENERATE = "generate"
    EDIT = "edit"
    SEND = "send"
    MARK_SENT = "mark_sent"
    EXPORT = "export"
    RESEND = "resend"
    CREDIT = "credit"
    UNDO_ANYONES = "undo_anyones"  # undo an action someone else took; anyone may undo their own


@dataclass(frozen=True)
class Grant:
    roles: frozenset[Role]
    doing: str  # completes "Only Finance can …"


FINANCE = frozenset({Role.FINANCE})
GRANTS = {
    Power.GENERATE: Grant(FINANCE, "generate bills"),
    Power.EDIT: Grant(FINANCE, "edit a bill's unit cost"),
    Power.SEND: Grant(FINANCE, "send bills"),
    Power.MARK_SENT: Grant(FINANCE, "mark a bill as sent"),
    Power.EXPORT: Grant(FINANCE, "export bills"),
    Power.RESEND: Grant(FINANCE, "resend bills"),
    Power.CREDIT: Grant(FINANCE, "credit bills"),
    Power.UNDO_ANYONES: Grant(FINANCE, "undo what someone else did"),
}


def roles(power: Power) -> frozenset[Role]:
    return GRANTS[power].roles


def roles_label(power: Power) -> str:
    """The roles holding `power`, as a refusal names them: "Finance"."""
    return formatting.roles_label(GRANTS[power].roles)


def allowed(user: User, power: Power) -> bool:
    return user.role in GRANTS[power].roles


def require(user: User, power: Power) -> None:
    """Refuse with NotAllowed unless `user`'s role holds `power`."""
    if not allowed(user, power):
        raise NotAllowed(f"Only {roles_label(power)} can {GRANTS[power].doing}")
