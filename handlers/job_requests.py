"""Which requests from Slack change bills, and so are recorded as jobs before their acknowledgement."""

from __future__ import annotations

from bot.slack_ids import ActionId

# Buttons whose click is recorded as a job (handlers/actions.py applies them).
CLICK_JOBS = frozenset(
    action.value for action in (ActionId.APPROVE, ActionId.SEND, ActionId.SEND_AGAIN, ActionId.MARK_SENT, ActionId.UNDO)
)
# `/bill` subcommands that change bills or who approves them (handlers/commands.py runs them as jobs).
COMMAND_JOBS = frozenset({"generate", "edit", "send", "undo", "resend", "credit", "away", "back"})


def records_a_job(body: dict) -> bool:
    """True for a click or a `/bill` command that is recorded as a job (the rest is answered at once)."""
    if body.get("type") == "block_actions":
        actions = body.get("actions")
        first = actions[0] if isinstance(actions, list) and actions else None
        return isinstance(first, dict) and first.get("action_id") in CLICK_JOBS
    if body.get("command") == "/bill":
        words = str(body.get("text") or "").split(None, 1)
        return bool(words) and words[0].lower() in COMMAND_JOBS
    return False
