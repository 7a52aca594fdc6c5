"""Who is clicking: the account linked to a Slack user, linking by profile email when that is enabled."""

from __future__ import annotations

import logging

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot import linking
from bot.errors import NotAllowed
from db.models import User

log = logging.getLogger(__name__)

NOT_LINKED = (
    "Your Slack user is not linked to a BillProcess account yet. Ask an operator for a one-time code "
    "(`billprocess users invite NAME`) and type `/bill link CODE`."
)


def current_user(services, client: WebClient, slack_user_id: str) -> User | None:
    """The caller's account, or None; links by matching email first when LINK_BY_EMAIL is on."""
    with services.sessions() as session:
        user = linking.user_for_slack(session=session, slack_user_id=slack_user_id)
    if user is not None or not services.settings.link_by_email:
        return user
    email = _profile_email(client, slack_user_id)
    if not email:
        return None
    with services.sessions() as session:
        user = linking.link_by_email(session=session, slack_user_id=slack_user_id, email=email)
    if user is not None:
        log.info("linked Slack user %s to %s by profile email", slack_user_id, user.name)
    return user


def linked_user(services, client: WebClient, slack_user_id: str) -> User:
    """The caller's account; an unlinked caller is told how to link."""
    user = current_user(services, client, slack_user_id)
    if user is None:
        raise NotAllowed(NOT_LINKED)
    return user


def _profile_email(client: WebClient, slack_user_id: str) -> str | None:
    try:
        profile = client.users_info(user=slack_user_id)["user"].get("profile", {})
    except SlackApiError as error:
        log.warning("users.info for %s failed: %s", slack_user_id, error.response.get("error"))
        return None
    return profile.get("email")
