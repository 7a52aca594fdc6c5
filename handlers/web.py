"""HTTP mode: `POST /slack/events` for everything Slack sends, `GET /healthz` for load balancers and monitoring.

A request reaches Bolt only once it is shown to be Slack's and readable: its size is capped before it
is read, its signature and timestamp are checked before anything parses it (handlers/verification.py),
and its payload must have the shape Slack sends (handlers/payloads.py). A request refused on the way is
answered 4xx with one log line, which never repeats the body.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from datetime import datetime, timezone

import waitress
from slack_bolt import App, BoltRequest
from slack_bolt.adapter.wsgi.http_request import WsgiHttpRequest
from slack_bolt.adapter.wsgi.http_response import WsgiHttpResponse
from slack_bolt.request.internals import build_context
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from bot import outbox
from handlers.payloads import MalformedPayload, read_payload
from handlers.verification import SIGNED, Unverified, verify

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
API_PREFIX = "/api"
# Slack's payloads are a few kilobytes; a modal's state or an event with a long message stays far below.
MAX_BODY_BYTES = 1024 * 1024


class Refused(Exception):
    """A request answered without reaching Bolt: its HTTP status, and why, in words that repeat none of it."""

    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status = status


def wsgi_app(app: App, engine: Engine, signing_secret: str, api=None):
    """The WSGI application: Slack's requests on EVENTS_PATH, a health check that also reaches the database,
    and the JSON API (handlers/api.py) under API_PREFIX."""

    def application(environ, start_response):
        path, method = environ.get("PATH_INFO"), environ.get("REQUEST_METHOD")
        if path == "/healthz" and method in ("GET", "HEAD"):
            return _health(engine, start_response)
        if api is not None and (path == API_PREFIX or path.startswith(API_PREFIX + "/")):
            return api(environ, start_response)
        if path != EVENTS_PATH:
            return _json(start_response, "404 Not Found", {"ok": False, "error": "not found"})
        try:
            if method != "POST":
                raise Refused("405 Method Not Allowed", f"Slack posts to {EVENTS_PATH}; this was {method}")
            request = _slack_request(environ, signing_secret)
        except Refused as refusal:
            log.warning("refused a request to %s (%s): %s", EVENTS_PATH, refusal.status, refusal)
            return _json(start_response, refusal.status, {"ok": False, "error": str(refusal)})
        response = app.dispatch(request)
        answer = WsgiHttpResponse(status=response.status, headers=response.headers, body=response.body)
        start_response(answer.status, answer.get_headers())
        return answer.get_body()

    return application


def _slack_request(environ, signing_secret: str) -> BoltRequest:
    """The request as Bolt takes it, once it is known to be Slack's and shaped as Slack sends it."""
    length = environ.get("CONTENT_LENGTH") or "0"
    if not (length.isascii() and length.isdigit()):
        raise Refused("400 Bad Request", "its Content-Length is not a number")
    if int(length) > MAX_BODY_BYTES:
        raise Refused("413 Request Entity Too Large", f"its body is larger than {MAX_BODY_BYTES:,} bytes")
    body = environ["wsgi.input"].read(int(length))
    timestamp, signature = environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP"), environ.get("HTTP_X_SLACK_SIGNATURE")
    try:
        signed = verify(signing_secret, timestamp, signature, body, now=datetime.now(timezone.utc))
    except Unverified as unverified:
        raise Refused("401 Unauthorized", f"not verifiably from Slack: {unverified}") from None
    http = WsgiHttpRequest(environ)
    # Built empty and then given the payload read here: Bolt's own reading of a body cannot fail any more.
    request = BoltRequest(body="", query=http.query_string, headers=http.get_headers(), context={SIGNED: signed})
    try:
        request.raw_body = body.decode("utf-8")
        request.body = read_payload(request.raw_body, request.content_type)
    except UnicodeDecodeError:
        raise Refused("400 Bad Request", "its body is not UTF-8 text") from None
    except MalformedPayload as malformed:
        raise Refused("400 Bad Request", str(malformed)) from None
    request.context = build_context(request.context, request.body)
    return request


def _health(engine: Engine, start_response):
    """200 with how far delivery is behind; 503 while the database cannot be reached."""
    try:
        with Session(engine) as session:
            backlog = outbox.backlog(session=session)
    except DBAPIError:
        log.warning("health check: database unreachable")
        return _json(start_response, "503 Service Unavailable", {"ok": False, "error": "database unreachable"})
    return _json(start_response, "200 OK", {
        "ok": True,
        "database": "reachable",
        "outbox": {
            "pending": backlog.pending,
            "failed": backlog.failed,
            "oldest_pending_seconds": round(backlog.lag(datetime.now(timezone.utc)).total_seconds(), 1),
        },
    })


def _json(start_response, status: str, body: dict):
    payload = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
    return [payload]


def create_server(app: App, engine: Engine, *, signing_secret: str, port: int, host: str = "0.0.0.0",
                  threads: int = 16, api=None, trusted_proxy: str | None = None):
    """A waitress server, a production WSGI server, for the app; a body over MAX_BODY_BYTES gets 413 unread.

    Behind a reverse proxy at `trusted_proxy`, a request's address is the client's, from X-Forwarded-For.
    """
    proxy = {}
    if trusted_proxy:
        proxy = {"trusted_proxy": trusted_proxy, "trusted_proxy_headers": {"x-forwarded-for"},
                 "trusted_proxy_count": 1, "clear_untrusted_proxy_headers": True}
    return waitress.create_server(
        wsgi_app(app, engine, signing_secret, api),
        host=host,
        port=port,
        threads=threads,
        ident="billprocess",
        max_request_body_size=MAX_BODY_BYTES + 1,  # waitress refuses a body of this size or more
        **proxy,
    )


def serve(
    app: App, engine: Engine, *, signing_secret: str, port: int, host: str = "0.0.0.0", threads: int = 16,
    api=None, trusted_proxy: str | None = None,
) -> None:
    """Serve until interrupted."""
    server = create_server(app, engine, signing_secret=signing_secret, port=port, host=host, threads=threads,
                           api=api, trusted_proxy=trusted_proxy)
    # SIGTERM (how services are stopped) unwinds like Ctrl-C, so the worker process is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    log.info("BillProcess listening on http://%s:%d%s%s", host, port, EVENTS_PATH,
             f" and {API_PREFIX}/" if api is not None else "")
    server.run()
