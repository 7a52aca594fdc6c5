"""Every Slack message caused by a change, sent after the change has committed.

Bills are posted to BILLS_CHANNEL once; after each action the bill's message is updated in place, the
action is posted in the bill's thread (its history) and the App Home of the people concerned is
refreshed. Slack failures here are logged, never raised: the change they report has already happened.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from slack_sdk.web import SlackResponse
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.blocks.bill import Team, action_reply, bill_message
from bot.bills import get_bill
from bot.errors import NotFound
from bot.home import home_view
from bot.periods import Period
from bot.settings import Settings
from bot.workflow import approval_state
from db.models import ActionType, Bill, BillAction, Role, User

log = logging.getLogger(__name__)

# Slack answers with these when the message the bill points to is gone; the bill is posted anew.
MESSAGE_GONE = frozenset({"message_not_found", "cant_update_message"})
# Updates of one bill are serialised so that the last chat.update shows the latest state.
LOCK_STRIPES = 64
SlackFailure = (SlackClientError, OSError)


def slack_client(settings: Settings) -> WebClient | None:
    """A Web API client for SLACK_API_URL that waits out rate limits; None without SLACK_BOT_TOKEN."""
    if settings.slack_bot_token is None:
        return None
    return WebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url,
        retry_handlers=[ConnectionErrorRetryHandler(max_retry_count=2), RateLimitErrorRetryHandler(max_retry_count=3)],
    )


def _failure(error: Exception) -> str:
    """What went wrong, without the request (which carries the token)."""
    if isinstance(error, SlackApiError):
        return str(error.response.get("error"))
    return type(error).__name__


class Notifier:
    """Tells Slack about bills. Without a client (Slack not configured) every method does nothing."""

    def __init__(
        self,
        *,
        client: WebClient | None,
        sessions: sessionmaker[Session],
        settings: Settings,
        home_delay: float | None = None,
    ):
        """`home_delay`: when set, App Home refreshes wait that many seconds and are coalesced, so that a
        burst of changes republishes each Home once, not once per change; None refreshes at once."""
        self.client = client
        self.sessions = sessions
        self.settings = settings
        self.home_delay = home_delay
        self._stripes = [threading.Lock() for _ in range(LOCK_STRIPES)]
        self._homes_lock = threading.Lock()
        self._homes_due: dict[str, None] = {}  # ordered: the actor's Home first
        self._homes_timer: threading.Timer | None = None

    @classmethod
    def from_settings(cls, settings: Settings, sessions: sessionmaker[Session]) -> Notifier:
        return cls(client=slack_client(settings), sessions=sessions, settings=settings)

    # --- the public API ------------------------------------------------------------------------------

    def bills_created(self, period: Period) -> int:
        """Post every bill of `period` that has no Slack message yet; returns how many were posted."""
        if self.client is None:
            return 0
        if not self.settings.bills_channel:
            log.warning("BILLS_CHANNEL is not set: the bills of %s are not posted to Slack", period)
            return 0
        with self.sessions() as session:
            bill_ids = list(
                session.scalars(
                    select(Bill.id)
                    .where(Bill.year == period.year, Bill.month == period.month, Bill.slack_ts.is_(None))
                    .order_by(Bill.id)
                )
            )
        posted = 0
        for bill_id in bill_ids:
            with self._lock(bill_id):
                # Re-read each bill: it may have been posted (by an action on it) or changed meanwhile.
                bill, team = self._load(bill_id)
                if bill is None or bill.slack_ts is not None:
                    continue
                if self._post(bill, team) is not None:
                    posted += 1
        log.info("posted %d bill(s) of %s to %s", posted, period, self.settings.bills_channel)
        if bill_ids:
            # New bills change every Home (Finance's month, the approvers' queues): refresh them all once.
            with self.sessions() as session:
                everyone = _linked(_team(session))
            self._refresh_homes(everyone)
        return posted

    def bill_changed(self, bill_id: int, *, action_id: int | None = None) -> None:
        """Update the bill's message in place, post the action in its thread, refresh the Homes concerned.

        `action_id` is the action to post (the one the caller just took); by default the latest.
        """
        if self.client is None:
            return
        with self._lock(bill_id):
            bill, team = self._load(bill_id)
            if bill is None:
                log.warning("bill #%d changed but no longer exists", bill_id)
                return
            where = self._show(bill, team)
            action = self._action(bill, action_id)
            if where is not None and action is not None and action.action is not ActionType.DRAFT:
                text, blocks = action_reply(action, bill, approval_state(bill), team)
                self._call(self.client.chat_postMessage, bill.id, channel=where[0], thread_ts=where[1], text=text,
                           blocks=blocks)
            people = self._concerned(bill, action, team)
        self._refresh_homes(people)

    def refresh_message(self, bill_id: int) -> None:
        """Bring the bill's message up to date without a thread reply (after a click that came too late)."""
        if self.client is None:
            return
        with self._lock(bill_id):
            bill, team = self._load(bill_id)
            if bill is not None:
                self._show(bill, team)

    def refresh_home(self, slack_user_id: str) -> None:
        """Publish the person's App Home anew."""
        if self.client is None:
            return
        try:
            with self.sessions() as session:
                user = session.scalar(select(User).where(User.slack_user_id == slack_user_id))
                view = home_view(session=session, user=user, today=datetime.now(self.settings.zone).date())
        except Exception:
            # The change that asked for this refresh has committed; a stale Home must not report it as failed.
            log.exception("could not build the App Home of %s", slack_user_id)
            return
        self._call(self.client.views_publish, None, user_id=slack_user_id, view=view)

    # --- the steps -----------------------------------------------------------------------------------

    def _refresh_homes(self, slack_user_ids: list[str]) -> None:
        if self.home_delay is None:
            for slack_user_id in slack_user_ids:
                self.refresh_home(slack_user_id)
            return
        with self._homes_lock:
            self._homes_due.update(dict.fromkeys(slack_user_ids))
            if self._homes_timer is None:
                self._homes_timer = threading.Timer(self.home_delay, self._refresh_due_homes)
                self._homes_timer.daemon = True
                self._homes_timer.start()

    def _refresh_due_homes(self) -> None:
        with self._homes_lock:
            due, self._homes_due, self._homes_timer = list(self._homes_due), {}, None
        for slack_user_id in due:
            self.refresh_home(slack_user_id)

    def flush(self) -> None:
        """Publish the Homes still waiting for their coalescing delay (before the process stops)."""
        with self._homes_lock:
            if self._homes_timer is not None:
                self._homes_timer.cancel()
        self._refresh_due_homes()

    def _lock(self, bill_id: int) -> threading.Lock:
        return self._stripes[bill_id % LOCK_STRIPES]

    def _load(self, bill_id: int) -> tuple[Bill | None, Team]:
        """The bill with everything its messages show, and the linked people by role, read fresh."""
        with self.sessions() as session:
            try:
                bill = get_bill(session=session, bill_id=bill_id)
            except NotFound:
                return None, {}
            team = _team(session)
        return bill, team

    def _show(self, bill: Bill, team: Team) -> tuple[str, str] | None:
        """Update the bill's message, or post it when it has none (or it is gone); returns (channel, ts)."""
        if bill.slack_channel is None or bill.slack_ts is None:
            return self._post(bill, team)
        text, blocks = bill_message(bill, approval_state(bill), team)
        try:
            self.client.chat_update(channel=bill.slack_channel, ts=bill.slack_ts, text=text, blocks=blocks)
        except SlackApiError as error:
            if error.response.get("error") not in MESSAGE_GONE:
                self._log_failure("chat_update", bill.id, error)
                return bill.slack_channel, bill.slack_ts
            log.warning("the message of bill #%d is gone; posting it again", bill.id)
            return self._post(bill, team)
        except SlackFailure as error:
            self._log_failure("chat_update", bill.id, error)
        return bill.slack_channel, bill.slack_ts

    def _post(self, bill: Bill, team: Team) -> tuple[str, str] | None:
        """Post the bill's message to BILLS_CHANNEL and remember where it lives."""
        channel = self.settings.bills_channel
        if not channel:
            log.warning("BILLS_CHANNEL is not set: bill #%d is not posted to Slack", bill.id)
            return None
        text, blocks = bill_message(bill, approval_state(bill), team)
        response = self._call(self.client.chat_postMessage, bill.id, channel=channel, text=text, blocks=blocks)
        if response is None:
            return None
        where = (response["channel"], response["ts"])
        self._remember(bill, *where)
        return where

    def _remember(self, bill: Bill, channel: str, ts: str) -> None:
        """Store where the bill's message lives: only those two columns, not a change of the bill."""
        with self.sessions() as session, session.begin():
            stored = session.execute(
                update(Bill)
                .where(Bill.id == bill.id, _same(Bill.slack_ts, bill.slack_ts))
                # Naming updated_at keeps its on-update default from firing: the bill itself is unchanged.
                .values(slack_channel=channel, slack_ts=ts, updated_at=Bill.updated_at)
                .execution_options(synchronize_session=False)
            )
        if stored.rowcount == 0:
            log.warning("bill #%d was posted twice (another message was stored first)", bill.id)
        bill.slack_channel, bill.slack_ts = channel, ts

    def _action(self, bill: Bill, action_id: int | None) -> BillAction | None:
        if action_id is None:
            return bill.actions[-1] if bill.actions else None
        return next((action for action in bill.actions if action.id == action_id), None)

    def _concerned(self, bill: Bill, action: BillAction | None, team: Team) -> list[str]:
        """Slack users whose App Home the change may touch: who acted first, then every linked person.

        A change can take the bill off (or put it on) the Home of anyone who had it listed, so all of
        Finance, Customer Success and Sales are refreshed; the team is small and this runs after the ack.
        """
        people: list[str] = []
        if action is not None and action.stakeholder is not None and action.stakeholder.slack_user_id:
            people.append(action.stakeholder.slack_user_id)
        people += _linked(team)
        return list(dict.fromkeys(people))

    def _call(self, method: Callable[..., SlackResponse], bill_id: int | None, **arguments) -> dict | None:
        """Call a Web API method of the client; a failure is logged (without the token) and answers None."""
        try:
            return method(**arguments).data
        except SlackFailure as error:
            self._log_failure(method.__name__, bill_id, error)
            return None

    @staticmethod
    def _log_failure(method: str, bill_id: int | None, error: Exception) -> None:
        subject = f"bill #{bill_id}" if bill_id is not None else "App Home"
        api_method = method.replace("_", ".", 1)  # the client's chat_update is Slack's chat.update
        log.error("Slack %s for %s failed: %s", api_method, subject, _failure(error))


def _team(session: Session) -> dict[Role, list[User]]:
    """The linked people by role, each role by name."""
    team: dict[Role, list[User]] = defaultdict(list)
    for user in session.scalars(select(User).where(User.slack_user_id.is_not(None)).order_by(User.name)):
        team[user.role].append(user)
    return team


def _linked(team: Team) -> list[str]:
    """Every linked person's Slack user: Finance, then Customer Success, then Sales."""
    roles = (Role.FINANCE, Role.CUSTOMER_SUCCESS, Role.SALES)
    return [user.slack_user_id for role in roles for user in team.get(role, ()) if user.slack_user_id]


def _same(column, value):
    return column.is_(None) if value is None else column == value

