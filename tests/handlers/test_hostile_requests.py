"""Hostile and broken requests to the app behind its real HTTP server, as one table.

Each variant gets the answer the table says: a 4xx, or Slack's normal answer for a request that is
well formed. None gets a 5xx, none leaves a traceback in the log, and no body ever reaches the log
(each body carries a marker, looked for in everything logged).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import itertools
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers.web import EVENTS_PATH, MAX_BODY_BYTES
from sandbox.slack import APP_ID, CHANNEL_ID, SIGNING_SECRET, TEAM_ID

MARK = "MARKER"  # replaced in each body by that row's own marker
RESPONSE_URL = "RESPONSE-URL"  # replaced by a response_url on the fake Slack
USER = "UHOSTILE1"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"

Headers = Callable[[bytes, int], list[tuple[str, str | bytes]]]


def signature(secret: str, timestamp: str, body: bytes) -> str:
    return "v0=" + hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()


def signed(offset: int = 0, *, secret: str = SIGNING_SECRET) -> Headers:
    """Signed as Slack signs, `offset` seconds from now."""

    def headers(body: bytes, now: int) -> list[tuple[str, str | bytes]]:
        timestamp = str(now + offset)
        return [("X-Slack-Request-Timestamp", timestamp), ("X-Slack-Signature", signature(secret, timestamp, body))]

    return headers


def stamped(timestamp: str | bytes, *, twice: bool = False) -> Headers:
    """A timestamp header exactly as given (sent twice when `twice`), with a signature computed over it."""

    def headers(body: bytes, now: int) -> list[tuple[str, str | bytes]]:
        text = timestamp.decode("latin-1") if isinstance(timestamp, bytes) else timestamp
        sent = [("X-Slack-Request-Timestamp", timestamp)] * (2 if twice else 1)
        return [*sent, ("X-Slack-Signature", signature(SIGNING_SECRET, text, body))]

    return headers


def signature_header(make: Callable[[str, bytes], str | bytes], *, twice: bool = False) -> Headers:
    """A correct timestamp with the signature header `make(timestamp, body)` (sent twice when `twice`)."""

    def headers(body: bytes, now: int) -> list[tuple[str, str | bytes]]:
        value = make(str(now), body)
        return [("X-Slack-Request-Timestamp", str(now)), *[("X-Slack-Signature", value)] * (2 if twice else 1)]

    return headers


def unsigned(body: bytes, now: int) -> list[tuple[str, str | bytes]]:
    return []


def only_timestamp(body: bytes, now: int) -> list[tuple[str, str | bytes]]:
    return [("X-Slack-Request-Timestamp", str(now))]


def only_signature(body: bytes, now: int) -> list[tuple[str, str | bytes]]:
    return [("X-Slack-Signature", signature(SIGNING_SECRET, str(now), body))]


@dataclass(frozen=True)
class Variant:
    name: str
    body: str | bytes
    status: int
    headers: Headers = signed()
    content_type: str | None = None  # None: JSON for a body starting with "{", else form encoding
    method: str = "POST"
    path: str = EVENTS_PATH
    length: str | None = None  # the Content-Length sent, when not the body's own
    replayed: int | None = None  # the status of the same request sent again


# --- bodies ----------------------------------------------------------------------------------------------------


def js(value: object) -> str:
    """A JSON body; an object also carries the row's marker, in a field nothing reads."""
    if isinstance(value, dict):
        value = {**value, "note": MARK}
    return json.dumps(value)


def form(**fields: str) -> str:
    return urlencode({**fields, "note": MARK})


def interactive(payload: object) -> str:
    """An interactivity body: the JSON payload in one form field."""
    if isinstance(payload, dict):
        payload = {**payload, "note": MARK}
    return urlencode({"payload": json.dumps(payload)})


def command(text: str = "help", **fields: str) -> str:
    base = {"command": "/bill", "text": text, "user_id": USER, "channel_id": CHANNEL_ID, "team_id": TEAM_ID,
            "response_url": RESPONSE_URL, "trigger_id": "1.2.3"}
    return form(**{**base, **fields})


def click(**fields: object) -> dict:
    base = {"type": "block_actions", "user": {"id": USER, "team_id": TEAM_ID}, "team": {"id": TEAM_ID},
            "api_app_id": APP_ID, "response_url": RESPONSE_URL, "trigger_id": "1.2.3",
            "actions": [{"type": "button", "action_id": "bill_approve", "block_id": "b", "value": "bill:999999"}]}
    return {**base, **fields}


def submission(**fields: object) -> dict:
    view = {"id": "V1", "type": "modal", "callback_id": "bill_reject_modal", "private_metadata": "bill:999999",
            "state": {"values": {"reject_reason": {"reason": {"type": "plain_text_input", "value": "no"}}}}}
    base = {"type": "view_submission", "user": {"id": USER}, "team": {"id": TEAM_ID}, "view": view}
    return {**base, **fields}


def event(inner: object = None, **fields: object) -> dict:
    inner = {"type": "app_home_opened", "user": USER, "tab": "messages"} if inner is None else inner
    base = {"type": "event_callback", "team_id": TEAM_ID, "api_app_id": APP_ID, "event": inner,
            "event_id": "Ev" + MARK, "authorizations": [{"team_id": TEAM_ID, "user_id": "U0BOT0001"}]}
    return {**base, **fields}


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# --- the table ---------------------------------------------------------------------------------------------------

WELL_FORMED = [
    Variant("url verification", js({"type": "url_verification", "challenge": "c"}), 200),
    Variant("slash command", command(), 200, replayed=401),
    Variant("slash command whose text says payload", command("customer payload"), 200),
    Variant("slash command without text", form(command="/bill", user_id=USER, response_url=RESPONSE_URL), 200),
    Variant("click on a bill that does not exist", interactive(click()), 200, replayed=401),
    Variant("click with a value that is no bill", interactive(click(actions=[
        {"action_id": "bill_approve", "value": "<!channel>"}])), 200),
    Variant("modal submitted for a bill that does not exist", interactive(submission()), 200),
    Variant("app_home_opened on the Messages tab", js(event()), 200, replayed=401),
    Variant("ssl check", form(ssl_check="1", token="t"), 200),
    Variant("signed 299 seconds ago", command("whoami"), 200, signed(-299)),
    Variant("signed 299 seconds ahead", command("list"), 200, signed(299)),
    Variant("query string on the path", command("show 1"), 200, path=EVENTS_PATH + "?x=1"),
    Variant("content type with a charset", js({"type": "url_verification", "challenge": "d"}), 200,
            content_type="application/json; charset=utf-8"),
    # Well formed, but nothing in the app takes them: answered 404, as Bolt answers them.
    Variant("another slash command", command(command="/other"), 404),
    Variant("a shortcut", interactive({"type": "shortcut", "callback_id": "x", "user": {"id": USER}}), 404),
    Variant("an event the app does not take", js(event({"type": "reaction_added", "user": USER})), 404),
    Variant("a button the app does not have", interactive(click(actions=[{"action_id": "other"}])), 404),
    Variant("a modal the app does not have", interactive(submission(view={"type": "modal", "callback_id": "x"})), 404),
    Variant("an empty signed body", "", 404),
    Variant("form fields of no kind", form(a="1"), 404),
    Variant("a JSON object of no kind", js({"a": 1}), 404),
]

NOT_FROM_SLACK = [
    Variant("unsigned", command(), 401, unsigned),
    Variant("unsigned JSON", js(event()), 401, unsigned),
    Variant("unsigned 1 MiB", "x" * MAX_BODY_BYTES, 401, unsigned),
    Variant("only a timestamp", command(), 401, only_timestamp),
    Variant("only a signature", command(), 401, only_signature),
    Variant("signed with another secret", command(), 401, signed(secret="another-secret")),
    Variant("signed 301 seconds ago", command(), 401, signed(-301)),
    Variant("signed 301 seconds ahead", command(), 401, signed(301)),
    Variant("signed a day ago", command(), 401, signed(-86_400)),
    Variant("signed a day ahead", command(), 401, signed(86_400)),
    Variant("timestamp zero", command(), 401, stamped("0")),
    Variant("empty timestamp", command(), 401, stamped("")),
    Variant("timestamp not a number", command(), 401, stamped("yesterday")),
    Variant("timestamp in exponent form", command(), 401, stamped("1.7e9")),
    Variant("timestamp with a fraction", command(), 401, stamped(f"{int(time.time())}.5")),
    Variant("timestamp with a space", command(), 401, stamped(f" {int(time.time())}")),
    Variant("timestamp negative", command(), 401, stamped(f"-{int(time.time())}")),
    Variant("timestamp with underscores", command(), 401, stamped(f"1_{int(time.time()) - 10**9}")),
    Variant("timestamp in hexadecimal", command(), 401, stamped(hex(int(time.time())))),
    Variant("timestamp of full-width digits", command(), 401, stamped("１７００".encode())),
    Variant("timestamp of superscript digits", command(), 401, stamped("²³".encode())),
    Variant("timestamp of 5,000 digits", command(), 401, stamped("9" * 5000)),
    Variant("timestamp of 2**63", command(), 401, stamped(str(2**63))),
    Variant("timestamp past the year 9999", command(), 401, stamped("999999999999")),
    Variant("timestamp header twice", command(), 401, stamped(str(int(time.time())), twice=True)),
    Variant("signature header twice", command(), 401,
            signature_header(lambda ts, body: signature(SIGNING_SECRET, ts, body), twice=True)),
    Variant("empty signature", command(), 401, signature_header(lambda ts, body: "")),
    Variant("signature without v0=", command(), 401,
            signature_header(lambda ts, body: signature(SIGNING_SECRET, ts, body)[3:])),
    Variant("signature of version v1", command(), 401,
            signature_header(lambda ts, body: "v1=" + signature(SIGNING_SECRET, ts, body)[3:])),
    Variant("signature in upper case", command(), 401,
            signature_header(lambda ts, body: signature(SIGNING_SECRET, ts, body).upper())),
    Variant("signature of another body", command(), 401,
            signature_header(lambda ts, body: signature(SIGNING_SECRET, ts, body + b"&x=1"))),
    Variant("signature of another time", command(), 401,
            signature_header(lambda ts, body: signature(SIGNING_SECRET, str(int(ts) - 1), body))),
    Variant("signature of 8 KB", command(), 401, signature_header(lambda ts, body: "v0=" + "a" * 8192)),
    Variant("signature with Latin-1 bytes", command(), 401,
            signature_header(lambda ts, body: "v0=é".encode("latin-1"))),
    Variant("unsigned JSON list", js([1]), 401, unsigned, JSON),
    Variant("unsigned JSON null", "null", 401, unsigned, JSON),
    Variant("unsigned payload list", interactive([MARK]), 401, unsigned),
    Variant("unsigned actions []", interactive(click(actions=[])), 401, unsigned),
    Variant("unsigned team of the wrong type", js(event(team=5)), 401, unsigned),
    Variant("unsigned nested 50,000 deep", nested(50_000), 401, unsigned, JSON),
    Variant("unsigned not UTF-8", b"\xff\xfe" + MARK.encode(), 401, unsigned),
]

MALFORMED = [
    Variant("body not UTF-8", b"payload=\xff\xfe" + MARK.encode(), 400),
    Variant("JSON that does not parse", '{"type": "' + MARK, 400, content_type=JSON),
    Variant("JSON list", js([MARK]), 400, content_type=JSON),
    Variant("JSON null", "null", 400, content_type=JSON),
    Variant("JSON string", js(MARK), 400, content_type=JSON),
    Variant("JSON number", "42", 400, content_type=JSON),
    Variant("JSON true", "true", 400, content_type=JSON),
    Variant("payload that does not parse", urlencode({"payload": "{" + MARK}), 400),
    Variant("payload list", interactive([MARK]), 400),
    Variant("payload null", interactive(None), 400),
    Variant("payload string", interactive(MARK), 400),
    Variant("payload number", interactive(7), 400),
    Variant("nested 50,000 deep", nested(50_000), 400, content_type=JSON),
    Variant("nested 50,000 deep in a payload", urlencode({"payload": nested(50_000)}), 400),
    Variant("objects nested 50,000 deep", '{"a":' * 50_000 + "1" + "}" * 50_000, 400),
    Variant("actions []", interactive(click(actions=[])), 400),
    Variant("actions not a list", interactive(click(actions={"action_id": "bill_approve"})), 400),
    Variant("actions of numbers", interactive(click(actions=[1])), 400),
    Variant("action without an action_id", interactive(click(actions=[{"value": "bill:1"}])), 400),
    Variant("action_id a number", interactive(click(actions=[{"action_id": 5}])), 400),
    Variant("action value an object", interactive(click(actions=[{"action_id": "bill_approve", "value": {}}])), 400),
    Variant("click without a user", interactive(click(user=None)), 400),
    Variant("click by a user given as text", interactive(click(user=USER)), 400),
    Variant("click by a user without an id", interactive(click(user={"name": "x"})), 400),
    Variant("click by a user id with a NUL", interactive(click(user={"id": "U1\x00"})), 400),
    Variant("click by a user id of 33 characters", interactive(click(user={"id": "U" * 33})), 400),
    Variant("team a number", interactive(click(team=5)), 400),
    Variant("team a list", js(event(team=[TEAM_ID])), 400),
    Variant("team true", js(event(team=True)), 400),
    Variant("team with an id that is a number", js(event(team={"id": 5})), 400),
    Variant("enterprise a number", js(event(enterprise=5)), 400),
    Variant("enterprise a list", interactive(click(enterprise=["E1"])), 400),
    Variant("authorizations a number", js(event(authorizations=5)), 400),
    Variant("authorizations a string", js(event(authorizations="abc")), 400),
    Variant("authorizations of strings", js(event(authorizations=["x"])), 400),
    Variant("authorizations of numbers", js(event(authorizations=[1])), 400),
    Variant("authorization with a team of the wrong type", js(event(authorizations=[{"team": 5}])), 400),
    Variant("authorization with an enterprise list", js(event(authorizations=[{"enterprise": [1]}])), 400),
    Variant("user a number", js(event(user=5)), 400),
    Variant("channel a number", interactive(click(channel=5)), 400),
    Variant("response_url a number", interactive(click(response_url=5)), 400),
    Variant("response_url not a URL", interactive(click(response_url="ftp://x")), 400),
    Variant("response_urls of strings", interactive(submission(response_urls=["x"])), 400),
    Variant("type a list", js({"type": ["block_actions"]}), 400),
    Variant("event_id of 65 characters", js(event(event_id="E" * 65)), 400),
    Variant("event_id of 100,000 characters", js(event(event_id="E" * 100_000)), 400),
    Variant("event_id a number", js(event(event_id=5)), 400),
    Variant("event_id with a NUL", js(event(event_id="Ev\x00")), 400),
    Variant("event without an event_id", js(event(event_id=None)), 400),
    Variant("event a string", js(event("typewriter")), 400),
    Variant("event a list", js(event([{"type": "app_home_opened"}])), 400),
    Variant("event without a type", js(event({"user": USER})), 400),
    Variant("event type a number", js(event({"type": 5})), 400),
    Variant("app_home_opened without a user", js(event({"type": "app_home_opened", "tab": "home"})), 400),
    Variant("app_home_opened by a user object", js(event({"type": "app_home_opened", "user": {"id": USER}})), 400),
    Variant("event with a message of the wrong type", js(event({"type": "message", "message": "x"})), 400),
    Variant("view a string", interactive(submission(view="modal")), 400),
    Variant("view without a callback_id", interactive(submission(view={"type": "modal"})), 400),
    Variant("view without a type", interactive(submission(view={"callback_id": "c"})), 400),
    Variant("view of a workflow step", interactive(submission(view={"type": "workflow_step", "callback_id": "c"})),
            400),
    Variant("view callback_id a number", interactive(submission(view={"type": "modal", "callback_id": 5})), 400),
    Variant("view private_metadata a number", interactive(submission(view={
        "type": "modal", "callback_id": "c", "private_metadata": 1})), 400),
    Variant("view state a list", interactive(submission(view={"type": "modal", "callback_id": "c", "state": []})), 400),
    Variant("view state values not objects", interactive(submission(
        view={"type": "modal", "callback_id": "c", "state": {"values": {"b": 1}}})), 400),
    Variant("reason a number", interactive(submission(view={"type": "modal", "callback_id": "bill_reject_modal",
                                                             "state": {"values": {"reject_reason": {"reason": {
                                                                 "value": 5}}}}})), 400),
    Variant("submission without a user", interactive(submission(user=None)), 400),
    Variant("slash command without a user", form(command="/bill", text="help"), 400),
    Variant("slash command by a user id in lower case", command(user_id="u1"), 400),
    Variant("slash command as JSON with a number for text", js({"command": "/bill", "user_id": USER, "text": 5}), 400),
    Variant("slash command as JSON with a number for command", js({"command": 5, "user_id": USER}), 400),
    Variant("interactive_message without a callback_id", interactive({"type": "interactive_message", "actions": [
        {"action_id": "a"}]}), 400),
    Variant("dialog_submission without a callback_id", interactive({"type": "dialog_submission"}), 400),
    Variant("interactive_message without actions", interactive({"type": "interactive_message", "callback_id": "c"}),
            400),
    Variant("workflow_step_edit without its step", interactive({"type": "workflow_step_edit", "callback_id": "c"}),
            400),
]

TOO_BIG_OR_UNREADABLE = [
    Variant("1 MiB and one byte, signed", "x" * (MAX_BODY_BYTES + 1), 413),
    Variant("100 MB announced, unsigned", MARK * 1000, 413, unsigned, length=str(100 * 1024 * 1024)),
    Variant("Content-Length not a number", command(), 400, length="abc"),
]

WRONG_METHOD_OR_PATH = [
    Variant("GET", "", 405, unsigned, method="GET"),
    Variant("PUT", command(), 405, method="PUT"),
    Variant("DELETE", "", 405, unsigned, method="DELETE"),
    Variant("PATCH", command(), 405, method="PATCH"),
    Variant("OPTIONS", "", 405, unsigned, method="OPTIONS"),
    Variant("HEAD", "", 405, unsigned, method="HEAD"),
    Variant("POST to the root", command(), 404, path="/"),
    Variant("POST to the health check", command(), 404, path="/healthz"),
    Variant("POST to a path below", command(), 404, path=EVENTS_PATH + "/x"),
    Variant("POST to a path that climbs", command(), 404, path=EVENTS_PATH + "/../admin"),
    Variant("GET of an unknown path", "", 404, unsigned, method="GET", path="/admin"),
]

VARIANTS = WELL_FORMED + NOT_FROM_SLACK + MALFORMED + TOO_BIG_OR_UNREADABLE + WRONG_METHOD_OR_PATH


def send(base_url: str, variant: Variant, body: bytes, now: int) -> int:
    """Send one variant as raw HTTP (repeated headers, any Content-Length) and return the status."""
    url = urlsplit(base_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        connection.putrequest(variant.method, variant.path, skip_accept_encoding=True)
        content_type = variant.content_type or (JSON if body.startswith(b"{") else FORM)
        connection.putheader("Content-Type", content_type)
        for name, value in variant.headers(body, now):
            connection.putheader(name, value)
        connection.putheader("Content-Length", variant.length or str(len(body)))
        connection.endheaders()
        try:
            connection.send(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered before it read the body, as it should for a body too large
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_hostile_and_broken_requests_get_their_answer_and_cost_nothing(slack, caplog):
    assert len(VARIANTS) >= 100
    caplog.set_level(logging.DEBUG)
    response_url = slack.fake.response_url("hostile")
    wrong = []
    for number, variant in enumerate(VARIANTS):
        mark = f"hostile{number:03d}mark"
        body = variant.body if isinstance(variant.body, bytes) else variant.body.encode()
        body = body.replace(MARK.encode(), mark.encode())
        url = response_url if body.startswith(b"{") else urlencode({"": response_url})[1:]
        body = body.replace(RESPONSE_URL.encode(), url.encode())
        now = int(time.time())
        statuses = [send(slack.base_url, variant, body, now)]
        if variant.replayed is not None:
            statuses.append(send(slack.base_url, variant, body, now))
        expected = [variant.status] + ([variant.replayed] if variant.replayed is not None else [])
        if statuses != expected:
            wrong.append(f"{variant.name}: {statuses}, expected {expected}")

    assert wrong == [], "\n".join(wrong)
    # What the well-formed requests set going has answered, so that its log lines are in too.
    slack.fake.wait_for("response_url", 3)
    logged = caplog.text
    assert "Traceback" not in logged and not [record for record in caplog.records if record.exc_info]
    assert re.search(r"hostile\d{3}mark", logged) is None, "a request body reached the log"
    assert len([record for record in caplog.records if record.levelno >= logging.WARNING]) <= len(VARIANTS)



# --- payloads of every shape --------------------------------------------------------------------------------------

# The fields Bolt and the listeners read, and values Slack uses in them, for Hypothesis to combine at random.
FIELDS = [
    "type", "team", "team_id", "enterprise", "enterprise_id", "user", "user_id", "channel", "channel_id",
    "authorizations", "event", "event_id", "view", "actions", "action_id", "block_id", "value", "callback_id",
    "command", "text", "response_url", "response_urls", "trigger_id", "message", "previous_message", "item",
    "assistant_thread", "is_enterprise_install", "is_ext_shared_channel", "thread_ts", "state", "values",
    "private_metadata", "id", "tab", "challenge", "workflow_step", "function_execution_id", "function_data",
    "bot_access_token", "app_installed_team_id", "subtype", "channel_type", "user_team", "inputs",
]
WORDS = [
    "block_actions", "view_submission", "view_closed", "event_callback", "url_verification", "shortcut",
    "message_action", "interactive_message", "dialog_submission", "dialog_cancellation", "workflow_step_edit",
    "block_suggestion", "app_home_opened", "message", "function_executed", "workflow_step_execute", "modal", "home",
    "workflow_step", "/bill", "help", "bill_approve", "bill_reject", "bill_send", "bill_undo", "bill_reject_modal",
    "reject_reason", "reason", "bill:1", "bill:1:2", "bill:1;undo:2", USER, TEAM_ID, "E0ENTERPRISE", "Ev0FUZZ",
    RESPONSE_URL, "im", "T", "E", "",
]


def shapes() -> st.SearchStrategy:
    leaves = st.none() | st.booleans() | st.integers() | st.sampled_from(WORDS) | st.text(max_size=4)
    values = st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(FIELDS), inner, max_size=4),
        max_leaves=12,
    )
    kinds = st.fixed_dictionaries({"type": st.sampled_from(WORDS[:11]) | values})
    return kinds.flatmap(lambda base: st.dictionaries(st.sampled_from(FIELDS), values, max_size=6).map(
        lambda rest: {**rest, **base}))


FUZZ_NUMBERS = itertools.count()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(payload=shapes(), as_form=st.booleans())
def test_a_signed_payload_of_any_shape_gets_a_4xx_or_its_answer_never_a_5xx(slack, caplog, payload, as_form):
    caplog.set_level(logging.INFO)
    payload = {**payload, "note": f"fuzzmark{next(FUZZ_NUMBERS)}"}  # each body differs: none is a replay
    text = json.dumps(payload).replace(RESPONSE_URL, slack.fake.response_url("fuzz"))
    body = urlencode({"payload": text}) if as_form else text
    answer = slack.sender.post(body, content_type=FORM if as_form else JSON)

    assert answer.status in (200, 400, 404), answer
    assert "Traceback" not in caplog.text and "fuzzmark" not in caplog.text
