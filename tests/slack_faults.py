"""What the durability tests and benchmarks need of the fake Slack beyond tests/slack_fakes.FakeSlack.

`FaultySlack` adds, in one subclass so that FakeSlack itself is unchanged:
- message metadata kept with each message, and `conversations.history` / `conversations.replies`
  answering with it (`include_all_metadata`), as Slack does;
- HTTP 500 answers for the next N calls of a method (`server_error`);
- message timestamps taken from the clock, as Slack's are (a lookup by `oldest` depends on it);
- a per-channel rate limit of chat.postMessage with a small burst, answering 429 with `Retry-After`
  beyond it (`limit_posts`), as Slack's "one message per second per channel".
Holding answers ("Slack hangs") is FakeSlack.delay.
"""

from __future__ import annotations

import math
import time
from typing import Any

from tests.slack_fakes import FakeSlack, _Reply


class FaultySlack(FakeSlack):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._server_errors: dict[str, int] = {}
        self._post_rate: float | None = None
        self._post_burst = 1.0
        self._buckets: dict[str, tuple[float, float]] = {}  # channel → (tokens, at)
        self._last_micros = 0
        self._methods["conversations.history"] = self._conversations_history
        self._methods["conversations.replies"] = self._conversations_replies

    # -- set-up -----------------------------------------------------------------------------------

    def server_error(self, method: str, *, times: int) -> None:
        """Answer the next `times` calls of `method` with HTTP 500 (the call has no effect)."""
        with self._state:
            self._server_errors[method] = self._server_errors.get(method, 0) + times

    def limit_posts(self, per_second: float, burst: int) -> None:
        """Allow `per_second` chat.postMessage calls per channel, `burst` at once; 429 beyond that."""
        with self._state:
            self._post_rate, self._post_burst = per_second, float(burst)
            self._buckets.clear()

    # -- what happened ------------------------------------------------------------------------------

    def top_level(self, channel: str) -> list[dict[str, Any]]:
        """The channel's messages that are not thread replies, in posting order."""
        return [m for m in self.messages(channel) if "thread_ts" not in m]

    def replies(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        return [m for m in self.messages(channel) if m.get("thread_ts") == thread_ts]

    def _next_ts(self) -> str:
        # Strictly increasing, and never behind the clock (called under the fake's lock).
        micros = max(int(time.time() * 1_000_000), self._last_micros + 1)
        self._last_micros = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    # -- request handling ---------------------------------------------------------------------------

    def _api_reply(self, method: str, params: dict[str, Any] | None, authorization: str | None) -> _Reply:
        if self._server_errors.get(method):
            self._server_errors[method] -= 1
            return _Reply.text(500, "Internal Server Error", error="http_500")
        if method == "chat.postMessage" and self._post_rate and params and params.get("channel"):
            wait = self._take_token(self._channel_for(params["channel"]))
            if wait > 0:
                headers = {"Retry-After": str(max(1, math.ceil(wait)))}
                return _Reply.json(429, {"ok": False, "error": "ratelimited"}, headers)
        return super()._api_reply(method, params, authorization)

    def _take_token(self, channel: str) -> float:
        """0 when a post may go now (and count it), else the seconds until it may."""
        now = time.monotonic()
        tokens, at = self._buckets.get(channel, (self._post_burst, now))
        tokens = min(self._post_burst, tokens + (now - at) * self._post_rate)
        if tokens >= 1:
            self._buckets[channel] = (tokens - 1, now)
            return 0.0
        self._buckets[channel] = (tokens, now)
        return (1 - tokens) / self._post_rate

    def _bot_message(self, params: dict[str, Any], ts: str) -> dict[str, Any]:
        message = super()._bot_message(params, ts)
        if isinstance(params.get("metadata"), dict):
            message["metadata"] = params["metadata"]
        return message

    def _history(self, params: dict[str, Any], keep, *, newest_first: bool) -> dict[str, Any]:
        channel = params.get("channel") or ""
        oldest = float(params.get("oldest") or 0)
        found = [
            self._shown(m, params) for (ch, ts), m in self._messages.items()
            if ch == channel and float(ts) > oldest and keep(m)
        ]
        if newest_first:
            found.reverse()
        limit = int(params.get("limit") or 100)
        start = int(params.get("cursor") or 0)
        page = found[start:start + limit]
        more = start + limit < len(found)
        return {"messages": page, "has_more": more,
                "response_metadata": {"next_cursor": str(start + limit) if more else ""}}

    @staticmethod
    def _shown(message: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        shown = {k: v for k, v in message.items() if k != "channel"}
        if str(params.get("include_all_metadata")).lower() not in ("1", "true"):
            shown.pop("metadata", None)
        return shown

    def _conversations_history(self, params: dict[str, Any]) -> dict[str, Any]:
        """The channel's top-level messages, newest first."""
        return self._history(params, lambda m: "thread_ts" not in m, newest_first=True)

    def _conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        """The thread's parent, then its replies, oldest first."""
        ts = params.get("ts")
        return self._history(params, lambda m: m.get("ts") == ts or m.get("thread_ts") == ts, newest_first=False)
