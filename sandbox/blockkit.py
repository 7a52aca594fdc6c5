"""Block Kit as Slack checks it: every block and element parsed and validated by slack_sdk's models,
within Slack's limits per message and per view.

Each function returns the problems found, as lines a person can act on ("block 3 (section): text
attribute cannot exceed 3000 characters"); an empty list means Slack would take it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
_VIEW_FIELDS = ("type", "title", "submit", "close", "callback_id", "external_id", "private_metadata")

def _types(node: Any) -> Counter[str]:
    """How often each `type` value occurs anywhere in a block (blocks, elements, text objects)."""
    found: Counter[str] = Counter()
    if isinstance(node, dict):
        if isinstance(node.get("type"), str):
            found[node["type"]] += 1
        for value in node.values():
            found += _types(value)
    elif isinstance(node, list):
        for item in node:
            found += _types(item)
    return found


def block_problem(block: Any) -> str | None:
    """What is wrong with one block, or None when slack_sdk's model takes it whole."""
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        return "is not a block (an object with a type)"
    try:
        parsed = Block.parse(block)
        if parsed is None:
            return f"unknown block type {block['type']!r}"
        shown = parsed.to_dict()
    except (SlackObjectFormationError, TypeError, ValueError, KeyError, AttributeError) as error:
        return str(error) or type(error).__name__
    # The model drops elements of kinds it does not know: a type that went missing was one of them.
    missing = _types(block) - _types(shown)
    if missing:
        kinds = ", ".join(sorted(missing))
        return f"unknown element type {kinds}"
    return None


def blocks_problems(blocks: Any, *, limit: int = MAX_MESSAGE_BLOCKS) -> list[str]:
    """Every problem in a list of blocks, each naming the block by its position (1-based) and type."""
    if not isinstance(blocks, list):
        return ["blocks must be a list of blocks"]
    problems = []
    if len(blocks) > limit:
        problems.append(f"{len(blocks)} blocks, more than Slack's limit of {limit}")
    for number, block in enumerate(blocks, start=1):
        problem = block_problem(block)
        if problem:
            kind = block.get("type") if isinstance(block, dict) else None
            problems.append(f"block {number}{f' ({kind})' if kind else ''}: {problem}")
    return problems


def view_problems(view: Any) -> list[str]:
    """Every problem in a modal or Home tab view: its own fields, then its blocks."""
    if not isinstance(view, dict) or view.get("type") not in ("modal", "home"):
        return ["a view must be an object of type modal or home"]
    problems = []
    if view["type"] == "modal" and not isinstance(view.get("title"), dict):
        problems.append("a modal needs a title")
    # The view's own fields as slack_sdk checks them (title, submit, close, callback_id, private_metadata);
    # its blocks are checked one by one below, so that each problem names its block.
    fields = {k: view[k] for k in _VIEW_FIELDS if k in view}
    try:
        View(**fields, blocks=[{"type": "divider"}]).validate_json()
    except (SlackObjectFormationError, TypeError, ValueError) as error:
        problems.append(str(error))
    return problems + blocks_problems(view.get("blocks") or [], limit=MAX_VIEW_BLOCKS)
