"""Which requests from Slack change bills, and so are recorded as jobs before their acknowledgement
(handlers/jobs.py; handlers/actions.py and handlers/commands.py read them)."""

from __future__ import annotations

from bot.slack_ids import ActionId

# Buttons whose click is recorded as a job (handlers/actions.py applies them).
CLICK_JOBS = frozenset(
    action.value for action in (ActionId.APPROVE, ActionId.SEND, ActionId.SEND_AGAIN, ActionId.MARK_SENT, ActionId.UNDO)
)
# `/bill` subcommands that change bills or who approves them (handlers/commands.py runs them as jobs).
COMMAND_JOBS = frozenset({"generate", "edit", "send", "undo", "resend", "credit", "away", "back"})

