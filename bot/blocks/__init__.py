"""Block Kit builders: small pure functions from domain objects to Slack payloads.

Builders compose `slack_sdk.models` objects, whose `to_dict()` validates each block against Slack's
rules; `message_blocks` and `view_blocks` also enforce the per-message and per-view limits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.formatting import actor_name
from bot.text import clip  # builders clip text to Block Kit's limits: `from bot.blocks import clip`
from db.models import BillAction, User

MAX_MESSAGE_BLOCKS = 50
HEADER_MAX = 150  # characters in a header block's text
MAX_VIEW_BLOCKS = 100
SECTION_TEXT_MAX = 3000  # characters in a section block's text


def escape(text: str) -> str:
    """Text safe inside mrkdwn: Slack reads &, < and > as markup; everything else, quotes too, stays as typed."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mention(user: User | None) -> str:
    """The person as Slack shows them: an @-mention when linked, else the account name."""
    if user is None:
        return "the scheduler"
    return f"<@{user.slack_user_id}>" if user.slack_user_id else user.name


def actor_mention(action: BillAction) -> str:
    """Who took an action, as Slack shows them; the approval policy or the scheduler when nobody did."""
    return mention(action.stakeholder) if action.stakeholder is not None else actor_name(action)


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


def section(markdown: str, **extra) -> SectionBlock:
    """A block of mrkdwn text; `extra` may add an accessory."""
    return SectionBlock(text=MarkdownTextObject(text=markdown), **extra)


def fields(texts: Iterable[str], *, above: str | None = None) -> SectionBlock:
    """Short mrkdwn texts shown side by side ("*Label*\nvalue"), under the line `above` when given."""
    return SectionBlock(
        text=MarkdownTextObject(text=above) if above else None,
        fields=[MarkdownTextObject(text=text) for text in texts],
    )


def packed(lines: Iterable[str], *, limit: int = SECTION_TEXT_MAX) -> list[str]:
    """Lines joined into as few texts as fit `limit` characters each (every line must fit alone)."""
    texts: list[str] = []
    current: list[str] = []
    size = 0
    for line in lines:
        if current and size + 1 + len(line) > limit:
            texts.append("\n".join(current))
            current, size = [], 0
        size += len(line) + (1 if current else 0)
        current.append(line)
    if current:
        texts.append("\n".join(current))
    return texts
