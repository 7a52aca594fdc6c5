"""The sandbox page's server side: what a person does on the page reaches a Bolt app as Slack sends it,
and what the app answers is shown to the right person. (The browser tests drive the real app.)"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient

from sandbox.page import SandboxPage
from sandbox.slack import CHANNEL_ID, SIGNING_SECRET, TOKEN, FakeSlack
from tests.slack_helpers import serve_wsgi, wait_until

FIONA, VERA = "U0FIONA01", "U0VISIT01"
BUTTONS = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "*Bill #7*"}},
    {"type": "actions", "block_id": "bill_actions", "elements": [
        {"type": "button", "text": {"type": "plain_text", "text": "Approve"}, "action_id": "approve",
         "value": "bill:7:3", "style": "primary"},
        {"type": "button", "text": {"type": "plain_text", "text": "Reject"}, "action_id": "reject",
         "value": "bill:7:3"},
    ]},
]
MODAL = {
    "type": "modal", "callback_id": "reason", "title": {"type": "plain_text", "text": "Reject bill"},
    "submit": {"type": "plain_text", "text": "Reject"}, "private_metadata": "bill:7:3",
    "blocks": [{"type": "input", "block_id": "why", "label": {"type": "plain_text", "text": "Reason"},
                "element": {"type": "plain_text_input", "action_id": "text", "multiline": True}}],
}


class Sandbox:
    """A workspace with its page, connected to a Bolt app; `post` speaks for the browser."""

    def __init__(self, fake: FakeSlack, seen: dict):
        self.fake = fake
        self.seen = seen
        self.client = WebClient(base_url=fake.url, token=TOKEN)

    def post(self, path: str, fields: dict) -> tuple[int, dict]:
        origin = urlsplit(self.fake.origin)
        connection = http.client.HTTPConnection(origin.hostname, origin.port, timeout=10)
        try:
            connection.request("POST", path, body=json.dumps(fields), headers={"Content-Type": "application/json"})
            answer = connection.getresponse()
            return answer.status, json.loads(answer.read())
        finally:
            connection.close()

    def get(self, path: str) -> dict:
        origin = urlsplit(self.fake.origin)
        connection = http.client.HTTPConnection(origin.hostname, origin.port, timeout=10)
        try:
            connection.request("GET", path)
            return json.loads(connection.getresponse().read())
        finally:
            connection.close()


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    seen: dict = {}
    with FakeSlack() as fake:
        fake.add_user(FIONA, name="fiona", title="Finance")
        fake.add_user(VERA, name="vera", title="not linked to an account")
        page = SandboxPage(fake)
        app = App(signing_secret=SIGNING_SECRET, client=WebClient(base_url=fake.url, token=TOKEN))

        @app.command("/bill")
        def bill(ack, command, respond):
            seen["command"] = command
            ack()
            respond(text=f"you typed {command['text']}")

        @app.action("approve")
        def approve(ack, body, respond):
            seen["click"] = body
            ack()
            respond(text="approved", replace_original=False)

        @app.action("reject")
        def reject(ack, body, client):
            ack()
            client.views_open(trigger_id=body["trigger_id"], view=MODAL)

        @app.view("reason")
        def reason(ack, view):
            seen["submitted"] = view
            text = view["state"]["values"]["why"]["text"]["value"]
            if len(text) < 10:
                ack(response_action="errors", errors={"why": "Say a little more."})
            else:
                ack()

        @app.event("app_home_opened")
        def home(event, client):
            seen["home_opened"] = event
            client.views_publish(user_id=event["user"], view={"type": "home", "blocks": BUTTONS})

        with serve_wsgi(SlackRequestHandler(app)) as base_url:
            page.connect(base_url)
            yield Sandbox(fake, seen)


def test_a_command_reaches_the_app_signed_and_its_answer_is_shown_to_that_person_only(sandbox):
    status, answer = sandbox.post("/sandbox/command", {"user": FIONA, "channel": CHANNEL_ID, "text": "/bill list"})

    assert (status, answer["delivered"]) == (200, True)
    [shown] = wait_until(lambda: sandbox.fake.ephemerals(FIONA, CHANNEL_ID), 1, "the command's answer")
    assert shown["text"] == "you typed list"
    assert (sandbox.seen["command"]["user_id"], sandbox.seen["command"]["user_name"]) == (FIONA, "fiona")
    assert sandbox.fake.ephemerals(VERA) == []
    changes = sandbox.get(f"/sandbox/changes?user={FIONA}&since=0")
    assert [m["text"] for m in changes["messages"] if m["kind"] == "ephemeral"] == ["you typed list"]
    assert sandbox.get(f"/sandbox/changes?user={VERA}&since=0")["messages"] == []


def test_a_command_in_the_direct_messages_comes_from_that_conversation(sandbox):
    sandbox.post("/sandbox/command", {"user": FIONA, "channel": "dm", "text": "/bill help"})

    wait_until(lambda: sandbox.fake.ephemerals(FIONA), 1, "the command's answer")
    assert sandbox.seen["command"]["channel_id"] == sandbox.fake.dm_channel(FIONA)
    assert sandbox.seen["command"]["channel_name"] == "directmessage"


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"user": FIONA, "channel": CHANNEL_ID, "text": "/deploy now"}, "/deploy is not a command here"),
        ({"user": "U0NOBODY1", "channel": CHANNEL_ID, "text": "/bill help"}, "choose a person first"),
        ({"user": FIONA, "channel": "C0ELSEWHERE", "text": "/bill help"}, "there is no such channel here"),
    ],
)
def test_a_command_that_slack_would_not_send_is_refused_and_nothing_reaches_the_app(sandbox, fields, error):
    status, answer = sandbox.post("/sandbox/command", fields)

    assert status == 400 and error in answer["error"]
    assert "command" not in sandbox.seen


def test_a_click_is_sent_as_the_button_the_app_drew_with_the_message_it_is_on(sandbox):
    bill = sandbox.client.chat_postMessage(channel=CHANNEL_ID, text="bill", blocks=BUTTONS)

    status, answer = sandbox.post("/sandbox/action", {
        "user": FIONA, "channel": CHANNEL_ID, "ts": bill["ts"], "block": 1, "element": 0})

    assert (status, answer["delivered"]) == (200, True)
    click = sandbox.seen["click"]
    [action] = click["actions"]
    assert (action["action_id"], action["value"], action["block_id"], action["style"]) == (
        "approve", "bill:7:3", "bill_actions", "primary")
    assert click["message"]["ts"] == bill["ts"] and click["message"]["blocks"] == BUTTONS
    assert (click["user"]["id"], click["channel"]["id"], click["container"]["is_ephemeral"]) == (
        FIONA, CHANNEL_ID, False)
    [note] = wait_until(lambda: sandbox.fake.ephemerals(FIONA, CHANNEL_ID), 1, "the click's answer")
    assert note["text"] == "approved"


def test_a_click_on_something_that_is_not_a_button_is_refused(sandbox):
    bill = sandbox.client.chat_postMessage(channel=CHANNEL_ID, text="bill", blocks=BUTTONS)

    status, answer = sandbox.post("/sandbox/action", {
        "user": FIONA, "channel": CHANNEL_ID, "ts": bill["ts"], "block": 0, "element": 5})

    assert status == 400 and answer["error"] == "that button is not there any more"
    assert "click" not in sandbox.seen


def test_a_modal_opened_by_a_click_is_shown_to_the_clicker_and_its_submission_answered(sandbox):
    bill = sandbox.client.chat_postMessage(channel=CHANNEL_ID, text="bill", blocks=BUTTONS)
    sandbox.post("/sandbox/action", {"user": FIONA, "channel": CHANNEL_ID, "ts": bill["ts"], "block": 1, "element": 1})
    [modal] = wait_until(lambda: [m for m in [sandbox.fake.modal(FIONA)] if m], 1, "the modal")
    assert sandbox.fake.modal(VERA) is None

    _, refused = sandbox.post("/sandbox/submit", {
        "user": FIONA, "view_id": modal["id"], "values": {"why": {"text": "no"}}})
    _, accepted = sandbox.post("/sandbox/submit", {
        "user": FIONA, "view_id": modal["id"], "values": {"why": {"text": "Customer disputes it."}}})

    assert refused == {"ok": True, "closed": False, "errors": {"why": "Say a little more."}}
    assert accepted == {"ok": True, "closed": True} and sandbox.fake.modal(FIONA) is None
    assert sandbox.seen["submitted"]["private_metadata"] == "bill:7:3"
    assert sandbox.seen["submitted"]["state"]["values"]["why"]["text"] == {
        "type": "plain_text_input", "value": "Customer disputes it."}


def test_opening_the_home_tab_tells_the_app_which_publishes_it(sandbox):
    status, answer = sandbox.post("/sandbox/home", {"user": VERA})

    assert (status, answer["delivered"]) == (200, True)
    assert (sandbox.seen["home_opened"]["user"], sandbox.seen["home_opened"]["tab"]) == (VERA, "home")
    [home] = wait_until(lambda: [v for v in [sandbox.fake.home_view(VERA)] if v], 1, "the Home tab")
    assert home["blocks"] == BUTTONS
    changes = sandbox.get(f"/sandbox/changes?user={VERA}&since=0")
    assert changes["home"]["id"] == home["id"]


def test_an_app_that_does_not_answer_within_three_seconds_leaves_slackbots_note():
    answered = threading.Event()

    def silent(environ, start_response):
        answered.wait(10)  # held until the page has given up
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b""]

    with FakeSlack() as fake, serve_wsgi(silent) as base_url:
        fake.add_user(FIONA, name="fiona")
        page = SandboxPage(fake)
        page.connect(base_url)
        try:
            answer = page.command({"user": FIONA, "channel": CHANNEL_ID, "text": "/bill list"})
        finally:
            answered.set()

        [note] = fake.ephemerals(FIONA, CHANNEL_ID)
    assert answer == {"delivered": False}
    assert (note["user"], note["text"]) == ("USLACKBOT", '/bill failed with the error "operation_timeout"')


def test_the_event_stream_says_which_run_it_is_and_announces_each_change(sandbox):
    origin = urlsplit(sandbox.fake.origin)
    stream = http.client.HTTPConnection(origin.hostname, origin.port, timeout=10)
    stream.request("GET", "/sandbox/events")
    events = stream.getresponse()

    def next_event() -> tuple[str, str]:
        """The next server-sent event: its name ("message" unless named) and its data."""
        name, data = "message", None
        while True:
            line = events.fp.readline().decode().rstrip("\n")
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = line.removeprefix("data: ")
            elif not line and data is not None:
                return name, data

    try:
        assert events.headers["Content-Type"] == "text/event-stream"
        assert next_event() == ("hello", sandbox.get("/sandbox/workspace")["instance"])
        name, first = next_event()
        sandbox.client.chat_postMessage(channel=CHANNEL_ID, text="bill")
        assert int(next_event()[1]) > int(first) == 0 and name == "message"
    finally:
        stream.close()


def test_the_page_and_its_files_are_served(sandbox):
    origin = urlsplit(sandbox.fake.origin)
    files = [("/", "text/html"), ("/static/sandbox.js", "text/javascript"), ("/static/sandbox.css", "text/css")]
    for path, kind in files:
        connection = http.client.HTTPConnection(origin.hostname, origin.port, timeout=10)
        connection.request("GET", path)
        answer = connection.getresponse()
        assert answer.status == 200 and answer.headers["Content-Type"].startswith(kind) and answer.read()
        connection.close()


@pytest.mark.parametrize(
    ("path", "fields", "error"),
    [
        ("/sandbox/message", {"user": FIONA, "channel": CHANNEL_ID, "text": "hi", "thread_ts": {"x": 1}},
         "that thread is not in this conversation"),
        ("/sandbox/message", {"user": FIONA, "channel": CHANNEL_ID, "text": "  "}, "write something first"),
        ("/sandbox/action", {"user": FIONA, "channel": CHANNEL_ID, "ts": ["1"], "block": "x"}, "that message is gone"),
        ("/sandbox/action", {"user": FIONA, "view_id": "V0NOTHERE"}, "that view is closed"),
        ("/sandbox/submit", {"user": FIONA, "view_id": None, "values": "nothing"}, "that view is closed"),
        ("/sandbox/home", {"user": ["U0FIONA01"]}, "choose a person first"),
    ],
)
def test_a_request_no_page_would_send_is_refused_with_its_reason(sandbox, path, fields, error, capfd):
    status, answer = sandbox.post(path, fields)

    assert (status, answer) == (400, {"ok": False, "error": error})
    assert sandbox.fake.messages() == [] and "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize("query", [
    "user=U0FIONA01&channel=C0BILLS01&limit=lots",
    "user=U0FIONA01&channel=C0BILLS01&before=x",
    "user=U0FIONA01&channel=C0ELSEWHERE",
    "user=&channel=C0BILLS01",
])
def test_a_read_no_page_would_make_is_refused(sandbox, query):
    origin = urlsplit(sandbox.fake.origin)
    connection = http.client.HTTPConnection(origin.hostname, origin.port, timeout=10)
    connection.request("GET", f"/sandbox/conversation?{query}")
    answer = connection.getresponse()

    assert answer.status == 400 and json.loads(answer.read())["ok"] is False
    connection.close()


def test_a_body_that_is_not_json_is_refused(sandbox):
    origin = urlsplit(sandbox.fake.origin)
    connection = http.client.HTTPConnection(origin.hostname, origin.port, timeout=10)
    connection.request("POST", "/sandbox/command", body=b"text=/bill help", headers={"Content-Type": "text/plain"})
    answer = connection.getresponse()

    assert (answer.status, json.loads(answer.read())["error"]) == (400, "the request is not JSON")
    connection.close()
