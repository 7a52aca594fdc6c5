"""The small typed request a `/bill` subcommand works from, built once from Slack's payload."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from slack_sdk import WebClient

from bot.errors import NotAllowed
from db.models import User
from handlers.identity import NOT_LINKED


@dataclass(frozen=True)
class CommandRequest:
    services: object  # handlers.app.Services
    client: WebClient
    respond: Callable[..., object]
    slack_user_id: str
    channel_id: str
    subcommand: str
    args: list[str]
    text: str  # everything after the subcommand, as typed
    user: User | None  # the linked account, None when not linked

    def account(self) -> User:
        """The caller's account, refusing unlinked callers."""
        if self.user is None:
            raise NotAllowed(NOT_LINKED)
        return self.user

    def reply(self, text: str, blocks: list[dict] | None = None) -> None:
        """An ephemeral answer to the caller."""
        self.respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=False)
