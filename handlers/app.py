"""The one factory that builds the Bolt app from the settings."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from slack_bolt import Ack, App, BoltRequest, BoltResponse
from slack_bolt.middleware import Middleware
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from sqlalchemy.orm import Session, sessionmaker

from bot.invoices import Invoicing
from bot.mailer import Mailer
from bot.settings import Settings, SettingsError
from handlers.jobs import JobRecorder
from handlers.verification import ReplayGuard

log = logging.getLogger(__name__)

LISTENER_THREADS = 32


@dataclass(frozen=True)
class Services:
    """What listeners and jobs need, handed to each listener as `context["services"]`."""

    settings: Settings
    sessions: sessionmaker[Session]
    client: WebClient | None
    mailer: Mailer
    invoicing: Invoicing  # how invoices and credit notes are numbered and dated, and who issues them
    recorder: JobRecorder  # records clicks and commands before their acknowledgement
    replays: ReplayGuard  # refuses a signed request seen before

    def queue(self, write: Callable[[Session], object]) -> None:
        """Write outbox rows (bot/outbox.py) in a transaction of their own."""
        with self.sessions() as session, session.begin():
            write(session)


def slack_client(settings: Settings) -> WebClient | None:
    """The listeners' Web API client, waiting out rate limits; None without SLACK_BOT_TOKEN."""
    if settings.slack_bot_token is None:
        return None
    return WebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url,
        retry_handlers=[ConnectionErrorRetryHandler(max_retry_count=2), RateLimitErrorRetryHandler(max_retry_count=3)],
    )


class KeptAck(Ack):
    """An `ack` whose response stays once given.

    When a listener raises after ack(), Bolt's thread runner sets `ack.response` back to None; if that
    happens before the request thread has looked (it polls every 10 ms), the acknowledgement is lost
    and Slack gets a 404 after 3 s on top of the error message. A quick refusal hits that every time.
    """

    def __setattr__(self, name: str, value) -> None:
        if name == "response" and value is None and getattr(self, "response", None) is not None:
            return
        super().__setattr__(name, value)


class ProvideServices(Middleware):
    """The first middleware: every listener finds the services in its context, and a KeptAck.

    The app's middlewares are Middleware classes, not functions: Bolt calls them as they are instead of
    matching their arguments by name on every request, which every acknowledgement would wait for.
    """

    def __init__(self, services: Services):
        self.services = services

    def process(self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]):
        req.context["services"] = self.services
        req.context["ack"] = KeptAck()
        return next()


def require(settings: Settings, *names: str) -> None:
    """Stop with one line naming every missing credential."""
    missing = [name.upper() for name in names if getattr(settings, name) is None]
    if missing:
        raise SettingsError(f"{' and '.join(missing)} must be set to talk to Slack (see README: Slack app)")


def build_services(settings: Settings, sessions: sessionmaker[Session]) -> Services:
    return Services(settings=settings, sessions=sessions, client=slack_client(settings),
                    mailer=Mailer.from_settings(settings), invoicing=Invoicing.from_settings(settings),
                    recorder=JobRecorder(sessions.kw["bind"]),
                    replays=ReplayGuard(sessions.kw["bind"]))


def create_app(
    settings: Settings,
    sessions: sessionmaker[Session],
    *,
    socket_mode: bool = False,
) -> App:
    """The Bolt app; in HTTP mode handlers/web.py verifies every request's signature before Bolt reads it,
    Socket Mode needs the app token instead.

    What follows an acknowledgement is recorded in the outbox and done by the delivery workers.
    """
    if socket_mode:
        require(settings, "slack_bot_token", "slack_app_token")
    else:
        require(settings, "slack_bot_token", "slack_signing_secret")
    from handlers import register_all

    services = build_services(settings, sessions)
    app = App(
        client=services.client,
        request_verification_enabled=False,  # done by handlers/web.py, before anything parses the body
        raise_error_for_unhandled_request=True,  # to the error handler, which logs it without the body
        name="billprocess",
        # What follows ack() (waiting on Slack, charts, exports) runs here; Bolt's default of 5 threads
        # would let a few slow listeners hold up the acknowledgement of every further request.
        listener_executor=ThreadPoolExecutor(max_workers=LISTENER_THREADS, thread_name_prefix="listener"),
    )

    app.use(ProvideServices(services))
    register_all(app)
    return app
