"""Events API deliveries: each event is processed once, however often Slack retries it.

Slack retries a delivery (same `event_id`, with `X-Slack-Retry-Num`) when the first one timed out
or failed, even if the app had in fact handled it. The first delivery of an event_id is recorded in
`slack_events`; a later one finds it there and is acknowledged without running any listener.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.middleware import Middleware
from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from db.models import SlackEvent
from db.session import add_once

log = logging.getLogger(__name__)

# Slack gives up retrying after about five minutes; a day of event ids is plenty.
KEEP_EVENTS_FOR = timedelta(days=1)
PRUNE_EVERY_SECONDS = 3600.0


class PruneSchedule:
    """Says when this process should next delete old rows (event ids, signatures): at most once per interval."""

    def __init__(self, every_seconds: float = PRUNE_EVERY_SECONDS):
        self.every_seconds = every_seconds
        self._next_at = 0.0
        self._lock = threading.Lock()

    def due(self) -> bool:
        with self._lock:
            now = time.monotonic()
            if now < self._next_at:
                return False
            self._next_at = now + self.every_seconds
            return True


def record_first_delivery(sessions: sessionmaker[Session], event_id: str, *, prune: bool = False) -> bool:
    """Record `event_id`; False when it was already recorded (this delivery is a repeat)."""
    now = datetime.now(timezone.utc)
    old = delete(SlackEvent).where(SlackEvent.received_at < now - KEEP_EVENTS_FOR)
    return add_once(sessions, SlackEvent(event_id=event_id, received_at=now), prune=old if prune else None)


class ProcessEachEventOnce(Middleware):
    """Acknowledges a repeated delivery of an event without running any listener."""

    def __init__(self):
        self.prune_schedule = PruneSchedule()

    def process(self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]):
        body = req.body
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if not event_id:
            return next()
        # A session of its own, committed and closed before any listener runs: the record must be
        # visible to a concurrent retry before this delivery's work starts.
        services = req.context["services"]
        if not record_first_delivery(services.sessions, event_id, prune=self.prune_schedule.due()):
            retry = (req.headers.get("x-slack-retry-num") or ["-"])[0]
            reason = (req.headers.get("x-slack-retry-reason") or ["-"])[0]
            log.info("event %s already processed; ignoring delivery (retry %s, %s)", event_id, retry, reason)
            return BoltResponse(status=200, body="")
        return next()


def register(app: App) -> None:
    app.use(ProcessEachEventOnce())
