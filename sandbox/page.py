"""The sandbox page: a local Slack in the browser, served by the fake Slack's own server.

The page (sandbox/static/) reads what a person sees through JSON endpoints under /sandbox/ and learns
of every change through a server-sent event stream (/sandbox/events). What the person does there — a
`/bill` command, a click, a modal submitted or closed, the App Home opened — reaches the app exactly as
Slack sends it: a signed request to its `/slack/events` (sandbox/app_requests.py), carrying a
response_url and a trigger_id that this workspace honours. The app answers through the Web API methods
it calls on the same server (sandbox/slack.py), so it cannot tell the sandbox from Slack.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import dataclass
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sandbox.app_requests import (
    SlackSender,
    app_home_opened_event,
    block_actions_body,
    element_action,
    event_body,
    new_trigger_id,
    slash_command_body,
    view_closed_body,
    view_submission_body,
)
from sandbox.slack import CHANNEL_ID, CHANNEL_NAME, SIGNING_SECRET, FakeSlack

log = logging.getLogger(__name__)

# Slack waits this long for the app to acknowledge a request, then tells the person it failed.
ACK_SECONDS = 3.0
# A page loads a conversation this many messages at a time, newest first.
PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
# The event stream says "nothing new" this often, so that a dead connection is noticed.
KEEPALIVE_SECONDS = 15.0
# Changes that come together reach the page as one event.
BATCH_SECONDS = 0.05
MAX_BODY_BYTES = 64 * 1024
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/sandbox.js": ("sandbox.js", "text/javascript; charset=utf-8"),
    "/static/sandbox.css": ("sandbox.css", "text/css; charset=utf-8"),
}
# Which Slack commands reach the app: the manifest's one command.
COMMANDS = ("/bill",)


class PageError(Exception):
    """A request from the page that cannot be carried out; answered 400 with this text."""


@dataclass(frozen=True)
class Channel:
    id: str
    name: str


class SandboxPage:
    """The sandbox's own routes on the fake Slack's server: the page, what it reads, what a person does."""

    def __init__(self, fake: FakeSlack, *, channels: tuple[Channel, ...] = (Channel(CHANNEL_ID, CHANNEL_NAME),),
                 app_name: str = "BillProcess", team_name: str = "BillProcess sandbox",
                 signing_secret: str = SIGNING_SECRET):
        self.fake = fake
        self.channels = channels
        self.app_name = app_name
        self.team_name = team_name
        self.signing_secret = signing_secret
        self._sender: SlackSender | None = None
        # Which run of the sandbox this is: a page left open across a restart reloads itself.
        self.instance = secrets.token_hex(6)
        self._reads = {
            "/sandbox/workspace": self.workspace,
            "/sandbox/conversation": self.conversation,
            "/sandbox/thread": self.thread,
            "/sandbox/changes": self.changes,
        }
        self._actions = {
            "/sandbox/command": self.command,
            "/sandbox/message": self.message,
            "/sandbox/action": self.action,
            "/sandbox/submit": self.submit,
            "/sandbox/close": self.close,
            "/sandbox/home": self.open_home,
        }
        fake.mount(self.route)

    def connect(self, app_url: str) -> None:
        """Send what people do to the app at `app_url` (its `/slack/events` is Slack's Request URL)."""
        self._sender = SlackSender(app_url, self.signing_secret)

    # --- HTTP ------------------------------------------------------------------------------------

    def route(self, request: BaseHTTPRequestHandler) -> bool:
        """Answer the page's requests; leave everything else (the Web API) to the fake."""
        url = urlsplit(request.path)
        if request.command == "GET" and url.path in STATIC_FILES:
            name, content_type = STATIC_FILES[url.path]
            _send(request, 200, resources.files("sandbox").joinpath("static", name).read_bytes(), content_type)
            return True
        if request.command == "GET" and url.path == "/sandbox/events":
            self._stream(request, dict(parse_qsl(url.query)))
            return True
        if request.command == "GET" and url.path in self._reads:
            self._answer(request, self._reads[url.path], dict(parse_qsl(url.query)))
            return True
        if request.command == "POST" and url.path in self._actions:
            try:
                fields = _json_body(request)
            except PageError as error:
                _send_json(request, 400, {"ok": False, "error": str(error)})
                return True
            self._answer(request, self._actions[url.path], fields)
            return True
        return False

    def _answer(self, request: BaseHTTPRequestHandler, handler, fields: dict[str, Any]) -> None:
        try:
            data = handler(fields)
        except PageError as error:
            _send_json(request, 400, {"ok": False, "error": str(error)})
            return
        _send_json(request, 200, {"ok": True, **data})

    def _stream(self, request: BaseHTTPRequestHandler, query: dict[str, str]) -> None:
        """Server-sent events: the workspace's version each time it changes."""
        version = _number(query, "since", default=self.fake.version)
        request.send_response(200)
        request.send_header("Content-Type", "text/event-stream")
        request.send_header("Cache-Control", "no-cache")
        request.end_headers()
        try:
            request.wfile.write(f"retry: 1000\nevent: hello\ndata: {self.instance}\n\n".encode())
            request.wfile.write(f"data: {self.fake.version}\n\n".encode())
            request.wfile.flush()
            while not self.fake.closing:
                current = self.fake.wait_for_change(version, KEEPALIVE_SECONDS)
                if self.fake.closing:
                    break
                if current == version:
                    request.wfile.write(b": still here\n\n")
                else:
                    time.sleep(BATCH_SECONDS)  # let the changes that come together go as one event
                    version = self.fake.version
                    request.wfile.write(f"data: {version}\n\n".encode())
                request.wfile.flush()
        except OSError:  # the page went away
            pass
        request.close_connection = True

    # --- what the page reads ------------------------------------------------------------------------

    def workspace(self, query: dict[str, str]) -> dict[str, Any]:
        """The team, the app, the channels and the people (each with their role, as their profile's title)."""
        people = [
            {"id": user["id"], "name": user["name"], "real_name": user["real_name"],
             "title": user["profile"].get("title", "")}
            for user in self.fake.users() if not user["is_bot"] and not user["deleted"]
        ]
        return {
            "team": {"id": self.fake.team_id, "name": self.team_name},
            "app": {"name": self.app_name, "bot_user_id": self.fake.bot_user_id},
            "channels": [{"id": channel.id, "name": channel.name} for channel in self.channels],
            "people": people,
            "ready": self._sender is not None,  # connected to the app, with everyone in the workspace
            "instance": self.instance,
            "version": self.fake.version,
        }

    def conversation(self, query: dict[str, str]) -> dict[str, Any]:
        """A channel (or `dm`, the person's direct messages with the app) as the person sees it: its latest
        messages before `before`, with the ephemeral ones shown to them and any refused Block Kit."""
        user = self._person(query)
        channel = self._channel(query, user)
        limit = min(max(_number(query, "limit", default=PAGE_SIZE), 1), MAX_PAGE_SIZE)
        before = _ts(query.get("before"))
        shown = [item for item in self._timeline(channel, user) if before is None or Decimal(item["ts"]) < before]
        page = shown[-limit:]
        return {"channel": channel, "messages": page, "has_more": len(shown) > len(page),
                "version": self.fake.version}

    def thread(self, query: dict[str, str]) -> dict[str, Any]:
        """A message and its thread, oldest first."""
        user = self._person(query)
        channel = self._channel(query, user)
        ts = query.get("ts") or ""
        parent = self.fake.message(channel, ts)
        if parent is None:
            raise PageError("that message is not in this conversation")
        replies = self.fake.thread_replies(channel, ts)
        return {"channel": channel, "messages": [_shown(parent, replies), *(_shown(reply) for reply in replies)]}

    def changes(self, query: dict[str, str]) -> dict[str, Any]:
        """What changed for this person after version `since`: messages (with their thread's parent), ephemeral
        messages, refusals, their App Home and their modal. `reset`: reload everything."""
        user = self._person(query)
        version, keys = self.fake.changed_since(_number(query, "since", default=0))
        visible = {channel.id for channel in self.channels} | {self.fake.dm_channel(user)}
        changed: dict[str, Any] = {"version": version, "reset": ("reset",) in keys, "messages": [],
                                   "removed": [], "home": None, "modal": None, "modal_changed": False}
        parents: set[tuple[str, str]] = set()
        for key in keys:
            kind, *rest = key
            if kind == "message" and rest[0] in visible:
                message = self.fake.message(*rest)
                if message is None:
                    changed["removed"].append({"channel": rest[0], "ts": rest[1]})
                    continue
                parent_ts = message.get("thread_ts")
                if parent_ts and parent_ts != message["ts"]:
                    parents.add((rest[0], parent_ts))
                changed["messages"].append(_shown(message))
            elif kind == "ephemeral":
                message = self.fake.ephemeral(rest[0])
                if message is None:
                    changed["removed"].append({"ephemeral": rest[0]})
                elif message["to"] == user:
                    changed["messages"].append(_shown(message))
            elif kind == "refusal":
                refusal = self.fake.refusal(rest[0])
                if refusal and (refusal["user"] == user or (refusal["user"] is None and refusal["channel"] in visible)):
                    changed["messages"].append(_refusal(refusal, self.fake.dm_channel(user)))
            elif kind == "home" and rest[0] == user:
                changed["home"] = self.fake.home_view(user)
            elif kind == "modal" and rest[0] == user:
                changed["modal"], changed["modal_changed"] = self.fake.modal(user), True
        for channel, ts in parents:
            parent = self.fake.message(channel, ts)
            if parent is not None:
                changed["messages"].append(_shown(parent, self.fake.thread_replies(channel, ts)))
        return changed

    def _timeline(self, channel: str, user: str) -> list[dict[str, Any]]:
        """The channel's top-level messages with their thread summaries, the person's ephemeral messages and
        the refusals meant for it, in time order."""
        messages = self.fake.messages(channel)
        replies: dict[str, list[dict[str, Any]]] = {}
        for message in messages:
            parent = message.get("thread_ts")
            if parent and parent != message["ts"]:
                replies.setdefault(parent, []).append(message)
        items = [_shown(m, replies.get(m["ts"], [])) for m in messages if m.get("thread_ts", m["ts"]) == m["ts"]]
        items += [_shown(m) for m in self.fake.ephemerals(user, channel) if not m.get("thread_ts")]
        dm = self.fake.dm_channel(user)
        items += [
            _refusal(r, dm) for r in self.fake.refusals()
            if (r["channel"] == channel and r["user"] in (None, user)) or (channel == dm and r["user"] == user
                                                                           and r["channel"] is None)
        ]
        return sorted(items, key=lambda item: Decimal(item["ts"]))

    # --- what a person does -----------------------------------------------------------------------

    def command(self, fields: dict[str, Any]) -> dict[str, Any]:
        """A slash command typed in the message box, sent to the app as Slack sends it."""
        user = self._person(fields)
        channel = self._channel(fields, user)
        typed = str(fields.get("text") or "").strip()
        command, _, text = typed.partition(" ")
        if command not in COMMANDS:
            raise PageError(f"{command or typed} is not a command here; try /bill help")
        trigger = self._trigger(user)
        response_url = self.fake.issue_response_url(user, channel)
        body = slash_command_body(
            text.strip(), user, command, channel_id=channel, channel_name=self._channel_name(channel),
            user_name=self._user_name(user), response_url=response_url, trigger_id=trigger,
        )
        answer = self._send(body)
        if answer is None or answer.status != 200:
            self.fake.slackbot_says(user, channel, f'{command} failed with the error "{_failure(answer)}"')
            return {"delivered": False}
        if answer.body.strip():
            # An acknowledgement with a message is shown as Slack shows it: like an answer at the response_url.
            shown = answer.json() if answer.body.lstrip().startswith("{") else {"text": answer.body}
            self.fake.respond(response_url, shown)
        return {"delivered": True}

    def message(self, fields: dict[str, Any]) -> dict[str, Any]:
        """A message the person writes (not a command): it stays in the workspace; the app reads no messages."""
        user = self._person(fields)
        channel = self._channel(fields, user)
        text = str(fields.get("text") or "").strip()
        if not text:
            raise PageError("write something first")
        if channel == self.fake.dm_channel(user):
            raise PageError(f"sending messages to {self.app_name} has been turned off; use /bill here")
        thread_ts = fields.get("thread_ts")
        if thread_ts is not None and (not isinstance(thread_ts, str) or self.fake.message(channel, thread_ts) is None):
            raise PageError("that thread is not in this conversation")
        self.fake.post_as(user, channel, text, thread_ts)
        return {}

    def action(self, fields: dict[str, Any]) -> dict[str, Any]:
        """A click on a button: in a message (`channel`, `ts`; `ephemeral` for one shown only to the person)
        or in a view (`view_id`), at `block` (its position) and `element` (its position, or "accessory")."""
        user = self._person(fields)
        trigger = self._trigger(user)
        values = _state_values(fields.get("values"))
        if fields.get("view_id"):
            view = self._view(user, str(fields["view_id"]))
            block_id, element = _element(view.get("blocks") or [], fields)
            view = {**view, "state": {"values": values}}
            body = block_actions_body(user, "", "", view=view, trigger_id=trigger,
                                      action=element_action(element, block_id))
        else:
            channel = self._channel(fields, user)
            ts = str(fields.get("ts") or "")
            ephemeral = bool(fields.get("ephemeral"))
            message = self.fake.ephemeral(ts) if ephemeral else self.fake.message(channel, ts)
            if message is None or (ephemeral and message["to"] != user):
                raise PageError("that message is gone")
            block_id, element = _element(message.get("blocks") or [], fields)
            response_url = self.fake.issue_response_url(user, channel, message_ts=ts, ephemeral=ephemeral)
            shown = {k: v for k, v in message.items() if k not in ("channel", "to")}
            body = block_actions_body(
                user, "", "", message=shown, message_ts=ts, channel_id=channel,
                channel_name=self._channel_name(channel), response_url=response_url, trigger_id=trigger,
                action=element_action(element, block_id), ephemeral=ephemeral,
            )
        answer = self._send(body)
        if answer is None or answer.status != 200:
            return {"delivered": False, "error": f"{self.app_name} did not respond ({_failure(answer)})"}
        return {"delivered": True}

    def submit(self, fields: dict[str, Any]) -> dict[str, Any]:
        """The modal `view_id` submitted with its inputs' `values`; the app's answer decides what happens to it."""
        user = self._person(fields)
        view = self._view(user, str(fields.get("view_id") or ""))
        body = view_submission_body(user, view.get("callback_id", ""), view.get("private_metadata", ""),
                                    _state_values(fields.get("values")), view=view, trigger_id=self._trigger(user))
        answer = self._send(body)
        if answer is None or answer.status != 200:
            return {"closed": False, "error": f"We had some trouble connecting ({_failure(answer)}). Try again?"}
        reply = answer.json() if answer.body.lstrip().startswith("{") else {}
        outcome = reply.get("response_action")
        if outcome == "errors":
            return {"closed": False, "errors": reply.get("errors") or {}}
        if outcome in ("update", "push"):
            refused = self.fake.show_modal(user, reply.get("view") or {},
                                           replacing=view["id"] if outcome == "update" else None)
            if refused:
                return {"closed": False, "error": f"{self.app_name} answered with a view Slack refuses ({refused})"}
            return {"closed": False}
        if outcome == "clear":
            self.fake.clear_modals(user)
        else:
            self.fake.close_modal(user, view["id"])
        return {"closed": True}

    def close(self, fields: dict[str, Any]) -> dict[str, Any]:
        """The person closed the modal; the app hears of it when the view asked to be told."""
        user = self._person(fields)
        view = self._view(user, str(fields.get("view_id") or ""))
        self.fake.close_modal(user, view["id"])
        if view.get("notify_on_close"):
            self._send(view_closed_body(user, view))
        return {}

    def open_home(self, fields: dict[str, Any]) -> dict[str, Any]:
        """The person opened the app's Home tab: Slack tells the app every time (app_home_opened)."""
        user = self._person(fields)
        event = app_home_opened_event(user, channel=self.fake.dm_channel(user))
        home = self.fake.home_view(user)
        if home is not None:
            event["view"] = home
        answer = self._send(event_body(event))
        return {"delivered": answer is not None and answer.status == 200}

    # --- helpers -----------------------------------------------------------------------------------

    def _send(self, body: str):
        """Post a signed request to the app; None when it did not answer within Slack's three seconds."""
        if self._sender is None:
            raise PageError(f"{self.app_name} is not connected to the sandbox yet")
        try:
            return self._sender.post(body, timeout=ACK_SECONDS)
        except OSError as error:
            log.warning("the app did not answer a request in time: %s", error)
            return None

    def _trigger(self, user: str) -> str:
        trigger = new_trigger_id()
        self.fake.issue_trigger(trigger, user)
        return trigger

    def _person(self, fields: dict[str, Any]) -> str:
        user = str(fields.get("user") or "")
        if not any(person["id"] == user for person in self.fake.users()):
            raise PageError("choose a person first")
        return user

    def _channel(self, fields: dict[str, Any], user: str) -> str:
        channel = str(fields.get("channel") or "")
        if channel in ("dm", self.fake.dm_channel(user)):
            return self.fake.dm_channel(user)
        if any(known.id == channel for known in self.channels):
            return channel
        raise PageError("there is no such channel here")

    def _channel_name(self, channel: str) -> str:
        return next((known.name for known in self.channels if known.id == channel), "directmessage")

    def _user_name(self, user: str) -> str:
        return next((person["name"] for person in self.fake.users() if person["id"] == user), user.lower())

    def _view(self, user: str, view_id: str) -> dict[str, Any]:
        modal = self.fake.modal(user)
        if modal is not None and modal["id"] == view_id:
            return modal
        home = self.fake.home_view(user)
        if home is not None and home["id"] == view_id:
            return home
        raise PageError("that view is closed")


def _shown(message: dict[str, Any], replies: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A message as the page draws it: its kind, and its thread's size when it has one."""
    shown = {k: v for k, v in message.items() if k != "metadata"}
    shown["kind"] = "ephemeral" if "to" in message else "message"
    if replies:
        shown.update(reply_count=len(replies), latest_reply=replies[-1]["ts"],
                     reply_users=sorted({reply.get("user", "") for reply in replies}))
    return shown


def _refusal(refusal: dict[str, Any], dm: str) -> dict[str, Any]:
    """A refusal of invalid Block Kit, drawn in the conversation it was meant for (a view's, in the person's DM)."""
    return {**refusal, "kind": "refusal", "channel": refusal["channel"] or dm}


def _element(blocks: list[dict[str, Any]], fields: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The block id and the element the page says was clicked, looked up in what the app sent."""
    try:
        block = blocks[int(fields.get("block", -1))]
        place = fields.get("element")
        element = block["accessory"] if place == "accessory" else block["elements"][int(place)]
    except (IndexError, KeyError, TypeError, ValueError):
        raise PageError("that button is not there any more") from None
    if not isinstance(element, dict) or element.get("type") != "button":
        raise PageError("only buttons can be clicked here")
    # Slack gives every block an id; a block the app sent without one gets one made of its position.
    return str(block.get("block_id") or f"block-{fields.get('block')}"), element


def _state_values(values: Any) -> dict[str, Any]:
    """`state.values` from the page's {block_id: {action_id: text}}: what the person typed in plain-text inputs."""
    if not isinstance(values, dict):
        return {}
    return {
        str(block_id): {str(action_id): {"type": "plain_text_input", "value": None if text in (None, "") else str(text)}
                        for action_id, text in actions.items()}
        for block_id, actions in values.items() if isinstance(actions, dict)
    }


def _failure(answer) -> str:
    """Slack's words for an app that did not acknowledge a request."""
    if answer is None:
        return "operation_timeout"
    return f"http_{answer.status}" if answer.status != 404 else "dispatch_failed"


def _number(fields: dict[str, Any], name: str, *, default: int) -> int:
    value = fields.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise PageError(f"{name} must be a whole number") from None


def _ts(value: str | None) -> Decimal | None:
    if not value:
        return None
    try:
        return Decimal(value)
    except ArithmeticError:
        raise PageError("before must be a message ts") from None


def _json_body(request: BaseHTTPRequestHandler) -> dict[str, Any]:
    length = request.headers.get("Content-Length") or "0"
    if not length.isdigit() or int(length) > MAX_BODY_BYTES:
        raise PageError("the request is too large")
    try:
        fields = json.loads(request.rfile.read(int(length)) or b"{}")
    except ValueError:
        raise PageError("the request is not JSON") from None
    if not isinstance(fields, dict):
        raise PageError("the request is not a JSON object")
    return fields


def _send_json(request: BaseHTTPRequestHandler, status: int, data: dict[str, Any]) -> None:
    _send(request, status, json.dumps(data).encode(), "application/json; charset=utf-8")


def _send(request: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
    try:
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        request.send_header("Cache-Control", "no-store")
        request.end_headers()
        request.wfile.write(body)
    except OSError:
        request.close_connection = True  # the page went away
