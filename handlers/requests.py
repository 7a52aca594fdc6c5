"""The small typed request a `/bill` subcommand works from, built once from Slack's payload."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from slack_sdk import WebClient

from bot.errors import NotAllowed
from db.models import Role, User
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

    def account(self, *roles: Role) -> User:
        """The caller's account, refusing unlinked callers and, when `roles` are given, other roles."""
        if self.user is None:
            raise NotAllowed(NOT_LINKED)
        if roles and self.user.role not in roles:
            allowed = " or ".join(role.label for role in roles)
            raise NotAllowed(f"Only {allowed} can use `/bill {self.subcommand}`; you are {self.user.role.label}.")
        return self.user

    def reply(self, text: str, blocks: list[dict] | None = None) -> None:
        """An ephemeral answer to the caller."""
        self.respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=False)

    def announce(self, text: str, blocks: list[dict] | None = None) -> None:
        """An answer everyone in the channel sees (for changes)."""
        self.respond(text=text, blocks=blocks, response_type="in_channel", replace_original=False)
