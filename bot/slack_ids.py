"""Every action_id, block_id and callback_id the app sends to Slack, and the state that travels in them."""

from __future__ import annotations

import enum

from bot.bills import parse_bill_id
from bot.errors import InvalidInput


class ActionId(str, enum.Enum):
    APPROVE = "bill_approve"
    REJECT = "bill_reject"
    SEND = "bill_send"
    UNDO = "bill_undo"
    SHOW = "bill_show"


class CallbackId(str, enum.Enum):
    REJECT_MODAL = "bill_reject_modal"


class BlockId(str, enum.Enum):
    REJECT_REASON = "reject_reason"
    BILL_ACTIONS = "bill_actions"


class InputId(str, enum.Enum):
    REJECT_REASON = "reason"


def bill_value(bill_id: int) -> str:
    """The value a button or modal carries: the bill's number, nothing the app would trust."""
    return f"bill:{bill_id}"


def parse_bill_value(value: str | None) -> int:
    """The bill number from a button value or private_metadata; malformed input is refused."""
    if not value or not value.startswith("bill:"):
        raise InvalidInput("That button is not for a bill any more. Use `/bill show <id>` to see the bill.")
    return parse_bill_id(value.removeprefix("bill:"))


def undo_value(bill_id: int, action_id: int) -> str:
    """An Undo button's value: the bill, and the action the person saw as the one an undo reverts."""
    return f"{bill_value(bill_id)};undo:{action_id}"


def parse_undo_value(value: str | None) -> tuple[int, int | None]:
    """The bill number and, when the button named one, the action to undo; a bare bill value is accepted."""
    bill_part, separator, action_part = (value or "").partition(";")
    bill_id = parse_bill_value(bill_part)
    if not separator:
        return bill_id, None
    action = action_part.removeprefix("undo:")
    if action == action_part or not action.isdigit() or not 0 < int(action) < 2**63:
        raise InvalidInput("That button is not for a bill any more. Use `/bill show <id>` to see the bill.")
    return bill_id, int(action)
