"""Requests in HTTP mode are Slack's: signed with the app's signing secret, recent, and new.

handlers/web.py checks the signature and its timestamp before anything reads the body, as Slack's
"Verifying requests from Slack" describes; a signature already seen (a replay) is refused, by the
middleware here or, for a request recorded as a job, by handlers/jobs.py. Signatures are recorded in the
database, so that every `serve` process on it sees every other's.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.middleware import Middleware
from sqlalchemy import Connection, Engine, delete, text

from db.models import SeenSignature
from db.session import GroupCommit, insert_once
from handlers.events import PruneSchedule

log = logging.getLogger(__name__)

# Slack's rule: a timestamp further than this from the receiver's clock, either way, is refused.
MAX_SKEW = timedelta(minutes=5)
# A signature older than MAX_SKEW is refused as stale anyway; the rest is margin for servers' clocks.
KEEP_SIGNATURES_FOR = 2 * MAX_SKEW
PRUNE_EVERY_SECONDS = 60.0
SIGNED = "signed_request"  # the context key under which web.py hands the verified signature to Bolt

_TIMESTAMP = re.compile(r"[0-9]{1,10}")  # seconds since 1970, until the year 2286
_SIGNATURE = re.compile(r"v0=([0-9a-f]{64})")


class Unverified(Exception):
    """The request cannot be shown to come from Slack; the message says why, naming no secret."""


@dataclass(frozen=True)
class SignedRequest:
    digest: str  # the hex HMAC-SHA256 of the request, as its X-Slack-Signature carried it
    signed_at: datetime


def verify(secret: str, timestamp: str | None, signature: str | None, body: bytes, *, now: datetime) -> SignedRequest:
    """The request's signature, when `signature` is Slack's v0 signature of `timestamp` and `body`."""
    if not timestamp or not signature:
        raise Unverified("it is not signed")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise Unverified("its timestamp is not a number of seconds")  # also when the header was sent twice
    signed_at = datetime.fromtimestamp(int(timestamp), timezone.utc)
    if signed_at < now - MAX_SKEW:
        raise Unverified("its timestamp is more than five minutes old")
    if signed_at > now + MAX_SKEW:
        raise Unverified("its timestamp is more than five minutes ahead")
    given = _SIGNATURE.fullmatch(signature)
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    if given is None or not hmac.compare_digest(given[1], expected):
        raise Unverified("its signature does not match")
    return SignedRequest(digest=expected, signed_at=signed_at)


class ReplayGuard:
    """Records the signature of every accepted request; requests that arrive together share one commit."""

    def __init__(self, engine: Engine):
        self._commit = GroupCommit(engine, self._record, name="replay-guard")
        self._prune = PruneSchedule(PRUNE_EVERY_SECONDS)

    def first_use(self, signed: SignedRequest) -> bool:
        """Record the signature; False when it was recorded before (this request is a replay)."""
        return self._commit.submit(signed)

    def _record(self, connection: Connection, requests: Sequence[SignedRequest]) -> list[bool]:
        if connection.dialect.name == "postgresql":
            # Visible to every instance as soon as it commits, without waiting for the disk: a crash can
            # forget the last moment's signatures, not refuse a request wrongly. What the request asks
            # for (a recorded job, a change) commits durably on its own.
            connection.execute(text("SET LOCAL synchronous_commit TO OFF"))
        first_uses = store_signatures(connection, requests)
        if self._prune.due():
            old = datetime.now(timezone.utc) - KEEP_SIGNATURES_FOR
            connection.execute(delete(SeenSignature).where(SeenSignature.signed_at < old))
        return first_uses


class Replayed(Exception):
    """A request whose signature was seen before: answered 401, nothing done."""


def store_signatures(connection: Connection, requests: Sequence[SignedRequest]) -> list[bool]:
    """Record the signatures in the caller's transaction; for each, False when it was seen before."""
    rows = [{"digest": signed.digest, "signed_at": signed.signed_at} for signed in requests]
    return insert_once(connection, SeenSignature.__table__, "digest", rows)


class RefuseReplays(Middleware):
    """Refuses a signed request whose signature was seen before.

    A request recorded as a job never gets here: handlers/jobs.py stores its signature with its job, in the
    one commit its acknowledgement waits for, and refuses it there when the signature was seen before.
    """

    def process(self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]):
        signed = req.context.get(SIGNED)  # None in Socket Mode, where requests are not signed
        if signed is not None and not req.context["services"].replays.first_use(signed):
            return replayed()
        return next()


def register(app: App) -> None:
    app.use(RefuseReplays())


def replayed() -> BoltResponse:
    log.warning("refused a request: its signature was used before (a replay)")
    return BoltResponse(status=401, body={"ok": False, "error": "replayed request"})
