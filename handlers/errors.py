"""The one error handler: domain errors become an ephemeral message, anything else is logged with an id."""

from __future__ import annotations

import logging
import uuid

from slack_sdk.errors import SlackApiError

from bot.errors import BillProcessError

log = logging.getLogger(__name__)


def message_for(error: Exception) -> str:
    if isinstance(error, BillProcessError):
        return f":warning: {error}"
    error_id = uuid.uuid4().hex[:8]
    log.error("unexpected error %s", error_id, exc_info=error)
    return f":x: Something went wrong on our side (error `{error_id}`). Please try again, or quote the error id."


def tell(body: dict, respond, client, text: str) -> None:
    """Show `text` to the person whose request failed, only to them."""
    user_id = (body.get("user") or {}).get("id") or body.get("user_id") or (body.get("event") or {}).get("user")
    try:
        if body.get("response_url") or body.get("response_urls"):
            respond(text=text, response_type="ephemeral", replace_original=False)
        elif user_id:
            # A modal or an event has no response_url: the app's DM with the person is the place.
            client.chat_postMessage(channel=user_id, text=text)
    except SlackApiError:
        log.warning("could not tell %s about an error", user_id, exc_info=True)


def register(app) -> None:
    @app.error
    def handle_error(error, body, respond, client):
        tell(body, respond, client, message_for(error))
