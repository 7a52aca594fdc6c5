"""Every action_id, block_id and callback_id the app sends to Slack, and the state that travels in them."""

from __future__ import annotations

import enum

from bot.bills import parse_bill_id, row_id
from bot.errors import InvalidInput


class ActionId(str, enum.Enum):
    APPROVE = "bill_approve"
    REJECT = "bill_reject"
    SEND = "bill_send"
    SEND_AGAIN = "bill_send_again"
    MARK_SENT = "bill_mark_sent"
    UNDO = "bill_undo"
    PDF = "bill_pdf"  # the invoice as a PDF, uploaded to the clicking person's direct messages


class CallbackId(str, enum.Enum):
    REJECT_MODAL = "bill_reject_modal"


class BlockId(str, enum.Enum):
    REJECT_REASON = "reject_reason"
    BILL_ACTIONS = "bill_actions"


class InputId(str, enum.Enum):
    REJECT_REASON = "reason"


STALE_BUTTON = "That button is not for a bill any more. Use `/bill show <id>` to see the bill."


def _action_number(text: str) -> int:
    action_id = row_id(text)
    if action_id is None:
        raise InvalidInput(STALE_BUTTON)
    return action_id


def bill_value(bill_id: int, seen_action_id: int | None = None) -> str:
    """The value a bill's button or modal carries: "bill:12:345", the bill and the version of it shown.

    The version is the id of the bill's latest effective action when the button was drawn, so that a
    click on a stale button is refused instead of acting on a bill the person has not seen. Nothing in
    it is trusted: the bill is reloaded and the person's rights checked on every click.
    """
    if seen_action_id is None:
        return f"bill:{bill_id}"
    return f"bill:{bill_id}:{seen_action_id}"


def parse_bill_value(value: str | None) -> tuple[int, int | None]:
    """The bill number and the version seen from a button value or private_metadata.

    A bare "bill:12", as older messages carry, gives no version (None); malformed input is refused.
    """
    if not value or not value.startswith("bill:"):
        raise InvalidInput(STALE_BUTTON)
    bill_part, separator, seen_part = value.removeprefix("bill:").partition(":")
    bill_id = parse_bill_id(bill_part)
    return bill_id, _action_number(seen_part) if separator else None


def undo_value(bill_id: int, action_id: int) -> str:
    """An Undo button's value: the bill, and the action the person saw as the one an undo reverts."""
    return f"{bill_value(bill_id)};undo:{action_id}"


def parse_undo_value(value: str | None) -> tuple[int, int | None]:
    """The bill number and, when the button named one, the action to undo; a bare bill value is accepted."""
    bill_part, separator, action_part = (value or "").partition(";")
    bill_id, _ = parse_bill_value(bill_part)
    if not separator:
        return bill_id, None
    action = action_part.removeprefix("undo:")
    if action == action_part:
        raise InvalidInput(STALE_BUTTON)
    return bill_id, _action_number(action)
