"""Block Kit builders: small pure functions from domain objects to Slack payloads.

Builders compose `slack_sdk.models` objects, whose `to_dict()` validates each block against Slack's
rules; `message_blocks` and `view_blocks` also enforce the per-message and per-view limits.
"""

from __future__ import annotations

from collections.abc import Sequence

from slack_sdk.models.blocks import Block, ContextBlock, HeaderBlock, MarkdownTextObject

from bot.text import clip  # builders clip text to Block Kit's limits: `from bot.blocks import clip`
from db.models import ActionType, BillAction, User

MAX_MESSAGE_BLOCKS = 50
HEADER_MAX = 150  # characters in a header block's text
MAX_VIEW_BLOCKS = 100


def escape(text: str) -> str:
    """Text safe inside mrkdwn: Slack reads &, < and > as markup; everything else, quotes too, stays as typed."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mention(user: User | None) -> str:
    """The person as Slack shows them: an @-mention when linked, else the account name."""
    if user is None:
        return "the scheduler"
    return f"<@{user.slack_user_id}>" if user.slack_user_id else user.name


def actor(action: BillAction) -> str:
    """Who took the action, as Slack shows them; a usage import for the corrections it made."""
    if action.stakeholder is None and action.action in (ActionType.RECOMPUTE, ActionType.NOTE):
        return "a usage import"
    return mention(action.stakeholder)


def _checked(blocks: Sequence[Block], limit: int, where: str) -> list[dict]:
    if len(blocks) > limit:
        raise ValueError(f"{len(blocks)} blocks exceed Slack's limit of {limit} per {where}")
    return [block.to_dict() for block in blocks]


def message_blocks(blocks: Sequence[Block]) -> list[dict]:
    """Validated blocks for one message (≤ 50)."""
    return _checked(blocks, MAX_MESSAGE_BLOCKS, "message")


def view_blocks(blocks: Sequence[Block]) -> list[dict]:
    """Validated blocks for a modal or the Home tab (≤ 100)."""
    return _checked(blocks, MAX_VIEW_BLOCKS, "view")


def header(text: str) -> HeaderBlock:
    return HeaderBlock(text=clip(text, HEADER_MAX))


def context(markdown: str) -> ContextBlock:
    """A line of small print."""
    return ContextBlock(elements=[MarkdownTextObject(text=markdown)])
