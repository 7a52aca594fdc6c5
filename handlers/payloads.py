"""The shape of what Slack sends, checked before Bolt or a listener reads it.

Bolt and the listeners index into a payload the way Slack documents it (`body["actions"][0]`,
`body["user"]["id"]`, `"id" in body["team"]`), so a signed payload of another shape would fail
there with a traceback. The models below name the fields that are read, with the types Slack sends;
every other field passes unread.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict, Field, ValidationError

# What the app stores or looks up, in the form Slack sends it: a user "U012AB3CD" (users.slack_user_id holds
# 32 characters), an event "Ev0123ABCD" (slack_events.event_id holds 64), a response URL to post to.
SlackUserId = Annotated[str, Field(pattern=r"^[A-Z0-9]{1,32}$")]
EventId = Annotated[str, Field(pattern=r"^[A-Za-z0-9]{1,64}$")]
Url = Annotated[str, Field(pattern=r"^https?://[^\x00-\x20]+$")]


class MalformedPayload(ValueError):
    """The body is not a payload Slack sends; the message says what is wrong without repeating the body."""


class _Shape(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class Reference(_Shape):
    """An object that names a user, team, enterprise or channel by its id."""

    id: str | None = None
    team_id: str | None = None


class Identified(Reference):
    """A reference that must carry its id: the person who clicked or submitted."""

    id: SlackUserId


class Located(_Shape):
    """The fields Bolt reads, at every level it looks into, to find the workspace, the person and the channel."""

    type: str | None = None
    user: str | Reference | None = None
    user_id: str | None = None
    team: str | Reference | None = None
    team_id: str | None = None
    enterprise: str | Reference | None = None
    enterprise_id: str | None = None
    channel: str | Reference | None = None
    channel_id: str | None = None
    thread_ts: str | None = None
    authorizations: list[Located] | None = None
    message: Located | None = None
    previous_message: Located | None = None
    item: Located | None = None
    assistant_thread: Located | None = None
    function_execution_id: str | None = None
    bot_access_token: str | None = None


class Event(Located):
    type: str


class AppHomeOpened(Event):
    user: SlackUserId
    tab: str | None = None


class InputValue(_Shape):
    value: str | None = None


class ViewState(_Shape):
    values: dict[str, dict[str, InputValue]] = {}


class View(_Shape):
    type: str | None = None
    team_id: str | None = None
    app_installed_team_id: str | None = None
    callback_id: str | None = None
    private_metadata: str | None = None
    state: ViewState | None = None


class Action(_Shape):
    action_id: str
    block_id: str | None = None
    value: str | None = None


class ResponseUrl(_Shape):
    response_url: Url | None = None


class Payload(Located):
    """Any request: what Bolt reads before it knows what kind of request it is."""

    event: Located = None  # absent or an object, never null: Bolt reads body.get("event", {}).get(...)
    view: View | None = None
    actions: list[Action] | None = None
    callback_id: str | None = None
    command: str | None = None
    response_url: Url = None  # absent or a URL: a listener responds to it
    response_urls: list[ResponseUrl] = None  # absent or a list: Bolt reads len(body["response_urls"])
    trigger_id: str | None = None
    is_enterprise_install: bool | str | None = None
    event_id: EventId | None = None


class SlashCommand(Payload):
    command: str
    user_id: SlackUserId
    text: str = ""


class BlockActions(Payload):
    user: Identified
    actions: Annotated[list[Action], Field(min_length=1)]


class LegacyCallback(Payload):
    """Older interactive payloads, which Bolt's action matchers read by callback_id."""

    callback_id: str


class AttachmentAction(LegacyCallback):
    actions: Annotated[list[Action], Field(min_length=1)]


class WorkflowStepEdit(LegacyCallback):
    workflow_step: dict


class SubmittedView(View):
    type: Literal["modal"]  # Bolt reads a "workflow_step" view as a step of a workflow, which this app has none of
    callback_id: str


class ViewPayload(Payload):
    user: Identified
    view: SubmittedView


class EventCallback(Payload):
    event: Event
    event_id: EventId


class AppHomeOpenedCallback(EventCallback):
    event: AppHomeOpened


_BY_TYPE: dict[str, type[Payload]] = {
    "block_actions": BlockActions,
    "interactive_message": AttachmentAction,
    "dialog_submission": LegacyCallback,
    "dialog_cancellation": LegacyCallback,
    "workflow_step_edit": WorkflowStepEdit,
    "view_submission": ViewPayload,
    "view_closed": ViewPayload,
    "event_callback": EventCallback,
}
_BY_EVENT_TYPE: dict[str, type[EventCallback]] = {"app_home_opened": AppHomeOpenedCallback}


def _model_for(body: dict) -> type[Payload]:
    if "command" in body:  # as Bolt tells a slash command
        return SlashCommand
    kind = body.get("type")
    model = _BY_TYPE.get(kind, Payload) if isinstance(kind, str) else Payload
    event = body.get("event")
    if model is EventCallback and isinstance(event, dict) and isinstance(event.get("type"), str):
        return _BY_EVENT_TYPE.get(event["type"], EventCallback)
    return model


def read_payload(text: str, content_type: str | None) -> dict:
    """The payload of a request body as Bolt reads it, once its shape is known to be Slack's.

    JSON when the content type says so or the body starts with "{"; otherwise form fields, with the
    JSON of a `payload` field when there is one. (Bolt itself takes any form body that merely contains
    the word "payload", say in a command's text, for an empty one; this reads the field.)
    """
    try:
        if content_type == "application/json" or text.startswith("{"):
            body = json.loads(text)
        else:
            fields = dict(parse_qsl(text, keep_blank_values=True))
            body = json.loads(fields["payload"]) if "payload" in fields else fields
    except RecursionError:
        raise MalformedPayload("the payload is nested too deeply") from None
    except ValueError:
        raise MalformedPayload("the payload is not valid JSON") from None
    if not isinstance(body, dict):
        raise MalformedPayload(f"the payload is {_json_kind(body)}, not an object")
    try:
        _model_for(body).model_validate(body)
    except ValidationError as error:
        raise MalformedPayload(_describe(error)) from None
    return body


def _describe(error: ValidationError) -> str:
    """Which of the payload's fields are wrong, by name: the values are not repeated."""
    fields = list(dict.fromkeys(str(problem["loc"][0]) for problem in error.errors(include_input=False, include_url=False)))
    verb = "is" if len(fields) == 1 else "are"
    return f"the payload's {', '.join(fields)} {verb} not shaped as Slack sends {'it' if len(fields) == 1 else 'them'}"


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list"
