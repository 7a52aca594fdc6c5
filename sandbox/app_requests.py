"""Requests from Slack to the app: the bodies Slack posts, signed as Slack signs them, and a sender.

The body builders (`slash_command_body`, `block_actions_body`, `view_submission_body`, `event_body`, ...)
give every field Slack sends; `sign()` adds Slack's timestamp and v0 signature; `SlackSender` posts a
signed body to the app's `POST /slack/events`. The sandbox page's clicks and commands go through them,
and so do the tests' requests.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import itertools
import json
import secrets
import time
from typing import Any, NamedTuple
from urllib.parse import urlencode, urlsplit

from sandbox.slack import (
    APP_ID,
    BOT_ID,
    BOT_USER_ID,
    CHANNEL_ID,
    CHANNEL_NAME,
    FORM,
    JSON,
    SIGNING_SECRET,
    TEAM_DOMAIN,
    TEAM_ID,
    UNSET_RESPONSE_URL,
    VERIFICATION_TOKEN,
)

SLACK_USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"


def sign(
    body: str, secret: str = SIGNING_SECRET, timestamp: int | None = None, content_type: str | None = None
) -> dict[str, str]:
    """The headers Slack adds to a request: timestamp, v0 signature and content type."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    base = f"v0:{timestamp}:{body}".encode()
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": content_type or content_type_of(body),
    }


def content_type_of(body: str) -> str:
    """JSON for Events API bodies, form encoding for everything else Slack posts."""
    return JSON if body.lstrip().startswith("{") else FORM


_trigger_counter = itertools.count(1)


def new_trigger_id() -> str:
    """A fresh trigger id shaped like Slack's."""
    return f"{next(_trigger_counter)}.{TEAM_ID[1:]}.{secrets.token_hex(16)}"


def _event_ts() -> str:
    return f"{time.time():.6f}"


def _form_payload(payload: dict[str, Any]) -> str:
    """Interactivity bodies: the JSON payload in a single form field."""
    return urlencode({"payload": json.dumps(payload)})


def _user(user_id: str, team_id: str) -> dict[str, Any]:
    name = user_id.lower()
    return {"id": user_id, "username": name, "name": name, "team_id": team_id}


def _team(team_id: str) -> dict[str, Any]:
    return {"id": team_id, "domain": TEAM_DOMAIN}


def slash_command_body(
    text: str,
    user_id: str,
    command: str = "/bill",
    *,
    channel_id: str = CHANNEL_ID,
    channel_name: str = CHANNEL_NAME,
    user_name: str | None = None,
    response_url: str = UNSET_RESPONSE_URL,
    trigger_id: str | None = None,
    team_id: str = TEAM_ID,
) -> str:
    """A slash command invocation, form encoded, with every field Slack sends."""
    return urlencode(
        {
            "token": VERIFICATION_TOKEN,
            "team_id": team_id,
            "team_domain": TEAM_DOMAIN,
            "channel_id": channel_id,
            "channel_name": channel_name,
            "user_id": user_id,
            "user_name": user_name or user_id.lower(),
            "command": command,
            "text": text,
            "api_app_id": APP_ID,
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": trigger_id or new_trigger_id(),
        }
    )


def button_action(
    action_id: str, value: str, block_id: str = "actions", text: str | None = None
) -> dict[str, Any]:
    """One entry of a block_actions payload's `actions`: a clicked button."""
    return {
        "type": "button",
        "action_id": action_id,
        "block_id": block_id,
        "text": {"type": "plain_text", "text": text or action_id, "emoji": True},
        "value": value,
        "action_ts": _event_ts(),
    }


def element_action(element: dict[str, Any], block_id: str) -> dict[str, Any]:
    """The `actions` entry for a click on `element` (a button as the app sent it) in block `block_id`."""
    action = {
        "type": element["type"],
        "action_id": element.get("action_id", ""),
        "block_id": block_id,
        "action_ts": _event_ts(),
    }
    for name in ("text", "value", "style"):
        if name in element:
            action[name] = element[name]
    return action


def block_actions_body(
    user_id: str,
    action_id: str,
    value: str,
    *,
    block_id: str = "actions",
    message_ts: str | None = None,
    channel_id: str | None = None,
    response_url: str = UNSET_RESPONSE_URL,
    trigger_id: str | None = None,
    message: dict[str, Any] | None = None,
    view: dict[str, Any] | None = None,
    team_id: str = TEAM_ID,
    action: dict[str, Any] | None = None,
    channel_name: str = CHANNEL_NAME,
    ephemeral: bool = False,
) -> str:
    """A button click, as Slack posts it.

    With `view`, the button was in a view (App Home or a modal): the payload has the view and no
    channel, message or response_url. Otherwise it was in a message: `message` (for instance one
    from `FakeSlack.messages()`) supplies the ts and channel unless they are given; an `ephemeral`
    message is not repeated in the payload, as Slack does not. `action` (from element_action) is the
    clicked element in place of a button made of `action_id`, `value` and `block_id`.
    """
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": _user(user_id, team_id),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": trigger_id or new_trigger_id(),
        "team": _team(team_id),
        "enterprise": None,
        "is_enterprise_install": False,
        "state": {"values": {}},
        "actions": [action or button_action(action_id, value, block_id)],
    }
    if view is not None:
        payload["container"] = {"type": "view", "view_id": view.get("id")}
        payload["view"] = view
        return _form_payload(payload)
    message = dict(message or {})
    message_ts = message_ts or message.get("ts") or "1700000000.000100"
    channel_id = channel_id or message.pop("channel", None) or CHANNEL_ID
    message = {
        "type": "message",
        "user": BOT_USER_ID,
        "bot_id": BOT_ID,
        "app_id": APP_ID,
        "team": team_id,
        "text": "",
        "blocks": [],
        **message,
        "ts": message_ts,
    }
    payload["container"] = {
        "type": "message",
        "message_ts": message_ts,
        "channel_id": channel_id,
        "is_ephemeral": ephemeral,
    }
    payload["channel"] = {"id": channel_id, "name": channel_name}
    if not ephemeral:
        payload["message"] = message
    payload["response_url"] = response_url
    return _form_payload(payload)


def text_input_state(block_id: str, action_id: str, value: str | None) -> dict[str, Any]:
    """`state.values` of a modal with one plain-text input, as the user filled it in."""
    return {block_id: {action_id: {"type": "plain_text_input", "value": value}}}


def view_submission_body(
    user_id: str,
    callback_id: str,
    private_metadata: str = "",
    state_values: dict[str, Any] | None = None,
    *,
    view_id: str = "V0MODAL01",
    blocks: list[dict[str, Any]] | None = None,
    trigger_id: str | None = None,
    team_id: str = TEAM_ID,
    view: dict[str, Any] | None = None,
) -> str:
    """A modal's submission, as Slack posts it; `view`: the modal as the app opened it (its fields win)."""
    view = {
        "id": view_id,
        "team_id": team_id,
        "type": "modal",
        "callback_id": callback_id,
        "private_metadata": private_metadata,
        "title": {"type": "plain_text", "text": "Modal"},
        "blocks": blocks or [],
        "state": {"values": state_values or {}},
        "hash": secrets.token_hex(8),
        "clear_on_close": False,
        "notify_on_close": False,
        "root_view_id": view_id,
        "previous_view_id": None,
        "external_id": "",
        "app_id": APP_ID,
        "app_installed_team_id": team_id,
        "bot_id": BOT_ID,
        **(view or {}),
    }
    view["state"] = {"values": state_values or {}}
    payload = {
        "type": "view_submission",
        "team": _team(team_id),
        "user": _user(user_id, team_id),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": trigger_id or new_trigger_id(),
        "view": view,
        "response_urls": [],
        "enterprise": None,
        "is_enterprise_install": False,
    }
    return _form_payload(payload)


def view_closed_body(user_id: str, view: dict[str, Any], *, team_id: str = TEAM_ID) -> str:
    """A modal closed by the person (sent only for a view with notify_on_close)."""
    payload = {
        "type": "view_closed",
        "team": _team(team_id),
        "user": _user(user_id, team_id),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "view": view,
        "is_cleared": False,
        "enterprise": None,
        "is_enterprise_install": False,
    }
    return _form_payload(payload)


def event_body(event: dict[str, Any], *, team_id: str = TEAM_ID, event_id: str | None = None) -> str:
    """An Events API delivery (JSON) wrapping `event`."""
    return json.dumps(
        {
            "token": VERIFICATION_TOKEN,
            "team_id": team_id,
            "api_app_id": APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": event_id or f"Ev{secrets.token_hex(5).upper()}",
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": team_id,
                    "user_id": BOT_USER_ID,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }
    )


def app_home_opened_event(user_id: str, *, tab: str = "home", channel: str = "D0HOME001") -> dict[str, Any]:
    """The event Slack sends when a user opens the app's Home (or Messages) tab."""
    return {
        "type": "app_home_opened",
        "user": user_id,
        "channel": channel,
        "tab": tab,
        "event_ts": _event_ts(),
    }


def url_verification_body(challenge: str = "challenge-token") -> str:
    """The handshake Slack sends when the Events API Request URL is saved."""
    return json.dumps({"token": VERIFICATION_TOKEN, "challenge": challenge, "type": "url_verification"})


class SenderResponse(NamedTuple):
    """The app's HTTP answer: status, headers (lower-case names) and body text."""

    status: int
    headers: dict[str, str]
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


class SlackSender:
    """Posts bodies to the app's Request URL the way Slack does: signed, with Slack's headers."""

    STALE_AGE = 6 * 60  # Slack's receivers reject timestamps more than 5 minutes away
    RETRY_AFTER = 3  # seconds: Slack retries a delivery that got no answer within this time

    def __init__(self, base_url: str, secret: str = SIGNING_SECRET, path: str = "/slack/events"):
        self.base_url = base_url.rstrip("/")
        self.secret = secret
        self.path = path

    def post(
        self,
        body: str,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
        timestamp: int | None = None,
        retry_num: int | None = None,
        *,
        retry_reason: str = "http_timeout",
        forge: bool = False,
        unsigned: bool = False,
        stale: bool = False,
        timeout: float = 10.0,
    ) -> SenderResponse:
        """Post `body`; by default signed with the right secret and the current time.

        forge: sign with a wrong secret. unsigned: send no signature headers at all.
        stale: sign correctly, but with a timestamp six minutes old (a replay).
        retry_num: mark the request as Slack's retry number `retry_num` of an earlier delivery.
        """
        content_type = content_type or content_type_of(body)
        if stale and timestamp is None:
            timestamp = int(time.time()) - self.STALE_AGE
        if retry_num is not None and timestamp is None:
            # Slack signs a retry when it sends it, seconds after the delivery it repeats; a test sends it at once.
            timestamp = int(time.time()) + self.RETRY_AFTER * retry_num
        secret = "forged-" + self.secret if forge else self.secret
        request_headers = {"Content-Type": content_type, "User-Agent": SLACK_USER_AGENT}
        if not unsigned:
            request_headers.update(sign(body, secret, timestamp, content_type))
        if retry_num is not None:
            request_headers["X-Slack-Retry-Num"] = str(retry_num)
            request_headers["X-Slack-Retry-Reason"] = retry_reason
        request_headers.update(headers or {})
        return self._send(body.encode(), request_headers, timeout)

    def _send(self, body: bytes, headers: dict[str, str], timeout: float) -> SenderResponse:
        url = urlsplit(self.base_url)
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
        try:
            connection.request("POST", url.path + self.path, body=body, headers=headers)
            response = connection.getresponse()
            text = response.read().decode("utf-8")
            return SenderResponse(response.status, {k.lower(): v for k, v in response.getheaders()}, text)
        finally:
            connection.close()


