"""A local Slack Web API: the sandbox's workspace, and the tests' fake Slack.

`FakeSlack` stands in for `https://slack.com/api/`: give `fake.url` to `WebClient(base_url=...)` (or
`SLACK_API_URL`), let the app run, then read what reached "Slack" (`fake.calls("chat.postMessage")`,
`fake.messages(channel)`). Work done after the HTTP acknowledgement finishes in another thread: use
`fake.wait_for(...)`. The other direction, Slack calling the app, is sandbox/app_requests.py.

The fake checks what Slack checks cheaply (the token and its scopes, required arguments, Block Kit
size limits, known users and uploaded files) and trusts references to messages and views it has not
seen, so a test can click a button on a message that was created before the fake started. It keeps
what was posted, threads and message metadata included, and answers `conversations.history` and
`conversations.replies` from it.

Slack's failures can be injected per method: an ok=false error (`fail`), HTTP 429 (`rate_limit`, or
Slack's per-channel posting limit with `limit_posts`), HTTP 5xx (`server_error`), answers held past the
client's timeout (`delay`, `hang`), and calls that Slack carried out but whose answer never reached the
client (`lose_answer`). `clear_faults` ends them all.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import mimetypes
import secrets
import threading
import time
from base64 import b64decode, b64encode
from binascii import Error as Base64Error
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from sandbox.blockkit import MAX_MESSAGE_BLOCKS, MAX_VIEW_BLOCKS, blocks_problems, view_problems

log = logging.getLogger(__name__)

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"

TOKEN = "xoxb-sandbox-bot-token"
APP_TOKEN = "xapp-1-A0BILLS01-sandbox-app-token"
SIGNING_SECRET = "sandbox-signing-secret"
TEAM_ID = "T0BILLS01"
TEAM_DOMAIN = "billprocess-sandbox"
APP_ID = "A0BILLS01"
BOT_USER_ID = "U0BOT0001"
BOT_ID = "B0BOT0001"
CHANNEL_ID = "C0BILLS01"
CHANNEL_NAME = "bills"
# The deprecated verification token Slack still puts in every payload; Bolt ignores it.
VERIFICATION_TOKEN = "legacy-verification-token"
# Nothing listens on port 9 (discard): a listener that responds without a test-supplied
# response_url fails at once instead of reaching the internet.
UNSET_RESPONSE_URL = "http://127.0.0.1:9/response_url/unset"
DEFAULT_SCOPES = (
    "channels:history,chat:write,commands,files:write,groups:history,im:history,im:write,users:read,users:read.email"
)
# The bot scope each method needs (Slack's method reference); methods not listed need none.
SCOPE_BY_METHOD = {
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "chat.postEphemeral": "chat:write",
    "conversations.open": "im:write",
    "users.info": "users:read",
    "files.getUploadURLExternal": "files:write",
    "files.completeUploadExternal": "files:write",
}
# Reading a conversation needs the history scope of its kind, told here by the first letter of its id
# (Slack gives private channels C ids too; the fake treats every C id as public).
HISTORY_METHODS = ("conversations.history", "conversations.replies")
HISTORY_SCOPE_BY_PREFIX = {"C": "channels:history", "G": "groups:history", "D": "im:history"}
# Called with an app-level token (xapp-...), not the bot token.
APP_LEVEL_METHODS = ("apps.connections.open",)

__all__ = ["MAX_MESSAGE_BLOCKS", "MAX_VIEW_BLOCKS"]  # Block Kit's limits, checked in sandbox/blockkit.py
MAX_TEXT_LENGTH = 40_000
# A trigger_id opens a modal only within three seconds of the click or command that made it.
TRIGGER_SECONDS = 3.0
SLACKBOT_USER_ID = "USLACKBOT"
# Slack takes five answers through one response_url.
RESPONSE_URL_USES = 5
HISTORY_PAGE_SIZE = 100
MAX_HISTORY_PAGE_SIZE = 999
# Slack's own page for a server error (its edge answers 5xx with HTML, not JSON).
SERVER_ERROR_PAGE = (
    '<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"><title>Server Error | Slack</title></head>\n'
    "<body><h1>{status} {reason}</h1><p>Slack is having trouble right now. Please try again.</p></body>\n</html>\n"
)

# Form-encoded calls carry these as JSON strings; they are decoded so that a test sees the same
# params whichever encoding the client chose.
_JSON_FIELDS = ("blocks", "attachments", "view", "files", "metadata")


# ---------------------------------------------------------------------------------------------
# What the fake records


@dataclass(frozen=True)
class Call:
    """One request that reached the fake, as it arrived, with the answer it got."""

    method: str  # a Web API method, or "upload" / "response_url"
    params: dict[str, Any]
    authorization: str | None
    at: float  # time.time() on arrival
    path: str
    status: int  # the HTTP status answered; 0: the connection was closed without an answer
    error: str | None  # the `error` of an ok=false answer, or of an injected failure ("http_503", ...)


@dataclass
class _Fault:
    """An injected failure for the next `times` calls of one method (None: every call).

    status 200: ok=false `error`; 429: rate limited; 5xx: Slack's error page; 0: no answer at all.
    """

    error: str
    status: int
    retry_after: int | None
    times: int | None

    def take(self) -> bool:
        """Use up one occurrence; True when this was the last one."""
        if self.times is None:
            return False
        self.times -= 1
        return self.times <= 0


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    @classmethod
    def json(cls, status: int, data: dict[str, Any], headers: dict[str, str] | None = None) -> _Reply:
        body = json.dumps(data).encode()
        error = None if data.get("ok", True) else data.get("error")
        headers = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
        return cls(status, body, headers, error)

    @classmethod
    def text(cls, status: int, text: str, error: str | None = None) -> _Reply:
        return cls(status, text.encode(), {"Content-Type": "text/plain; charset=utf-8"}, error)

    @classmethod
    def server_error(cls, status: int) -> _Reply:
        reason = http.client.responses.get(status, "Server Error")
        page = SERVER_ERROR_PAGE.format(status=status, reason=reason)
        return cls(status, page.encode(), {"Content-Type": "text/html; charset=utf-8"}, f"http_{status}")

    @classmethod
    def no_answer(cls) -> _Reply:
        """The connection is closed without an HTTP answer."""
        return cls(0, b"", error="connection_closed")


class _ApiError(Exception):
    """Raised by a method handler to answer ok=false with this error (and these extra fields)."""

    def __init__(self, error: str, *, status: int = 200, headers: dict[str, str] | None = None, **fields: Any):
        super().__init__(error)
        self.error = error
        self.status = status
        self.headers = headers or {}
        self.fields = fields


class _InvalidBlockKit(_ApiError):
    """Blocks or a view Slack would refuse: the error, with what is wrong in Slack's response_metadata."""

    def __init__(self, error: str, problems: list[str]):
        super().__init__(error, response_metadata={"messages": [f"[ERROR] {problem}" for problem in problems]})
        self.problems = problems


@dataclass
class ResponseUrl:
    """A response_url handed out with a request to the app: whose request, where it came from, how often used."""

    user: str
    channel: str | None
    message_ts: str | None = None  # the message whose button was clicked (replace_original, delete_original)
    ephemeral: bool = False  # that message was an ephemeral one
    uses: int = 0


@dataclass(eq=False)
class _Hold:
    """Answers to `method` wait `seconds` (None: until released), for the next `times` calls (None: all)."""

    method: str
    seconds: float | None
    times: int | None
    released: bool = False


@dataclass
class _Bucket:
    """A token bucket: `tokens` available at `at` (the fake's clock)."""

    tokens: float
    at: float


def parse_params(content_type: str, body: bytes, query: str = "") -> dict[str, Any]:
    """Params of a Web API call as Slack reads them: the query string, then a form or JSON body."""
    params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    text = body.decode("utf-8")
    if content_type.startswith(JSON):
        params.update(json.loads(text) if text else {})
    elif text:
        params.update(parse_qsl(text, keep_blank_values=True))
    for name in _JSON_FIELDS:
        if isinstance(params.get(name), str) and params[name][:1] in ("[", "{"):
            params[name] = json.loads(params[name])
    return params


def _parse_or_none(content_type: str, body: bytes, query: str) -> dict[str, Any] | None:
    """parse_params, or None for a body Slack could not read either."""
    try:
        return parse_params(content_type, body, query)
    except (ValueError, UnicodeDecodeError):
        return None


def _require(params: dict[str, Any], *names: str, error: str = "invalid_arguments") -> None:
    if any(not params.get(name) for name in names):
        raise _ApiError(error)


def _check_message(params: dict[str, Any]) -> None:
    """The checks chat.postMessage / chat.update / chat.postEphemeral share."""
    _require(params, "channel", error="channel_not_found")
    _check_metadata(params.get("metadata"))
    if not (params.get("text") or params.get("blocks") or params.get("attachments")):
        raise _ApiError("no_text")
    if len(params.get("text") or "") > MAX_TEXT_LENGTH:
        raise _ApiError("msg_too_long")
    problems = blocks_problems(params.get("blocks") or [])
    if problems:
        raise _InvalidBlockKit("invalid_blocks", problems)


def _check_view(view: Any) -> None:
    problems = view_problems(view)
    if problems:
        raise _InvalidBlockKit("invalid_arguments", problems)


def _check_metadata(metadata: Any) -> None:
    """Slack's message metadata: {"event_type": "...", "event_payload": {...}}."""
    if metadata is None:
        return
    if not (
        isinstance(metadata, dict)
        and isinstance(metadata.get("event_type"), str)
        and metadata["event_type"]
        and isinstance(metadata.get("event_payload"), dict)
    ):
        raise _ApiError("invalid_metadata_format")


def _flag(value: Any) -> bool:
    """A boolean argument as form encoding or JSON carries it."""
    return value is True or (isinstance(value, (str, int)) and str(value).lower() in ("1", "true"))


def _ts_argument(params: dict[str, Any], name: str, default: Decimal) -> Decimal:
    """The `oldest` / `latest` argument of a history call."""
    value = params.get(name)
    if value in (None, ""):
        return default
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise _ApiError(f"invalid_ts_{name}") from None


def _between(params: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    """Whether a message lies between `oldest` and `latest` (bounds included with `inclusive`)."""
    oldest = _ts_argument(params, "oldest", Decimal(0))
    latest = _ts_argument(params, "latest", Decimal(str(time.time() + 1)))
    if _flag(params.get("inclusive")):
        return lambda message: oldest <= Decimal(message["ts"]) <= latest
    return lambda message: oldest < Decimal(message["ts"]) < latest


def _page(
    messages: list[dict[str, Any]], params: dict[str, Any], *, newest_first: bool
) -> tuple[list[dict[str, Any]], str]:
    """One page of `messages` (already filtered and ordered) after `cursor`, and the next cursor ("" at the end)."""
    try:
        limit = int(params.get("limit") or HISTORY_PAGE_SIZE)
    except (TypeError, ValueError):
        raise _ApiError("invalid_limit") from None
    limit = min(max(limit, 1), MAX_HISTORY_PAGE_SIZE)
    if params.get("cursor"):
        try:
            start = Decimal(b64decode(params["cursor"], validate=True).decode().removeprefix("next_ts:"))
        except (Base64Error, UnicodeDecodeError, InvalidOperation, ValueError):
            raise _ApiError("invalid_cursor") from None
        follows = (lambda ts: ts <= start) if newest_first else (lambda ts: ts >= start)
        messages = [m for m in messages if follows(Decimal(m["ts"]))]
    page, rest = messages[:limit], messages[limit:]
    cursor = b64encode(f"next_ts:{rest[0]['ts']}".encode()).decode() if rest else ""
    return page, cursor


def _bearer_token(authorization: str | None) -> str | None:
    if authorization and authorization.startswith("Bearer "):
        return authorization.removeprefix("Bearer ")
    return None


# ---------------------------------------------------------------------------------------------
# The fake Web API server


class FakeSlack:
    """A local Slack Web API on 127.0.0.1 that answers like Slack and records every call.

    Use as a context manager, or call start() and stop(). Thread-safe: the app calls it from
    Bolt's worker threads while the test reads it.

    `post_rate` / `post_burst`: Slack's posting limit per channel (see limit_posts); None: no limit.
    `clock`: what the limit measures time with (seconds, monotonic).
    `port`: where it listens (0: a free port). `mount()` adds routes of its own to the same server
    (the sandbox page, sandbox/page.py).

    Everything people see is kept with a version number that grows with each change (messages,
    ephemeral messages, views, refusals of invalid Block Kit): `changed_since(version)` says what
    changed, `wait_for_change` waits for the next change.
    """

    def __init__(
        self,
        token: str = TOKEN,
        *,
        app_token: str = APP_TOKEN,
        team_id: str = TEAM_ID,
        team_domain: str = TEAM_DOMAIN,
        bot_user_id: str = BOT_USER_ID,
        bot_id: str = BOT_ID,
        app_id: str = APP_ID,
        scopes: str = DEFAULT_SCOPES,
        post_rate: float | None = None,
        post_burst: int = 3,
        clock: Callable[[], float] = time.monotonic,
        port: int = 0,
    ):
        self.port = port
        self.token = token
        self.app_token = app_token
        self.team_id = team_id
        self.team_domain = team_domain
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self.scopes = scopes
        self._state = threading.Condition()
        self._calls: list[Call] = []
        self._faults: dict[str, list[_Fault]] = {}
        self._lost_answers: dict[str, list[_Fault]] = {}
        self._holds: list[_Hold] = []
        self._clock = clock
        self._post_limit: tuple[float, int] | None = None
        self._buckets: dict[str, _Bucket] = {}
        self._posts: Counter[str] = Counter()
        self._users: dict[str, dict[str, Any]] = {}
        self._dm_channels: dict[str, str] = {}
        self._messages: dict[tuple[str, str], dict[str, Any]] = {}
        self._views: dict[str, dict[str, Any]] = {}
        self._home_views: dict[str, str] = {}
        self._files: dict[str, dict[str, Any]] = {}
        self._uploads: dict[str, bytes] = {}
        self._ephemerals: dict[str, dict[str, Any]] = {}  # by message_ts
        self._refusals: dict[str, dict[str, Any]] = {}  # invalid Block Kit refused, by id
        self._modals: dict[str, list[str]] = {}  # user → the view ids of their open modals, topmost last
        self._triggers: dict[str, tuple[str, float]] = {}  # trigger_id → (user, when issued)
        self._response_urls: dict[str, ResponseUrl] = {}
        self._version = 0
        self._changed: dict[tuple[str, ...], int] = {}  # what people see → the version of its last change
        self._closing = False
        self._routes: list[Callable[[BaseHTTPRequestHandler], bool]] = []
        self._last_ts = 0  # microseconds
        self._next_id = 1
        self._server: _FakeSlackServer | None = None
        self._thread: threading.Thread | None = None
        self._methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "apps.connections.open": self._apps_connections_open,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "conversations.open": self._conversations_open,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "users.info": self._users_info,
            "views.open": self._views_open,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
        }
        self.limit_posts(post_rate, post_burst)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> FakeSlack:
        self._closing = False
        self._server = _FakeSlackServer(self, self.port)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        with self._state:
            self._closing = True  # ends the page's event streams
            self._state.notify_all()
        self._release_holds()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def origin(self) -> str:
        """`http://127.0.0.1:PORT`, without a trailing slash."""
        if self._server is None:
            raise RuntimeError("FakeSlack is not started")
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def url(self) -> str:
        """The Web API base URL for `WebClient(base_url=...)` / `SLACK_API_URL`."""
        return f"{self.origin}/api/"

    # -- set-up -----------------------------------------------------------------------------------

    def add_user(
        self,
        user_id: str,
        *,
        email: str | None = None,
        name: str | None = None,
        real_name: str | None = None,
        is_bot: bool = False,
        deleted: bool = False,
        tz: str = "UTC",
        title: str | None = None,
    ) -> dict[str, Any]:
        """Register a workspace member that users.info will return (`title`: their job title in the profile)."""
        name = name or user_id.lower()
        real_name = real_name or name
        profile = {"real_name": real_name, "display_name": name, "real_name_normalized": real_name}
        if email is not None:
            profile["email"] = email
        if title is not None:
            profile["title"] = title
        user = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "real_name": real_name,
            "deleted": deleted,
            "is_bot": is_bot,
            "is_admin": False,
            "tz": tz,
            "profile": profile,
        }
        with self._state:
            self._users[user_id] = user
        return user

    def response_url(self, name: str = "default") -> str:
        """A response_url on the fake; its POSTs are recorded as calls("response_url")."""
        return f"{self.origin}/response_url/{quote(name)}"

    def issue_response_url(
        self, user: str, channel: str | None, *, message_ts: str | None = None, ephemeral: bool = False
    ) -> str:
        """A response_url for a request `user` makes in `channel`, as Slack hands one out: what the app posts
        to it appears there (an ephemeral message to the user, a message in the channel, or the clicked
        message `message_ts` replaced or deleted), five times at most."""
        token = secrets.token_hex(12)
        with self._state:
            self._response_urls[token] = ResponseUrl(user, channel, message_ts, ephemeral)
        return self.response_url(token)

    def issue_trigger(self, trigger_id: str, user: str) -> None:
        """`trigger_id` goes to the app with a request of `user`: a modal it opens within three seconds is theirs."""
        with self._state:
            self._triggers[trigger_id] = (user, self._clock())

    def respond(self, response_url: str, params: dict[str, Any]) -> str | None:
        """Show an answer the app gave in its HTTP response to a request (a command's acknowledgement with a
        message) as Slack does: like a post to the request's response_url, without using one up.
        None, or the error that refused it."""
        with self._state:
            return self._respond(response_url.rpartition("/")[2], params, counted=False).error

    def slackbot_says(self, user: str, channel: str, text: str) -> None:
        """An ephemeral note from Slack itself to `user` (a command that failed, an app that did not answer)."""
        with self._state:
            message = {"type": "message", "user": SLACKBOT_USER_ID, "text": text, "blocks": [], "ts": self._next_ts()}
            self._store_ephemeral(channel, user, message)

    def show_modal(self, user: str, view: dict[str, Any], *, replacing: str | None = None) -> str | None:
        """A modal the app returned in answer to a submission (`response_action` update or push): in place of
        `replacing`, or on top. None, or the error that refused the view (invalid Block Kit)."""
        with self._state:
            try:
                _check_view(view)
            except _InvalidBlockKit as refused:
                self._refuse("view_submission", refused.problems, channel=None, user=user)
                return refused.error
            view_id = replacing or self._new_id("V")
            self._store_view(view, view_id)
            stack = self._modals.setdefault(user, [])
            if view_id not in stack:
                stack.append(view_id)
            self._touch("modal", user)
            return None

    def clear_modals(self, user: str) -> None:
        """Close every modal in front of `user` (`response_action` clear)."""
        with self._state:
            if self._modals.pop(user, None):
                self._touch("modal", user)

    def mount(self, route: Callable[[BaseHTTPRequestHandler], bool]) -> None:
        """Serve more on this server: `route(request)` answers the requests it knows (True) and leaves the rest."""
        self._routes.append(route)

    @property
    def routes(self) -> list[Callable[[BaseHTTPRequestHandler], bool]]:
        return list(self._routes)

    def fail(self, method: str, error: str = "internal_error", *, times: int | None = 1) -> None:
        """Answer the next `times` calls (None: all) with HTTP 200 ok=false `error`.

        For "response_url" and "upload" the failure is an HTTP 404 with the error as text, as
        Slack answers an expired response_url.
        """
        self._add_fault(method, _Fault(error=error, status=200, retry_after=None, times=times))

    def rate_limit(self, method: str, retry_after: int = 1, *, times: int | None = 1) -> None:
        """Answer the next `times` calls with HTTP 429, a Retry-After header and error "ratelimited"."""
        self._add_fault(method, _Fault(error="ratelimited", status=429, retry_after=retry_after, times=times))

    def server_error(self, method: str, status: int = 500, *, times: int | None = 1) -> None:
        """Answer the next `times` calls (None: all, until clear_faults) with HTTP `status` and Slack's
        HTML error page, doing nothing: Slack is down (500, 502, 503, 504)."""
        if not 500 <= status <= 599:
            raise ValueError(f"a server error is an HTTP 5xx status, not {status}")
        self._add_fault(method, _Fault(error=f"http_{status}", status=status, retry_after=None, times=times))

    def lose_answer(self, method: str, status: int | None = 500, *, times: int | None = 1) -> None:
        """Carry out the next `times` successful calls (a message is stored), then answer HTTP `status`
        with Slack's error page instead, or with None close the connection without an answer.

        Slack did the work and the client cannot tell: its outcome is unknown. For an answer that comes
        after the client has given up, use delay() (the call is carried out on arrival).
        """
        if status is not None and not 500 <= status <= 599:
            raise ValueError(f"a lost answer is an HTTP 5xx status or None, not {status}")
        error = "connection_closed" if status is None else f"http_{status}"
        fault = _Fault(error=error, status=status or 0, retry_after=None, times=times)
        with self._state:
            self._lost_answers.setdefault(method, []).append(fault)

    def delay(self, method: str, seconds: float | None, *, times: int | None = None) -> None:
        """Hold the answers to the next `times` calls of `method` (None: all) for `seconds` (None: until
        released); `delay(method, 0)` ends the hold and releases the answers it holds.

        The call is carried out and recorded on arrival; only its answer waits, so a hold longer than
        the client's timeout is a call whose outcome the client cannot know. Other calls, of this method
        too once `times` are used, are answered meanwhile. A new delay replaces the previous one.
        """
        with self._state:
            self._release_holds(method)
            if seconds != 0:
                self._holds.append(_Hold(method, seconds, times))

    def hang(self, method: str, *, times: int | None = None) -> None:
        """Hold the answers to `method` until `delay(method, 0)`, clear_faults() or stop()."""
        self.delay(method, None, times=times)

    def limit_posts(self, rate: float | None = 1.0, burst: int = 3) -> None:
        """Let chat.postMessage post `rate` messages a second per channel after a burst of `burst`, as
        Slack does (about one a second, short bursts allowed); None: no limit.

        Beyond it, HTTP 429 `ratelimited` with Retry-After in whole seconds (the time until the next
        message may be posted, rounded up, at least 1), and no message is posted.
        """
        if rate is not None and (rate <= 0 or burst < 1):
            raise ValueError("the posting rate must be positive and the burst at least 1")
        with self._state:
            self._post_limit = None if rate is None else (rate, burst)
            self._buckets.clear()

    def clear_faults(self, method: str | None = None) -> None:
        """End every injected failure and hold of `method` (None: of all methods); Slack is well again.

        The posting limit stays (limit_posts(None) lifts it)."""
        with self._state:
            for table in (self._faults, self._lost_answers):
                for name in [name for name in table if method in (None, name)]:
                    del table[name]
            self._release_holds(method)

    def reset(self) -> None:
        """Forget calls, uploads, messages, views and injected faults; keep the registered users."""
        with self._state:
            self._calls.clear()
            self.clear_faults()
            self._buckets.clear()
            self._posts.clear()
            for table in (self._messages, self._views, self._home_views, self._files, self._uploads,
                          self._ephemerals, self._refusals, self._modals, self._triggers, self._response_urls):
                table.clear()
            self._touch("reset")

    # -- what happened ----------------------------------------------------------------------------

    def recorded(self, method: str | None = None) -> list[Call]:
        """Every call in arrival order, or only those of one method."""
        with self._state:
            return [call for call in self._calls if method is None or call.method == method]

    def calls(self, method: str) -> list[dict[str, Any]]:
        """The params of every call of `method`, in arrival order."""
        return [call.params for call in self.recorded(method)]

    def last(self, method: str) -> dict[str, Any]:
        """The params of the latest call of `method`."""
        calls = self.calls(method)
        assert calls, f"no {method} call; recorded: {self.methods_called()}"
        return calls[-1]

    def methods_called(self) -> list[str]:
        return [call.method for call in self.recorded()]

    def wait_for(self, method: str, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until `count` calls of `method` arrived; return the params of all of them."""
        with self._state:
            arrived = self._state.wait_for(lambda: len(self.calls(method)) >= count, timeout=timeout)
        if not arrived:
            raise AssertionError(
                f"expected {count} {method} call(s) within {timeout}s, got {len(self.calls(method))}; "
                f"recorded: {self.methods_called()}"
            )
        return self.calls(method)

    def response_url_posts(self, name: str = "default") -> list[dict[str, Any]]:
        """The JSON bodies posted to `response_url(name)`."""
        path = f"/response_url/{quote(name)}"
        return [call.params for call in self.recorded("response_url") if call.path == path]

    @property
    def uploads(self) -> dict[str, bytes]:
        """Uploaded file contents by file id."""
        with self._state:
            return dict(self._uploads)

    def messages(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Messages as they stand now (after chat.update), in posting order, each with its channel.

        Thread replies are included (they carry `thread_ts`); `metadata` is there when one was posted.
        """
        with self._state:
            return [dict(m) for (ch, _), m in self._messages.items() if channel is None or ch == channel]

    def top_level(self, channel: str) -> list[dict[str, Any]]:
        """The channel's messages that are not thread replies, in posting order."""
        return [message for message in self.messages(channel) if "thread_ts" not in message]

    def thread_replies(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """The replies in the thread of the message `ts`, oldest first (without the message itself)."""
        with self._state:
            return [dict(m) for m in self._replies(channel, ts)]

    def post_counts(self) -> Counter[str]:
        """How many messages chat.postMessage created in each channel (thread replies included)."""
        with self._state:
            return Counter(self._posts)

    def _copy(self, table: dict, key: Any) -> dict[str, Any] | None:
        """A copy of `table[key]`, or None."""
        with self._state:
            found = table.get(key)
            return dict(found) if found else None

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        return self._copy(self._messages, (channel, ts))

    def view(self, view_id: str) -> dict[str, Any] | None:
        """A view as the last views.open / views.update / views.publish left it."""
        return self._copy(self._views, view_id)

    def home_view(self, user_id: str) -> dict[str, Any] | None:
        """The App Home view last published for `user_id`."""
        with self._state:
            view_id = self._home_views.get(user_id)
        return self.view(view_id) if view_id else None

    def dm_channel(self, user_id: str) -> str:
        """The id of the bot's direct-message channel with `user_id` (stable per user)."""
        with self._state:
            if user_id not in self._dm_channels:
                self._dm_channels[user_id] = self._new_id("D")
            return self._dm_channels[user_id]

    def users(self) -> list[dict[str, Any]]:
        """The registered workspace members, in the order they were added."""
        with self._state:
            return [dict(user) for user in self._users.values()]

    def ephemerals(self, user: str, channel: str | None = None) -> list[dict[str, Any]]:
        """The ephemeral messages shown to `user` (in `channel`), oldest first; each has its `channel`."""
        with self._state:
            return [dict(m) for m in self._ephemerals.values()
                    if m["to"] == user and channel in (None, m["channel"])]

    def ephemeral(self, ts: str) -> dict[str, Any] | None:
        return self._copy(self._ephemerals, ts)

    def modal(self, user: str) -> dict[str, Any] | None:
        """The modal open in front of `user` (the topmost one), as the app last opened or updated it."""
        with self._state:
            stack = self._modals.get(user) or []
            return dict(self._views[stack[-1]]) if stack else None

    def close_modal(self, user: str, view_id: str) -> None:
        """The person closed (or submitted) the modal `view_id`."""
        with self._state:
            stack = self._modals.get(user) or []
            if view_id in stack:
                stack.remove(view_id)
                self._touch("modal", user)

    def refusals(self) -> list[dict[str, Any]]:
        """Calls refused for invalid Block Kit: method, where it was going (channel, user), and the problems."""
        with self._state:
            return [dict(refusal) for refusal in self._refusals.values()]

    def refusal(self, refusal_id: str) -> dict[str, Any] | None:
        return self._copy(self._refusals, refusal_id)

    def file(self, file_id: str) -> tuple[dict[str, Any], bytes] | None:
        """An uploaded file's details (name, title, mimetype) and its content."""
        with self._state:
            if file_id not in self._uploads:
                return None
            return dict(self._files[file_id]), self._uploads[file_id]

    def post_as(self, user: str, channel: str, text: str, thread_ts: str | None = None) -> dict[str, Any]:
        """A message a person writes in `channel` (or in the thread `thread_ts`)."""
        with self._state:
            ts = self._next_ts()
            message = {"type": "message", "user": user, "team": self.team_id, "text": text, "ts": ts}
            if thread_ts:
                message["thread_ts"] = thread_ts
            self._store_message(channel, message)
            self._state.notify_all()
            return dict(message)

    # -- what changed, for the sandbox page -------------------------------------------------------

    def changed_since(self, version: int) -> tuple[int, list[tuple[str, ...]]]:
        """The current version, and what changed after `version`: ("message", channel, ts),
        ("ephemeral", ts), ("home", user), ("modal", user), ("refusal", id), or ("reset",)."""
        with self._state:
            return self._version, [key for key, changed in self._changed.items() if changed > version]

    def wait_for_change(self, version: int, timeout: float) -> int:
        """Wait up to `timeout` seconds for a change after `version`; the current version (unchanged on time-out
        or when the fake stops)."""
        with self._state:
            self._state.wait_for(lambda: self._version > version or self._closing, timeout=timeout)
            return self._version

    @property
    def version(self) -> int:
        """Grows with every change people can see."""
        with self._state:
            return self._version

    @property
    def closing(self) -> bool:
        return self._closing

    # -- keeping the workspace between runs ---------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """What people see, as JSON-ready data: messages, ephemeral messages, views, files, refusals."""
        with self._state:
            return {
                "messages": list(self._messages.values()),
                "ephemerals": list(self._ephemerals.values()),
                "views": self._views,
                "home_views": self._home_views,
                "dm_channels": self._dm_channels,
                "files": self._files,
                "uploads": {file_id: b64encode(data).decode() for file_id, data in self._uploads.items()},
                "refusals": list(self._refusals.values()),
                "last_ts": self._last_ts,
                "next_id": self._next_id,
            }

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Take back what `snapshot()` gave (from an earlier run), over an empty workspace."""
        with self._state:
            for message in snapshot.get("messages", []):
                self._messages[(message["channel"], message["ts"])] = message
            self._ephemerals.update({m["ts"]: m for m in snapshot.get("ephemerals", [])})
            self._views.update(snapshot.get("views", {}))
            self._home_views.update(snapshot.get("home_views", {}))
            self._dm_channels.update(snapshot.get("dm_channels", {}))
            self._files.update(snapshot.get("files", {}))
            self._uploads.update({k: b64decode(v) for k, v in snapshot.get("uploads", {}).items()})
            self._refusals.update({r["id"]: r for r in snapshot.get("refusals", [])})
            self._last_ts = max(self._last_ts, int(snapshot.get("last_ts", 0)))
            self._next_id = max(self._next_id, int(snapshot.get("next_id", 1)))
            self._touch("reset")

    # -- request handling (called from the server's threads) -------------------------------------

    def _handle(self, path: str, query: str, headers: dict[str, str], body: bytes) -> _Reply:
        """Route one HTTP request; record it; hold the answer while a delay says so."""
        kind, _, name = path.lstrip("/").partition("/")
        content_type = headers.get("content-type", FORM)
        authorization = headers.get("authorization")
        with self._state:
            if kind == "api":
                method, params = name, _parse_or_none(content_type, body, query)
                reply = self._api_reply(method, params, authorization)
                params = params if params is not None else {"_unreadable_body": body}
            elif kind == "upload":
                method, params = "upload", {"file_id": name, "size": len(body)}
                reply = self._upload_reply(name, body)
            elif kind == "response_url":
                method, parsed = "response_url", _parse_or_none(content_type, body, "")
                params = parsed or {}
                reply = self._fault_reply(method) or self._respond(name, parsed)
            elif kind == "files" and not body:
                return self._file_reply(name)
            else:
                return _Reply.text(404, "Not Found")
            self._calls.append(
                Call(method, params, authorization, time.time(), path, reply.status, reply.error)
            )
            self._state.notify_all()
            hold = self._take_hold(method)
            if hold is not None:
                # Waiting releases the lock: other calls are answered meanwhile.
                self._state.wait_for(lambda: hold.released, timeout=hold.seconds)
        return reply

    def _api_reply(self, method: str, params: dict[str, Any] | None, authorization: str | None) -> _Reply:
        fault_reply = self._fault_reply(method)
        if fault_reply:
            return fault_reply
        if params is None:
            return _Reply.json(200, {"ok": False, "error": "invalid_form_data"})
        handler = self._methods.get(method)
        if handler is None:
            return _Reply.json(404, {"ok": False, "error": "unknown_method", "req_method": method})
        headers = {"X-OAuth-Scopes": self.scopes}
        try:
            self._check_token(method, _bearer_token(authorization) or params.get("token"))
            self._check_scope(method, params)
            data = {"ok": True, **handler(params)}
        except _ApiError as exc:
            if isinstance(exc, _InvalidBlockKit):
                self._refuse(method, exc.problems, **self._audience(method, params))
            return _Reply.json(exc.status, {"ok": False, "error": exc.error, **exc.fields}, {**headers, **exc.headers})
        lost = self._next_fault(self._lost_answers, method)
        if lost is not None:
            return _Reply.no_answer() if lost.status == 0 else _Reply.server_error(lost.status)
        return _Reply.json(200, data, headers)

    def _audience(self, method: str, params: dict[str, Any]) -> dict[str, str | None]:
        """Where a call was going: the conversation (channel) and the person it was for (user)."""
        if method.startswith("chat."):
            channel = params.get("channel")
            return {"channel": self._channel_for(channel) if channel else None, "user": params.get("user")}
        if method == "views.publish":
            return {"channel": None, "user": params.get("user_id")}
        if method == "views.open":
            user, _ = self._triggers.get(params.get("trigger_id") or "", (None, 0.0))
            return {"channel": None, "user": user}
        return {"channel": None, "user": self._modal_owner(params.get("view_id"))}

    def _refuse(self, method: str, problems: list[str], *, channel: str | None, user: str | None) -> None:
        """Keep (and log) a call refused for invalid Block Kit, so that the sandbox page shows it where it was going."""
        refusal_id = self._new_id("R")
        self._refusals[refusal_id] = {
            "id": refusal_id, "method": method, "channel": channel, "user": user, "problems": problems,
            "ts": self._next_ts(),
        }
        self._touch("refusal", refusal_id)
        log.warning("Slack refused %s: invalid Block Kit: %s", method, "; ".join(problems))

    def _respond(self, name: str, params: dict[str, Any] | None, *, counted: bool = True) -> _Reply:
        """A post to a response_url: shown where its request came from when the fake handed it out
        (issue_response_url); only recorded otherwise. `counted`: it uses up one of the URL's five answers."""
        url = self._response_urls.get(name)
        if url is None:
            return _Reply.json(200, {"ok": True})
        if counted and url.uses >= RESPONSE_URL_USES:
            return _Reply.text(404, "used_url", error="used_url")
        url.uses += counted
        if params is None:
            return _Reply.text(400, "invalid_payload", error="invalid_payload")
        problems = blocks_problems(params.get("blocks") or [])
        if problems:
            self._refuse("response_url", problems, channel=url.channel, user=url.user)
            return _Reply.text(400, "invalid_blocks", error="invalid_blocks")
        if _flag(params.get("delete_original")) and url.message_ts:
            self._delete(url)
            return _Reply.json(200, {"ok": True})
        if not (params.get("text") or params.get("blocks")):
            return _Reply.text(400, "no_text", error="no_text")
        bot = self._bot_message(params, url.message_ts or self._next_ts())
        if _flag(params.get("replace_original")) and url.message_ts:
            self._replace(url, bot)
        elif params.get("response_type") == "in_channel" and url.channel:
            self._store_message(url.channel, {**bot, "ts": self._next_ts()})
        elif url.channel:
            self._store_ephemeral(url.channel, url.user, {**bot, "ts": self._next_ts()})
        return _Reply.json(200, {"ok": True})

    def _delete(self, url: ResponseUrl) -> None:
        if url.ephemeral:
            self._ephemerals.pop(url.message_ts, None)
            self._touch("ephemeral", url.message_ts)
        elif self._messages.pop((url.channel, url.message_ts), None) is not None:
            self._touch("message", url.channel, url.message_ts)

    def _replace(self, url: ResponseUrl, message: dict[str, Any]) -> None:
        if url.ephemeral:
            self._store_ephemeral(url.channel, url.user, message)
            return
        previous = self._messages.get((url.channel, url.message_ts), {})
        if "thread_ts" in previous:
            message["thread_ts"] = previous["thread_ts"]
        self._store_message(url.channel, message)

    def _store_ephemeral(self, channel: str, user: str, message: dict[str, Any]) -> None:
        self._ephemerals[message["ts"]] = {**message, "channel": channel, "to": user}
        self._touch("ephemeral", message["ts"])

    def _modal_owner(self, view_id: str | None) -> str | None:
        return next((user for user, stack in self._modals.items() if view_id in stack), None)

    def _file_reply(self, name: str) -> _Reply:
        """A file's content, as its url_private serves it (the sandbox asks for no token)."""
        file_id = name.partition("/")[0]
        found = self._files.get(file_id)
        if found is None or file_id not in self._uploads:
            return _Reply.text(404, "file_not_found", error="file_not_found")
        filename = found["name"].replace('"', "")
        mimetype = found.get("mimetype", "application/octet-stream")
        headers = {"Content-Type": mimetype, "Content-Disposition": f'inline; filename="{filename}"'}
        return _Reply(200, self._uploads[file_id], headers)

    def _check_token(self, method: str, token: str | None) -> None:
        """The bot token for Web API methods, the app-level token (xapp-...) for Socket Mode's."""
        app_level = method in APP_LEVEL_METHODS
        if not token:
            raise _ApiError("not_authed")
        if token.startswith("xapp-") != app_level:
            raise _ApiError("not_allowed_token_type")
        if token != (self.app_token if app_level else self.token):
            raise _ApiError("invalid_auth")

    def _check_scope(self, method: str, params: dict[str, Any]) -> None:
        if method in HISTORY_METHODS:
            needed = HISTORY_SCOPE_BY_PREFIX.get(str(params.get("channel", ""))[:1])
        else:
            needed = SCOPE_BY_METHOD.get(method)
        if needed and needed not in self.scopes.split(","):
            raise _ApiError("missing_scope", needed=needed, provided=self.scopes)

    def _upload_reply(self, file_id: str, body: bytes) -> _Reply:
        fault_reply = self._fault_reply("upload")
        if fault_reply:
            return fault_reply
        if file_id not in self._files:
            return _Reply.text(404, "file_not_found", error="file_not_found")
        self._uploads[file_id] = body
        return _Reply.text(200, f"OK - {len(body)}")

    def _add_fault(self, method: str, fault: _Fault) -> None:
        with self._state:
            self._faults.setdefault(method, []).append(fault)

    @staticmethod
    def _next_fault(table: dict[str, list[_Fault]], method: str) -> _Fault | None:
        """Use up the next pending fault for `method` in `table`, if there is one."""
        faults = table.get(method)
        if not faults:
            return None
        fault = faults[0]
        if fault.take():
            faults.pop(0)
        return fault

    def _fault_reply(self, method: str) -> _Reply | None:
        """The reply of the next injected fault for `method`, if one is pending."""
        fault = self._next_fault(self._faults, method)
        if fault is None:
            return None
        if fault.status == 429:
            headers = {"Retry-After": str(fault.retry_after)}
            return _Reply.json(429, {"ok": False, "error": fault.error}, headers)
        if fault.status >= 500:
            return _Reply.server_error(fault.status)
        if method in ("upload", "response_url"):
            return _Reply.text(404, fault.error, error=fault.error)
        return _Reply.json(200, {"ok": False, "error": fault.error})

    def _take_hold(self, method: str) -> _Hold | None:
        """The hold the answer to this call of `method` waits on, if any; uses up one of its times."""
        for hold in self._holds:
            if hold.method == method and hold.times != 0:
                if hold.times is not None:
                    hold.times -= 1
                return hold
        return None

    def _release_holds(self, method: str | None = None) -> None:
        """End the holds of `method` (None: all) and send the answers they hold."""
        with self._state:
            for hold in self._holds:
                if method in (None, hold.method):
                    hold.released = True
            self._holds = [hold for hold in self._holds if not hold.released]
            self._state.notify_all()

    def _take_post_token(self, channel: str) -> None:
        """Slack's posting limit: a token bucket per channel; raises the 429 when it is empty."""
        if self._post_limit is None:
            return
        rate, burst = self._post_limit
        now = self._clock()
        bucket = self._buckets.setdefault(channel, _Bucket(tokens=float(burst), at=now))
        bucket.tokens, bucket.at = min(float(burst), bucket.tokens + (now - bucket.at) * rate), now
        if bucket.tokens >= 1 - 1e-9:
            bucket.tokens = max(bucket.tokens - 1, 0.0)
            return
        retry_after = max(1, math.ceil((1 - bucket.tokens) / rate))
        raise _ApiError("ratelimited", status=429, headers={"Retry-After": str(retry_after)})

    def _next_ts(self) -> str:
        """A message ts as Slack makes it: the time of posting in microseconds, each one later than the last."""
        self._last_ts = max(time.time_ns() // 1_000, self._last_ts + 1)
        return f"{self._last_ts // 1_000_000}.{self._last_ts % 1_000_000:06d}"

    def _new_id(self, prefix: str) -> str:
        with self._state:
            number, self._next_id = self._next_id, self._next_id + 1
        return f"{prefix}{number:08d}"

    def _touch(self, *key: str) -> None:
        """Note a change people can see (the caller holds the lock)."""
        self._version += 1
        self._changed[key] = self._version
        self._state.notify_all()

    def _store_message(self, channel: str, message: dict[str, Any]) -> None:
        self._messages[(channel, message["ts"])] = {**message, "channel": channel}
        self._touch("message", channel, message["ts"])

    def _channel_for(self, channel: str) -> str:
        """Slack posts a message addressed to a user id into the bot's DM with that user."""
        return self.dm_channel(channel) if channel[:1] in ("U", "W") else channel

    # -- Web API methods: each returns the answer's fields besides ok, or raises _ApiError ---------

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": f"https://{self.team_domain}.slack.com/",
            "team": "BillProcess sandbox",
            "user": "billprocess",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _apps_connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        """A Socket Mode URL; nothing listens there (Socket Mode tests stop before connecting)."""
        ws_origin = "ws" + self.origin.removeprefix("http")
        return {"url": f"{ws_origin}/link/?ticket={secrets.token_hex(8)}&app_id={self.app_id}"}

    def _bot_message(self, params: dict[str, Any], ts: str) -> dict[str, Any]:
        message = {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "team": self.team_id,
            "text": params.get("text") or "",
            "blocks": params.get("blocks") or [],
            "ts": ts,
        }
        if params.get("thread_ts"):
            message["thread_ts"] = params["thread_ts"]
        if params.get("metadata") is not None:
            message["metadata"] = params["metadata"]
        return message

    def _chat_post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        _check_message(params)
        channel = self._channel_for(params["channel"])
        self._take_post_token(channel)
        ts = self._next_ts()
        message = self._bot_message(params, ts)
        self._store_message(channel, message)
        self._posts[channel] += 1
        return {"channel": channel, "ts": ts, "message": message}

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        _check_message(params)
        _require(params, "ts", error="message_not_found")
        channel, ts = params["channel"], params["ts"]
        previous = {k: v for k, v in self._messages.get((channel, ts), {}).items() if k != "channel"}
        message = {**previous, **self._bot_message(params, ts)}
        if "thread_ts" in previous:
            message["thread_ts"] = previous["thread_ts"]
        self._store_message(channel, message)
        return {"channel": channel, "ts": ts, "text": message["text"], "message": message}

    def _chat_post_ephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        _check_message(params)
        _require(params, "user", error="user_not_in_channel")
        ts = self._next_ts()
        self._store_ephemeral(self._channel_for(params["channel"]), params["user"], self._bot_message(params, ts))
        return {"message_ts": ts}

    def _chat_get_permalink(self, params: dict[str, Any]) -> dict[str, Any]:
        _require(params, "channel", "message_ts")
        channel, ts = params["channel"], params["message_ts"]
        permalink = f"https://{self.team_domain}.slack.com/archives/{channel}/p{ts.replace('.', '')}"
        return {"channel": channel, "permalink": permalink}

    def _conversations_open(self, params: dict[str, Any]) -> dict[str, Any]:
        users = params.get("users") or ""
        user_ids = users if isinstance(users, list) else [u for u in users.split(",") if u]
        if params.get("channel"):
            channel = params["channel"]
        elif len(user_ids) == 1:
            channel = self.dm_channel(user_ids[0])
        else:
            raise _ApiError("users_list_not_supplied" if not user_ids else "not_supported")
        return {"no_op": True, "already_open": True, "channel": {"id": channel}}

    def _replies(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """The stored replies to the message `ts` in `channel`, oldest first."""
        found = [
            m for (ch, _), m in self._messages.items() if ch == channel and m.get("thread_ts") == ts and m["ts"] != ts
        ]
        return sorted(found, key=lambda m: Decimal(m["ts"]))

    def _listed(self, message: dict[str, Any], with_metadata: bool) -> dict[str, Any]:
        """A stored message as the history methods show it: a parent with its thread's summary, and
        the metadata only when include_all_metadata asked for it."""
        listed = {k: v for k, v in message.items() if k != "channel" and (with_metadata or k != "metadata")}
        if "thread_ts" not in message:
            replies = self._replies(message["channel"], message["ts"])
            if replies:
                listed.update(
                    thread_ts=message["ts"],
                    reply_count=len(replies),
                    reply_users=sorted({r["user"] for r in replies}),
                    latest_reply=replies[-1]["ts"],
                )
        return listed

    def _conversation(self, params: dict[str, Any]) -> str:
        """The conversation a history call reads; a user id is not one (Slack wants the DM's id)."""
        _require(params, "channel", error="channel_not_found")
        if params["channel"][:1] in ("U", "W"):
            raise _ApiError("channel_not_found")
        return params["channel"]

    def _conversations_history(self, params: dict[str, Any]) -> dict[str, Any]:
        channel, between = self._conversation(params), _between(params)
        top_level = [
            m for (ch, _), m in self._messages.items()
            if ch == channel and m.get("thread_ts", m["ts"]) == m["ts"] and between(m)
        ]
        top_level.sort(key=lambda m: Decimal(m["ts"]), reverse=True)
        page, cursor = _page(top_level, params, newest_first=True)
        with_metadata = _flag(params.get("include_all_metadata"))
        return {
            "messages": [self._listed(m, with_metadata) for m in page],
            "has_more": bool(cursor),
            "pin_count": 0,
            "response_metadata": {"next_cursor": cursor},
        }

    def _conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        """The parent (first, on the first page) and its replies between oldest and latest, oldest first.

        A parent the fake has not seen is trusted when replies to it were posted here."""
        channel, between = self._conversation(params), _between(params)
        _require(params, "ts", error="thread_not_found")
        message = self._messages.get((channel, params["ts"]))
        parent_ts = message.get("thread_ts", message["ts"]) if message else params["ts"]
        parent, replies = self._messages.get((channel, parent_ts)), self._replies(channel, parent_ts)
        if parent is None and not replies:
            raise _ApiError("thread_not_found")
        thread = [m for m in replies if between(m)]
        if parent is not None and not params.get("cursor"):
            thread.insert(0, parent)
        page, cursor = _page(thread, params, newest_first=False)
        with_metadata = _flag(params.get("include_all_metadata"))
        return {
            "messages": [self._listed(m, with_metadata) for m in page],
            "has_more": bool(cursor),
            "response_metadata": {"next_cursor": cursor},
        }

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user = self._users.get(params.get("user", ""))
        if user is None:
            raise _ApiError("user_not_found")
        return {"user": user}

    def _store_view(self, view: dict[str, Any], view_id: str) -> dict[str, Any]:
        stored = {
            "private_metadata": "",
            "callback_id": "",
            "external_id": "",
            "state": {"values": {}},
            "clear_on_close": False,
            "notify_on_close": False,
            "previous_view_id": None,
            **view,
            "id": view_id,
            "team_id": self.team_id,
            "app_id": self.app_id,
            "app_installed_team_id": self.team_id,
            "bot_id": self.bot_id,
            "root_view_id": view_id,
            "hash": secrets.token_hex(8),
        }
        self._views[view_id] = stored
        return stored

    def _views_open(self, params: dict[str, Any]) -> dict[str, Any]:
        """A modal; in front of the person whose request carried the trigger_id, when the fake issued it."""
        _require(params, "trigger_id", "view")
        issued = self._triggers.get(params["trigger_id"])
        if issued is not None and self._clock() - issued[1] > TRIGGER_SECONDS:
            raise _ApiError("expired_trigger_id")
        _check_view(params["view"])
        view = self._store_view(params["view"], self._new_id("V"))
        if issued is not None:
            self._modals.setdefault(issued[0], []).append(view["id"])
            self._touch("modal", issued[0])
        return {"view": view}

    def _views_update(self, params: dict[str, Any]) -> dict[str, Any]:
        _require(params, "view")
        _check_view(params["view"])
        view_id = params.get("view_id") or self._view_id_for_external(params.get("external_id"))
        view = self._store_view(params["view"], view_id)
        owner = self._modal_owner(view_id)
        if owner is not None:
            self._touch("modal", owner)
        return {"view": view}

    def _view_id_for_external(self, external_id: str | None) -> str:
        for view_id, view in self._views.items():
            if external_id and view.get("external_id") == external_id:
                return view_id
        raise _ApiError("not_found")

    def _views_publish(self, params: dict[str, Any]) -> dict[str, Any]:
        _require(params, "user_id", "view")
        _check_view(params["view"])
        if params["view"]["type"] != "home":
            raise _ApiError("invalid_arguments")
        user_id = params["user_id"]
        view_id = self._home_views.get(user_id) or self._home_views.setdefault(user_id, self._new_id("V"))
        view = self._store_view(params["view"], view_id)
        self._touch("home", user_id)
        return {"view": view}

    def _files_get_upload_url(self, params: dict[str, Any]) -> dict[str, Any]:
        _require(params, "filename", "length")
        file_id = self._new_id("F")
        self._files[file_id] = {"name": params["filename"], "length": int(params["length"])}
        return {"upload_url": f"{self.origin}/upload/{file_id}", "file_id": file_id}

    def _files_complete_upload(self, params: dict[str, Any]) -> dict[str, Any]:
        """The uploaded files, shared in `channel_id` (a message from the bot with `initial_comment`) when given."""
        _require(params, "files")
        completed = []
        for item in params["files"]:
            if item.get("id") not in self._uploads:
                raise _ApiError("file_not_found")
            file_id, name = item["id"], self._files[item["id"]]["name"]
            mimetype = mimetypes.guess_type(name)[0] or "application/octet-stream"
            details = {
                "id": file_id,
                "name": name,
                "title": item.get("title") or name,
                "mimetype": mimetype,
                "filetype": name.rpartition(".")[2].lower() if "." in name else "binary",
                "size": len(self._uploads[file_id]),
                "url_private": f"{self.origin}/files/{file_id}/{quote(name)}",
                "permalink": f"https://{self.team_domain}.slack.com/files/{file_id}/{name}",
            }
            self._files[file_id].update(details)
            completed.append(details)
        channel = params.get("channel_id")
        if channel:
            message = {**self._bot_message({"text": params.get("initial_comment") or "",
                                            "thread_ts": params.get("thread_ts")}, self._next_ts()),
                       "files": completed, "upload": True}
            self._store_message(self._channel_for(channel), message)
        return {"files": completed}


class _FakeSlackServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeSlack, port: int):
        super().__init__(("127.0.0.1", port), _FakeSlackRequestHandler)
        self.fake = fake


class _FakeSlackRequestHandler(BaseHTTPRequestHandler):
    server: _FakeSlackServer

    def do_POST(self) -> None:
        self._answer()

    def do_GET(self) -> None:
        self._answer()

    def _answer(self) -> None:
        for route in self.server.fake.routes:
            if route(self):
                return
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = self.server.fake._handle(url.path, url.query, headers, body)
        if reply.status == 0:
            self.close_connection = True
            return
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up waiting (a held answer)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the fake's record is the log."""
