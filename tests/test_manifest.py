"""manifest.yml: valid against Slack's manifest schema, and asking for exactly the bot scopes the code needs.

The scopes the code needs are derived here from its source: every Web API method called in bot/ and
handlers/ is looked up in SCOPES_BY_METHOD, so a new call whose scope is missing from the manifest (or
a method missing from the table) fails this test.
"""

from __future__ import annotations

import ast
import inspect
import json
from functools import cache
from pathlib import Path

import jsonschema
import pytest
import yaml
from slack_sdk import WebClient
from slack_sdk.web.base_client import BaseClient

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "manifest.yml"
# CI clones the repository with the shared folder beside it.
SCHEMA = Path(__file__).resolve().parents[2] / "shared" / "slack" / "manifest.schema.1.0.0.json"
SOURCE_DIRS = ("bot", "handlers")
EVENTS_URL = "https://billprocess.example.com/slack/events"

# The bot scopes each Web API method needs (Slack's method reference, "Required scopes"), keyed by the
# slack_sdk WebClient method name. An empty set: the method needs no scope.
SCOPES_BY_METHOD: dict[str, set[str]] = {
    "auth_test": set(),
    "chat_postMessage": {"chat:write"},
    "chat_update": {"chat:write"},
    "chat_postEphemeral": {"chat:write"},
    "chat_delete": {"chat:write"},
    "chat_scheduleMessage": {"chat:write"},
    "chat_getPermalink": set(),
    "views_open": set(),
    "views_update": set(),
    "views_push": set(),
    "views_publish": set(),
    # The app only opens 1:1 DMs (mpim:write would be for group DMs).
    "conversations_open": {"im:write"},
    # Looking up a message whose post's outcome is unknown, by its metadata: in the bills channel (public
    # or private) and in DMs (reminders, answers).
    "conversations_history": {"channels:history", "groups:history", "im:history"},
    "conversations_replies": {"channels:history", "groups:history", "im:history"},
    # Socket Mode's connection URL: the app-level token's connections:write, not a bot scope.
    "apps_connections_open": set(),
    # The app reads the profile email from users.info (LINK_BY_EMAIL), which needs users:read.email too.
    "users_info": {"users:read", "users:read.email"},
    "users_lookupByEmail": {"users:read", "users:read.email"},
    # files_upload_v2 = files.getUploadURLExternal + upload + files.completeUploadExternal.
    "files_upload_v2": {"files:write"},
    "files_getUploadURLExternal": {"files:write"},
    "files_completeUploadExternal": {"files:write"},
}
# Bolt's say() posts with chat.postMessage; respond() and ack() use the response_url / HTTP answer.
SCOPES_BY_BOLT_UTILITY: dict[str, set[str]] = {"say": {"chat:write"}}
# Registering a slash command listener needs the `commands` scope.
SCOPES_BY_LISTENER: dict[str, set[str]] = {"command": {"commands"}}


@cache
def web_api_method_names() -> frozenset[str]:
    """Every Web API method slack_sdk's WebClient offers (chat_postMessage, files_upload_v2, ...)."""
    client_methods = {name for name, _ in inspect.getmembers(WebClient, inspect.isfunction)}
    base_methods = {name for name, _ in inspect.getmembers(BaseClient, inspect.isfunction)}
    return frozenset(name for name in client_methods - base_methods if not name.startswith("_"))


def source_files() -> list[Path]:
    return sorted(path for folder in SOURCE_DIRS for path in (REPO / folder).rglob("*.py"))


def _call_name(node: ast.Call) -> str | None:
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    if isinstance(node.func, ast.Name):
        return node.func.id
    return None


def _first_string_argument(node: ast.Call) -> str | None:
    if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
        return node.args[0].value
    for keyword in node.keywords:
        if keyword.arg == "api_method" and isinstance(keyword.value, ast.Constant):
            return keyword.value.value
    return None


def _web_api_method_named(text: str) -> str | None:
    """The WebClient method a string names exactly ("chat.postMessage" or "chat_postMessage"), if any."""
    name = text.replace(".", "_") if "." in text else text
    return name if name in web_api_method_names() else None


def calls_in(source: str, where: str, found: dict[str, set[str]]) -> None:
    """Add what `source` calls (Web API methods, Bolt's say, listener kinds) to `found`, noting where.

    A Web API method counts as used when the code names it as an attribute, called or handed on
    (client.chat_update(...), helper(client.chat_update, ...)), or in a string (api_call("chat.update"),
    getattr(client, "chat_update")), so that calls through a helper or by name are not missed.
    """
    web_api = web_api_method_names()
    for node in ast.walk(ast.parse(source, filename=where)):
        name = None
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            name = _web_api_method_named(node.value)
        elif isinstance(node, ast.Attribute) and node.attr in web_api:
            name = node.attr
        elif isinstance(node, ast.Call):
            called = _call_name(node)
            if called == "api_call" and _first_string_argument(node) is None:
                name = "api_call(<a method name that is not a literal>)"
            elif isinstance(node.func, ast.Name) and called in SCOPES_BY_BOLT_UTILITY:
                name = called
            elif isinstance(node.func, ast.Attribute) and called in SCOPES_BY_LISTENER:
                name = f"listener:{called}"
        if name is not None:
            found.setdefault(name, set()).add(where)


@cache
def calls_in_source() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in source_files():
        calls_in(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)), found)
    return found


def scopes_the_code_needs() -> set[str]:
    needed: set[str] = set()
    unknown = []
    for name, files in sorted(calls_in_source().items()):
        if name.startswith("listener:"):
            needed |= SCOPES_BY_LISTENER[name.removeprefix("listener:")]
        elif name in SCOPES_BY_BOLT_UTILITY:
            needed |= SCOPES_BY_BOLT_UTILITY[name]
        elif name in SCOPES_BY_METHOD:
            needed |= SCOPES_BY_METHOD[name]
        else:
            unknown.append(f"{name} (in {', '.join(sorted(files))})")
    assert not unknown, (
        "Web API methods without an entry in SCOPES_BY_METHOD; look up their required bot scopes "
        f"and add them: {'; '.join(unknown)}"
    )
    return needed


@pytest.fixture(scope="module")
def manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def schema() -> dict:
    if not SCHEMA.is_file():
        pytest.fail(
            f"Slack's manifest schema is missing: expected {SCHEMA} (the shared folder is cloned beside "
            "the repository as ../shared)",
            pytrace=False,
        )
    return json.loads(SCHEMA.read_text(encoding="utf-8"))


def test_manifest_is_valid_against_slacks_schema(manifest, schema):
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = sorted(validator_class(schema).iter_errors(manifest), key=lambda error: list(error.path))
    assert not errors, "manifest.yml does not match Slack's schema:\n" + "\n".join(
        f"  {'/'.join(map(str, error.path)) or '(top)'}: {error.message}" for error in errors
    )
    assert manifest["_metadata"]["major_version"] == 1


def test_the_bill_command_reaches_the_app(manifest):
    commands = {command["command"]: command for command in manifest["features"]["slash_commands"]}
    assert set(commands) == {"/bill"}
    bill = commands["/bill"]
    assert bill["url"] == EVENTS_URL
    assert bill["description"] and bill["usage_hint"]
    assert bill["should_escape"] is False


def test_home_tab_and_app_home_opened(manifest):
    app_home = manifest["features"]["app_home"]
    assert app_home["home_tab_enabled"] is True
    assert app_home["messages_tab_enabled"] is True  # the app's direct messages appear there
    assert app_home["messages_tab_read_only_enabled"] is True
    assert manifest["features"]["bot_user"]["display_name"] == "BillProcess"
    events = manifest["settings"]["event_subscriptions"]
    assert events["bot_events"] == ["app_home_opened"]
    assert events["request_url"] == EVENTS_URL


def test_socket_mode_and_interactivity(manifest):
    settings = manifest["settings"]
    assert settings["socket_mode_enabled"] is True
    assert settings["interactivity"] == {"is_enabled": True, "request_url": EVENTS_URL}
    assert settings["token_rotation_enabled"] is False
    assert settings["org_deploy_enabled"] is False


def test_bot_scopes_are_exactly_what_the_code_calls_for(manifest):
    granted = manifest["oauth_config"]["scopes"]["bot"]
    assert len(granted) == len(set(granted)), "a scope is listed twice"
    needed = scopes_the_code_needs()
    assert set(granted) == needed, (
        f"missing from manifest.yml: {sorted(needed - set(granted))}; "
        f"not needed by the code: {sorted(set(granted) - needed)}"
    )
    assert "user" not in manifest["oauth_config"]["scopes"], "the app acts only as its bot"


def test_every_event_the_app_listens_to_is_subscribed(manifest):
    listened = set()
    for path in source_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and _call_name(node) == "event" and isinstance(node.func, ast.Attribute):
                event = _first_string_argument(node)
                if event:
                    listened.add(event)
    assert listened <= set(manifest["settings"]["event_subscriptions"]["bot_events"])


def test_the_scan_finds_web_api_methods_however_the_code_names_them():
    found: dict[str, set[str]] = {}
    calls_in(
        '"""Posts with chat.update."""\n'
        "client.chat_postMessage(channel='C1', text='hi')\n"
        "self.client.files_upload_v2(channel='D1', file=b'x')\n"
        "client.api_call('conversations.open', params={'users': 'U1'})\n"
        "self._call('views.publish', None, user_id='U1', view={})\n"
        "self._call(self.client.views_update, None, view_id='V1', view={})\n"
        "getattr(client, 'users_info')(user='U1')\n"
        "say('hello')\n"
        "@app.command('/bill')\n"
        "def bill(ack):\n"
        "    ack()\n"
        "# client.views_open(...) in a comment is not a call\n",
        "example.py",
        found,
    )
    assert set(found) == {
        "chat_postMessage", "files_upload_v2", "conversations_open", "views_publish", "views_update",
        "users_info", "say", "listener:command",
    }
    assert set(SCOPES_BY_METHOD) <= web_api_method_names(), "SCOPES_BY_METHOD names a method WebClient lacks"
