"""Delivery workers: read the outbox after the commit and do what each row asks, once.

Each worker thread claims one row at a time. A claim is a lease (`claimed_by`, `claimed_until`) that the
process renews while it lives; rows of a lane wait for the lane's earlier rows, so one bill's updates
reach Slack in commit order. On PostgreSQL claims take `FOR UPDATE SKIP LOCKED`, so any number of
workers on any number of hosts share one outbox; SQLite serialises them with its write lock.

Slack failures are handled as Slack documents them: HTTP 5xx, timeouts and connection errors are
retried with backoff; a 429 waits for its Retry-After and holds back only that method (and channel);
a permanent error marks the row failed, logs it once and shows it to Finance. A post whose outcome is
unknown (the process died, or the answer never came) is looked up by its message metadata before it is
posted again, so each message exists once.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web import SlackResponse
from slack_sdk.webhook import WebhookClient
from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, aliased, sessionmaker

from bot import approval, outbox
from bot.bills import get_bill
from bot.blocks.bill import action_reply, bill_message
from bot.blocks.commands import generation_text
from bot.blocks.home import reminder_message
from bot.errors import NotFound
from bot.home import home_view, reminders_due
from bot.periods import Period
from bot.settings import Settings
from bot.team import linked, load_team
from db.models import Bill, Outbox, OutboxKind, OutboxStatus, User, utcnow

log = logging.getLogger(__name__)

# ok=false errors that say Slack failed, not the request: retried like a 5xx.
TRANSIENT_ERRORS = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout"})
# chat.update's answers when the message the bill points to is gone: the bill is posted anew.
MESSAGE_GONE = frozenset({"message_not_found", "cant_update_message"})
METADATA_TYPE = "billprocess_message"
# Rows that still fail after about this long are given up (marked failed and shown to Finance).
GIVE_UP_AFTER = timedelta(hours=24)
BACKOFF_DOUBLINGS = 16  # the backoff doubles from 1 s at most this often before its ceiling
# A rate-limited row is released a moment after its hold is set; waking this much later finds it due.
HELD_MARGIN = 0.02
HISTORY_PAGES = 10  # pages of 200 messages searched for a post whose outcome is unknown
# A thread whose method is rate limited for at most this long waits with its row instead of putting it back.
MAX_HOLD_SECONDS = 2.0


class Retry(Exception):
    """Try the row again later; `unknown` when the call may have reached Slack."""

    def __init__(self, reason: str, *, delay: float | None = None, unknown: bool = False, quiet: bool = False):
        super().__init__(reason)
        self.reason, self.delay, self.unknown, self.quiet = reason, delay, unknown, quiet


class Permanent(Exception):
    """Slack refused the call for good (a wrong channel, a revoked token): the row fails."""


@dataclass(frozen=True)
class Posted:
    channel: str
    ts: str


JobRunner = Callable[[Outbox], None]


def delivery_client(settings: Settings) -> WebClient:
    """A Web API client that fails fast: retries and rate limits are the outbox's to handle."""
    assert settings.slack_bot_token is not None
    return WebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url,
        timeout=settings.slack_timeout_seconds,
        retry_handlers=[],
    )


def metadata(row: Outbox, **fields) -> dict:
    """The message metadata that finds this row's message again when its outcome is unknown."""
    return {"event_type": METADATA_TYPE, "event_payload": {"outbox_id": row.id, **fields}}


class Delivery:
    """The delivery workers of one process: `start()` them, `stop()` them; `drain()` works in the caller."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        settings: Settings,
        client: WebClient | None = None,
        jobs: JobRunner | None = None,
        threads: int | None = None,
    ):
        self.sessions = sessions
        self.settings = settings
        self.client = client or delivery_client(settings)
        self.jobs = jobs
        self.threads = threads or settings.delivery_threads
        self.lease = timedelta(seconds=settings.outbox_lease_seconds)
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.wake = threading.Event()
        self._stopping = threading.Event()
        self._workers: list[threading.Thread] = []
        self._held: dict[tuple[str, str | None], float] = {}  # rate-limited (method, channel) → until
        self._held_lock = threading.Lock()
        self._trouble: dict[str, bool] = {}  # "slack", "database": logged as down until they answer
        self._trouble_lock = threading.Lock()
        self._in_hand: set[int] = set()  # the ids of the rows this process's threads are delivering
        self._in_hand_lock = threading.Lock()

    # --- running ---------------------------------------------------------------------------------

    def start(self) -> Delivery:
        for number in range(self.threads):
            worker = threading.Thread(target=self._loop, name=f"delivery-{number}", daemon=True)
            worker.start()
            self._workers.append(worker)
        renewer = threading.Thread(target=self._renew_leases, name="delivery-leases", daemon=True)
        renewer.start()
        self._workers.append(renewer)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the rows in hand, then stop; what is left stays queued for the next start."""
        self._stopping.set()
        self.wake.set()
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        self._workers.clear()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                worked = self.work_once()
            except Exception:  # a worker thread must outlive any one row; the row's own errors are handled
                log.exception("delivery worker error")
                worked = False
            if not worked:
                self.wake.wait(self._idle_seconds())
                self.wake.clear()

    def _idle_seconds(self) -> float:
        """Until the next poll, or until just after a rate limit held here ends (its rows are due then)."""
        now = time.monotonic()
        with self._held_lock:
            ends = [until - now + HELD_MARGIN for until in self._held.values() if until > now]
        return min([self.settings.delivery_poll_seconds, *ends])

    def _renew_leases(self) -> None:
        while not self._stopping.wait(self.lease.total_seconds() / 3):
            try:
                with self.sessions() as session, session.begin():
                    with self._in_hand_lock:
                        in_hand = list(self._in_hand)
                    if in_hand:
                        # Only the rows being worked on: one whose release failed runs out its lease.
                        session.execute(
                            update(Outbox)
                            .where(Outbox.id.in_(in_hand), Outbox.claimed_by == self.name,
                                   Outbox.status == OutboxStatus.PENDING)
                            .values(claimed_until=utcnow() + self.lease)
                        )
            except DBAPIError:
                pass  # the claim loop reports the outage

    def work_once(self) -> bool:
        """Claim and deliver one row; False when none is due (or the database is unreachable)."""
        try:
            row = self._claim()
        except DBAPIError as error:
            self._down("database", f"database unavailable: {_first_line(error)}")
            self._stopping.wait(1.0)
            return False
        self._up("database", "database reachable again")
        if row is None:
            return False
        with self._in_hand_lock:
            self._in_hand.add(row.id)
        try:
            self._deliver(row)
        finally:
            with self._in_hand_lock:
                self._in_hand.discard(row.id)
        return True

    # --- claiming and recording outcomes -----------------------------------------------------------

    def _claim(self) -> Outbox | None:
        now = utcnow()
        earlier = aliased(Outbox)
        waits_for_earlier = exists().where(
            earlier.lane == Outbox.lane, earlier.id < Outbox.id, earlier.status == OutboxStatus.PENDING
        )
        due = (
            select(Outbox.id)
            .where(
                Outbox.status == OutboxStatus.PENDING,
                Outbox.available_at <= now,
                or_(Outbox.claimed_until.is_(None), Outbox.claimed_until < now),
                ~waits_for_earlier,
            )
            .order_by(Outbox.id)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        with self.sessions() as session, session.begin():
            return session.scalars(
                update(Outbox)
                .where(Outbox.id == due)
                .values(
                    claimed_by=self.name,
                    claimed_until=now + self.lease,
                    attempts=Outbox.attempts + 1,
                    # A claim that was never released: its worker died, maybe in the middle of a call.
                    outcome_unknown=or_(Outbox.outcome_unknown, Outbox.claimed_by.is_not(None)),
                )
                .returning(Outbox)
            ).one_or_none()

    def _deliver(self, row: Outbox) -> None:
        handler = getattr(self, f"_deliver_{row.kind.value}")
        try:
            handler(row)
        except Retry as retry:
            self._retry(row, retry)
        except Permanent as error:
            self._fail(row, str(error))
        except DBAPIError as error:
            self._down("database", f"database unavailable: {_first_line(error)}")
            # The row may have reached Slack before its outcome could be recorded: look before posting again.
            self._retry(row, Retry("database unavailable", quiet=True, unknown=True))
        except Exception as error:  # a bug in rendering or the like: the row fails, and Finance sees it
            error_id = uuid.uuid4().hex[:8]
            log.error("outbox #%d: unexpected error %s", row.id, error_id, exc_info=error)
            self._fail(row, f"unexpected error {error_id}")
        else:
            self._up("slack", "Slack answers again")

    def _done(self, session: Session, row: Outbox, **values) -> None:
        """Mark the row delivered, in the caller's transaction."""
        session.execute(
            update(Outbox)
            .where(Outbox.id == row.id, Outbox.claimed_by == self.name)  # not once another worker holds it
            .values(status=OutboxStatus.DONE, finished_at=utcnow(), claimed_by=None, claimed_until=None,
                    outcome_unknown=False, last_error=None, **values)
        )

    def _finish(self, row: Outbox, **values) -> None:
        with self.sessions() as session, session.begin():
            self._done(session, row, **values)

    def _release(self, row: Outbox, *, after: timedelta, count_attempt: bool = True, **values) -> None:
        """Put the row back for a later attempt."""
        with self.sessions() as session, session.begin():
            session.execute(
                update(Outbox)
                .where(Outbox.id == row.id, Outbox.claimed_by == self.name)
                .values(
                    available_at=utcnow() + after,
                    claimed_by=None,
                    claimed_until=None,
                    attempts=Outbox.attempts if count_attempt else Outbox.attempts - 1,
                    **values,
                )
            )

    def _retry(self, row: Outbox, retry: Retry) -> None:
        # Failures are counted, rate limits are not: at the longest backoff, the count spans GIVE_UP_AFTER.
        give_up_after = GIVE_UP_AFTER.total_seconds() / self.settings.delivery_max_backoff + BACKOFF_DOUBLINGS
        if retry.delay is None and row.attempts >= give_up_after:
            self._fail(row, f"gave up after {row.attempts} attempts: {retry.reason}")
            return
        delay = retry.delay
        if delay is None:
            delay = min(self.settings.delivery_max_backoff, 2 ** min(row.attempts - 1, BACKOFF_DOUBLINGS)) * random.uniform(0.8, 1.2)
        if not retry.quiet and retry.delay is None:
            self._down("slack", f"Slack is failing ({retry.reason}); retrying with backoff")
        try:
            self._release(
                row,
                after=timedelta(seconds=delay),
                count_attempt=retry.delay is None,
                last_error=retry.reason[:300],
                outcome_unknown=row.outcome_unknown or retry.unknown,
            )
        except DBAPIError:
            pass  # the lease runs out and another attempt follows; the outage is reported by the loop

    def _fail(self, row: Outbox, reason: str) -> None:
        log.error("outbox #%d (%s%s) failed for good: %s", row.id, row.kind.value, _about(row), reason)
        try:
            with self.sessions() as session, session.begin():
                session.execute(
                    update(Outbox)
                    .where(Outbox.id == row.id, Outbox.claimed_by == self.name)
                    .values(status=OutboxStatus.FAILED, finished_at=utcnow(), claimed_by=None, claimed_until=None,
                            last_error=reason[:300])
                )
                if row.kind is not OutboxKind.HOMES:
                    outbox.add(session, OutboxKind.HOMES, "homes")  # Finance's Home lists failed messages
        except DBAPIError:
            pass  # its lease runs out and it is tried again; the outage is reported by the claim loop

    def _down(self, what: str, message: str) -> None:
        with self._trouble_lock:
            if self._trouble.get(what):
                return
            self._trouble[what] = True
        log.warning(message)

    def _up(self, what: str, message: str) -> None:
        with self._trouble_lock:
            if not self._trouble.get(what):
                return
            self._trouble[what] = False
        log.info(message)

    # --- calling Slack ---------------------------------------------------------------------------

    def call(self, method: Callable[..., SlackResponse], *, channel: str | None = None, posts: bool = False,
             **arguments) -> dict:
        """Call a Web API method of the client; failures become Retry or Permanent.

        `posts`: the call creates a message, so an answer that never came leaves its outcome unknown.
        """
        name = method.__name__.replace("_", ".", 1)  # the client's chat_update is Slack's chat.update
        bucket = (name, channel if name.startswith("chat.") else None)
        with self._held_lock:
            wait = self._held.get(bucket, 0.0) - time.monotonic()
        if wait > MAX_HOLD_SECONDS:
            raise Retry(f"{name} rate limited", delay=wait, quiet=True)
        if wait > 0:
            # A short wait is cheaper in hand than putting the row back and claiming the next one that waits too.
            self._stopping.wait(wait)
        if channel is not None:
            arguments["channel"] = channel
        try:
            return method(**arguments).data
        except SlackApiError as error:
            response = error.response
            code = response.status_code
            reason = response.get("error") if isinstance(response.data, dict) else None
            if code == 429 or reason == "ratelimited":
                wait = _retry_after(response.headers)
                with self._held_lock:
                    self._held[bucket] = time.monotonic() + wait
                raise Retry(f"{name}: ratelimited", delay=wait, quiet=True) from None
            if code >= 500 or reason in TRANSIENT_ERRORS:
                raise Retry(f"{name}: HTTP {code} {reason or ''}".strip(), unknown=posts) from None
            raise Permanent(f"{name}: {reason or f'HTTP {code}'}") from None
        except (TimeoutError, socket.timeout) as error:
            raise Retry(f"{name}: no answer ({type(error).__name__})", unknown=posts) from None
        except ConnectionRefusedError:
            raise Retry(f"{name}: connection refused") from None
        except (OSError, SlackClientError, ValueError) as error:
            raise Retry(f"{name}: {type(error).__name__}", unknown=posts) from None

    def _post(self, row: Outbox, channel: str, text: str, blocks: list[dict], *, thread_ts: str | None = None,
              **fields) -> Posted:
        """chat.postMessage, unless an earlier attempt whose outcome is unknown did post it."""
        if row.outcome_unknown:
            found = self._find(row, channel, thread_ts)
            if found is not None:
                log.info("outbox #%d was already in Slack; not posting it again", row.id)
                return found
        arguments = {"text": text, "blocks": blocks, "metadata": metadata(row, **fields)}
        if thread_ts is not None:
            arguments["thread_ts"] = thread_ts
        answer = self.call(self.client.chat_postMessage, channel=channel, posts=True, **arguments)
        return Posted(answer["channel"], answer["ts"])

    def _find(self, row: Outbox, channel: str, thread_ts: str | None) -> Posted | None:
        """The message this row posted, found by its metadata in the channel's history or the thread."""
        if channel.startswith(("U", "W")):  # a person (W: Enterprise Grid): look in the DM with them
            channel = self.call(self.client.conversations_open, users=channel)["channel"]["id"]
        oldest = f"{row.created_at.timestamp() - 60:.6f}"
        cursor = None
        for _ in range(HISTORY_PAGES):
            arguments = {"channel": channel, "limit": 200, "include_all_metadata": True, "oldest": oldest}
            if cursor:
                arguments["cursor"] = cursor
            if thread_ts is not None:
                answer = self.call(self.client.conversations_replies, ts=thread_ts, **arguments)
            else:
                answer = self.call(self.client.conversations_history, **arguments)
            for message in answer.get("messages", []):
                payload = (message.get("metadata") or {}).get("event_payload") or {}
                if message.get("metadata", {}).get("event_type") == METADATA_TYPE and payload.get("outbox_id") == row.id:
                    return Posted(channel, message["ts"])
            cursor = (answer.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None
        return None

    # --- what each kind of row does ----------------------------------------------------------------

    def _load_bill(self, bill_id: int):
        """The bill, the linked team, and the bill's approval progress (read while the session is open)."""
        with self.sessions() as session:
            try:
                bill = get_bill(session=session, bill_id=bill_id)
            except NotFound:
                return None, {}, None
            return bill, load_team(session), approval.progress(bill, self.settings.today())

    def _deliver_bill_message(self, row: Outbox) -> None:
        bill, team, progress = self._load_bill(row.bill_id)
        if bill is None:
            self._finish(row)
            return
        text, blocks = bill_message(bill, progress, team)
        if bill.slack_ts is not None:
            try:
                self.call(self.client.chat_update, channel=bill.slack_channel, ts=bill.slack_ts, text=text, blocks=blocks)
            except Permanent as error:
                if not any(gone in str(error) for gone in MESSAGE_GONE):
                    raise
                log.warning("the message of bill #%d is gone; posting it again", bill.id)
            else:
                self._finish(row)
                return
        posted = self._post(row, self._bills_channel(), text, blocks, bill_id=bill.id)
        with self.sessions() as session, session.begin():
            session.execute(
                update(Bill)
                .where(Bill.id == bill.id)
                # Naming updated_at keeps its on-update default from firing: the bill itself is unchanged.
                .values(slack_channel=posted.channel, slack_ts=posted.ts, updated_at=Bill.updated_at)
                .execution_options(synchronize_session=False)
            )
            self._done(session, row, slack_channel=posted.channel, slack_ts=posted.ts)

    def _deliver_thread_reply(self, row: Outbox) -> None:
        bill, team, progress = self._load_bill(row.bill_id)
        action_id = (row.payload or {}).get("action_id")
        action = next((a for a in bill.actions if a.id == action_id), None) if bill else None
        if action is None:
            self._finish(row)
            return
        if bill.slack_ts is None:
            raise Permanent(f"bill #{bill.id} has no Slack message to reply to")
        text, blocks = action_reply(action, bill, progress, team)
        posted = self._post(row, bill.slack_channel, text, blocks, thread_ts=bill.slack_ts, action_id=action.id)
        self._finish(row, slack_channel=posted.channel, slack_ts=posted.ts)

    def _deliver_homes(self, row: Outbox) -> None:
        # Read which rows this one stands for before building: a change committed later gets its own turn.
        with self.sessions() as session:
            covered = session.scalar(
                select(func.max(Outbox.id)).where(Outbox.lane == row.lane, Outbox.status == OutboxStatus.PENDING)
            )
            # Built in one session: every Home reads the same drafts' approval progress, computed once.
            views = {slack_user_id: self._home_view(session, slack_user_id) for slack_user_id in linked(load_team(session))}
        for slack_user_id, view in views.items():
            self._publish(slack_user_id, view)
        self._finish_lane(row, covered)

    def _deliver_home(self, row: Outbox) -> None:
        with self.sessions() as session:
            covered = session.scalar(
                select(func.max(Outbox.id)).where(Outbox.lane == row.lane, Outbox.status == OutboxStatus.PENDING)
            )
        self._publish_home(row.slack_user_id)
        self._finish_lane(row, covered)

    def _finish_lane(self, row: Outbox, covered: int | None) -> None:
        """Mark this row, and the lane's later rows it stood for (same work, rendered now), delivered."""
        with self.sessions() as session, session.begin():
            self._done(session, row)
            if covered is not None and covered > row.id:
                session.execute(
                    update(Outbox)
                    .where(Outbox.lane == row.lane, Outbox.status == OutboxStatus.PENDING,
                           Outbox.id > row.id, Outbox.id <= covered, Outbox.claimed_by.is_(None))
                    .values(status=OutboxStatus.DONE, finished_at=utcnow())
                )

    def _publish_home(self, slack_user_id: str) -> None:
        with self.sessions() as session:
            view = self._home_view(session, slack_user_id)
        self._publish(slack_user_id, view)

    def _home_view(self, session, slack_user_id: str) -> dict:
        user = session.scalar(select(User).where(User.slack_user_id == slack_user_id))
        return home_view(session=session, user=user, today=self.settings.today())

    def _publish(self, slack_user_id: str, view: dict) -> None:
        try:
            self.call(self.client.views_publish, user_id=slack_user_id, view=view)
        except Permanent as error:
            # One person's Home (a deactivated account) must not hold back everyone else's.
            log.warning("App Home of %s not published: %s", slack_user_id, error)

    def _deliver_respond(self, row: Outbox) -> None:
        payload = row.payload or {}
        text, blocks = payload.get("text") or "", payload.get("blocks")
        url = payload.get("response_url")
        if url:
            try:
                answer = WebhookClient(url, timeout=self.settings.slack_timeout_seconds).send(
                    text=text, blocks=blocks, response_type="ephemeral", replace_original=False
                )
            except OSError as error:
                raise Retry(f"response_url: {type(error).__name__}") from None
            if answer.status_code == 429:
                raise Retry("response_url: ratelimited", delay=_retry_after(answer.headers), quiet=True)
            if answer.status_code >= 500:
                raise Retry(f"response_url: HTTP {answer.status_code}")
            if answer.status_code == 200:
                self._finish(row)
                return
            log.info("response_url expired (HTTP %d); answering %s in a DM", answer.status_code, row.slack_user_id)
        if not row.slack_user_id:
            raise Permanent("no response_url and no person to answer")
        posted = self._post(row, row.slack_user_id, text, blocks or [])
        self._finish(row, slack_channel=posted.channel, slack_ts=posted.ts)

    def _deliver_reminder(self, row: Outbox) -> None:
        after_days = self.settings.reminder_after_days
        with self.sessions() as session:
            user = session.scalar(select(User).where(User.slack_user_id == row.slack_user_id))
            due = reminders_due(session=session, user=user, now=utcnow(), after_days=after_days) if user else None
            message = reminder_message(due, after_days=after_days) if due else None
        if message is None:
            self._finish(row)  # nothing waits for them any more
            return
        text, blocks = message
        posted = self._post(row, row.slack_user_id, text, blocks, day=(row.payload or {}).get("day"))
        self._finish(row, slack_channel=posted.channel, slack_ts=posted.ts)

    def _deliver_generation(self, row: Outbox) -> None:
        payload = row.payload or {}
        period = Period.parse(payload["period"])
        with self.sessions() as session:
            without_message = and_(Bill.year == period.year, Bill.month == period.month, Bill.slack_ts.is_(None))
            unposted = session.scalar(select(func.count()).select_from(Bill).where(without_message)) or 0
            queued = session.scalar(
                select(func.count()).select_from(Outbox).join(Bill, Bill.id == Outbox.bill_id)
                .where(without_message, Outbox.kind == OutboxKind.BILL_MESSAGE, Outbox.status == OutboxStatus.PENDING)
            ) or 0
        created = payload.get("created", 0)
        finished = queued == 0
        text = generation_text(payload["summary"], created=created, unposted=unposted, finished=finished,
                               channel=self._bills_channel())
        blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
        if row.slack_ts is None:
            posted = self._post(row, self._bills_channel(), text, blocks)
            row.slack_channel, row.slack_ts = posted.channel, posted.ts
            with self.sessions() as session, session.begin():
                session.execute(update(Outbox).where(Outbox.id == row.id)
                                .values(slack_channel=posted.channel, slack_ts=posted.ts, outcome_unknown=False))
        else:
            self.call(self.client.chat_update, channel=row.slack_channel, ts=row.slack_ts, text=text, blocks=blocks)
        if finished:
            self._finish(row)
        else:
            self._release(row, after=timedelta(seconds=self.settings.progress_seconds), count_attempt=False)

    def _deliver_job(self, row: Outbox) -> None:
        if self.jobs is None:
            raise Retry("no job runner in this process", delay=1.0, quiet=True)
        try:
            with outbox.applying(row.id):
                self.jobs(row)
        except (DBAPIError, Retry):
            raise
        except Exception as error:  # a job's refusals are reported by the runner; anything else is a bug
            error_id = uuid.uuid4().hex[:8]
            log.error("job #%d failed (error %s)", row.id, error_id, exc_info=error)
            raise Permanent(f"unexpected error {error_id}") from None
        with self.sessions() as session, session.begin():
            outbox.finish_job(session, row.id)

    def _bills_channel(self) -> str:
        if not self.settings.bills_channel:
            raise Permanent("BILLS_CHANNEL is not set")
        return self.settings.bills_channel


def _retry_after(headers) -> float:
    for name, value in (headers or {}).items():
        if name.lower() == "retry-after":
            values = value if isinstance(value, list) else [value]
            try:
                return max(1.0, float(values[0]))
            except (TypeError, ValueError):
                break
    return 1.0


def _about(row: Outbox) -> str:
    if row.bill_id is not None:
        return f", bill #{row.bill_id}"
    if row.slack_user_id:
        return f", {row.slack_user_id}"
    return ""


def _first_line(error: Exception) -> str:
    return str(getattr(error, "orig", None) or error).strip().splitlines()[0][:200] if str(error) else type(error).__name__
