"""HTTP mode: `POST /slack/events` for everything Slack sends, `GET /healthz` for load balancers and monitoring."""

from __future__ import annotations

import json
import logging
import signal
import sys
from datetime import datetime, timezone

import waitress
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from bot import outbox

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"


def wsgi_app(app: App, engine: Engine):
    """The WSGI application: Bolt on EVENTS_PATH, a health check that also reaches the database."""
    slack = SlackRequestHandler(app, path=EVENTS_PATH)

    def application(environ, start_response):
        if environ.get("PATH_INFO") == "/healthz" and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            return _health(engine, start_response)
        try:
            return slack(environ, start_response)
        except ValueError:  # Bolt reads the body before anything else: a payload that is not JSON
            log.warning("refused a request whose payload is not valid JSON")
            return _json(start_response, "400 Bad Request", {"ok": False, "error": "malformed payload"})

    return application


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


def serve(app: App, engine: Engine, *, port: int, host: str = "0.0.0.0", threads: int = 16) -> None:
    """Serve with waitress, a production WSGI server; blocks until interrupted."""
    # SIGTERM (how services are stopped) unwinds like Ctrl-C, so queued Slack deliveries are drained.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    log.info("BillProcess listening on http://%s:%d%s", host, port, EVENTS_PATH)
    waitress.serve(wsgi_app(app, engine), host=host, port=port, threads=threads, ident="billprocess")
