"""The one error handler: domain errors become an ephemeral message, anything else is logged with an id."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

from slack_bolt import BoltResponse
from slack_bolt.error import BoltUnhandledRequestError
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient
from sqlalchemy import exc
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from bot import outbox
from bot.blocks import escape
from bot.blocks.bill import already_done_text
from bot.errors import AlreadyDone, BillProcessError, SendUncertain
from handlers.verification import Replayed, replayed

log = logging.getLogger(__name__)

DATABASE_UNAVAILABLE = (
    ":hourglass: The database is unavailable right now, so this could not be done. Please try again in a minute."
)


class OutageLog:
    """Logs that the database is unavailable once per outage, however many requests fail on it meanwhile.

    An outage is over once no request has failed on it for `quiet_seconds`.
    """

    def __init__(self, quiet_seconds: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.quiet_seconds = quiet_seconds
        self.clock = clock
        self._last_failure: float | None = None
        self._lock = threading.Lock()

    def failed(self, error: Exception) -> None:
        now = self.clock()
        with self._lock:
            new = self._last_failure is None or now - self._last_failure > self.quiet_seconds
            self._last_failure = now
        if new:
            # The driver's own words, first line only: SQLAlchemy's text repeats the statement and its values.
            cause = getattr(error, "orig", None) or error
            words = str(cause).strip()
            reason = words.splitlines()[0] if words else type(cause).__name__
            log.error("the database is unavailable (%s); requests fail until it is back", reason)


database_outage = OutageLog()


def is_database_outage(error: Exception) -> bool:
    """True for the database being down, unreachable, restarting or too busy: worth trying again later."""
    if isinstance(error, (exc.OperationalError, exc.InterfaceError, exc.TimeoutError)):
        return True
    return isinstance(error, exc.DBAPIError) and error.connection_invalidated


def message_for(error: Exception) -> str:
    """What the person is told; domain errors are plain text, escaped here for Slack's mrkdwn."""
    if isinstance(error, AlreadyDone):
        return f":warning: {already_done_text(error)}"
    if isinstance(error, BillProcessError):
        return f":warning: {escape(str(error))}"
    if is_database_outage(error):
        database_outage.failed(error)
        return DATABASE_UNAVAILABLE
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
    except (SlackApiError, OSError) as failure:
        log.warning("could not tell %s about an error: %s", slack_user_id, failure)


def clicked_in_home(body: dict) -> bool:
    """True when the request came from a button in the App Home tab."""
    view = body.get("view")
    return isinstance(view, dict) and view.get("type") == "home"


def requester(body: dict) -> str | None:
    """The Slack user a request comes from, wherever its kind of payload names them."""
    for holder in (body, body.get("event")):
        if not isinstance(holder, dict):
            continue
        user = holder.get("user")
        if isinstance(user, dict):
            user = user.get("id")
        found = user or holder.get("user_id")
        if isinstance(found, str) and found:
            return found
    return None


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
        if not outbox.finish_job(session, job_id):
            return  # the job's change had finished it (or another worker): nothing was refused
        outbox.respond(session, slack_user_id, response_url, message_for(error))
        _refreshed(error, slack_user_id, from_home)(session)

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
        if isinstance(error, Replayed):
            return replayed()
        if isinstance(error, BoltUnhandledRequestError):
            # Bolt would log the whole body; a request no listener takes is answered 404, as Bolt does.
            log.warning("no listener takes a %s request", _kind(body))
            return
        response_url = body.get("response_url") if isinstance(body.get("response_url"), str) else None
        services = context.get("services")
        if services is None:  # it failed before the app's own middleware ran
            tell(client, requester(body), response_url, message_for(error))
        else:
            report(services, client, requester(body), response_url, error, from_home=clicked_in_home(body))
        if is_database_outage(error):
            # Before an acknowledgement (a middleware's query), Slack then shows the request failed, and retries events.
            return BoltResponse(status=503, body="")
        return None


def _kind(body: dict) -> str:
    event = body.get("event")
    kind = body.get("command") or body.get("type") or "untyped"
    if isinstance(event, dict) and event.get("type"):
        kind = f"{kind} {event['type']}"
    return str(kind)[:60]
