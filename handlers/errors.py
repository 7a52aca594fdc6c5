"""The one error handler: domain errors become an ephemeral message, anything else is logged with an id."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from bot import outbox
from bot.blocks.bill import already_done_text
from bot.errors import AlreadyDone, BillProcessError, SendUncertain

log = logging.getLogger(__name__)


def message_for(error: Exception) -> str:
    if isinstance(error, AlreadyDone):
        return f":warning: {already_done_text(error)}"
    if isinstance(error, BillProcessError):
        return f":warning: {error}"
    error_id = uuid.uuid4().hex[:8]
    log.error("unexpected error %s", error_id, exc_info=error)
    return f":x: Something went wrong on our side (error `{error_id}`). Please try again, or quote the error id."


def tell(client, slack_user_id: str | None, response_url: str | None, text: str) -> None:
    """Show `text` only to the person whose request failed: through its response_url, else their DM."""
    try:
        if response_url:
            WebhookClient(response_url).send(text=text, response_type="ephemeral", replace_original=False)
        elif slack_user_id:
            # A modal, an event or a Home tab button has no response_url: the app's DM is the place.
            client.chat_postMessage(channel=slack_user_id, text=text)
    except (SlackApiError, OSError):
        log.warning("could not tell %s about an error", slack_user_id, exc_info=True)


def clicked_in_home(body: dict) -> bool:
    """True when the request came from a button in the App Home tab."""
    return (body.get("view") or {}).get("type") == "home"


def report(
    services,
    client,
    slack_user_id: str | None,
    response_url: str | None,
    error: Exception,
    *,
    from_home: bool = False,
) -> None:
    """Tell the person what went wrong, at once (the request is still in hand); refresh what it showed."""
    tell(client, slack_user_id, response_url, message_for(error))
    try:
        services.queue(_refreshed(error, slack_user_id, from_home))
    except DBAPIError:
        log.warning("could not queue the refresh after a refusal: the database is unavailable")


def refuse(services, job_id: int, slack_user_id: str | None, response_url: str | None, error: Exception,
           *, from_home: bool = False) -> None:
    """A recorded job was refused: the answer to the person and the job's end commit together."""

    def write(session: Session) -> None:
        outbox.respond(session, slack_user_id, response_url, message_for(error))
        _refreshed(error, slack_user_id, from_home)(session)
        outbox.finish_job(session, job_id)

    services.queue(write)


def _refreshed(error: Exception, slack_user_id: str | None, from_home: bool) -> Callable[[Session], None]:
    """When someone else got there first, or an earlier send is not confirmed, the bill's message is shown as
    it is now; a refused click in the App Home also republishes that person's Home, so it stops offering
    what it refused."""

    def write(session: Session) -> None:
        if isinstance(error, (AlreadyDone, SendUncertain)) and error.bill_id is not None:
            outbox.refresh_bill(session, error.bill_id)
        if from_home and slack_user_id and isinstance(error, BillProcessError):
            outbox.refresh_home(session, slack_user_id)

    return write


def register(app) -> None:
    @app.error
    def handle_error(error, body, client, context):
        user_id = (body.get("user") or {}).get("id") or body.get("user_id") or (body.get("event") or {}).get("user")
        services = context["services"]
        report(services, client, user_id, body.get("response_url"), error, from_home=clicked_in_home(body))
