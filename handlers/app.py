"""The one factory that builds the Bolt app from the settings."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from slack_bolt import Ack, App
from sqlalchemy.orm import Session, sessionmaker

from bot.mailer import Mailer
from slack_sdk import WebClient

from bot.notify import Notifier, slack_client
from bot.settings import Settings, SettingsError
from handlers.worker import InlineWorker, ProcessWorker, WorkerNotifier

log = logging.getLogger(__name__)

LISTENER_THREADS = 32


@dataclass(frozen=True)
class Services:
    """What listeners need, handed to each of them as `context["services"]`."""

    settings: Settings
    sessions: sessionmaker[Session]
    client: WebClient
    notifier: Notifier | WorkerNotifier
    mailer: Mailer
    worker: InlineWorker | ProcessWorker  # does what follows an acknowledgement


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


def require(settings: Settings, *names: str) -> None:
    """Stop with one line naming every missing credential."""
    missing = [name.upper() for name in names if getattr(settings, name) is None]
    if missing:
        raise SettingsError(f"{' and '.join(missing)} must be set to talk to Slack (see README: Slack app)")


def build_services(
    settings: Settings,
    sessions: sessionmaker[Session],
    worker: InlineWorker | ProcessWorker,
    *,
    home_delay: float | None = None,
) -> Services:
    client = slack_client(settings)
    local = Notifier(client=client, sessions=sessions, settings=settings, home_delay=home_delay)
    services = Services(
        settings=settings,
        sessions=sessions,
        client=client,
        notifier=worker.notifier(local),
        mailer=Mailer.from_settings(settings),
        worker=worker,
    )
    worker.bind(services)
    return services


def create_app(
    settings: Settings,
    sessions: sessionmaker[Session],
    *,
    socket_mode: bool = False,
    worker: InlineWorker | ProcessWorker | None = None,
) -> App:
    """The Bolt app; in HTTP mode handlers/web.py verifies every request's signature before Bolt reads it,
    Socket Mode needs the app token instead.

    `worker` does what follows an acknowledgement: inline by default; servers pass a ProcessWorker.
    """
    if socket_mode:
        require(settings, "slack_bot_token", "slack_app_token")
    else:
        require(settings, "slack_bot_token", "slack_signing_secret")
    from handlers import register_all

    services = build_services(settings, sessions, worker or InlineWorker())
    app = App(
        client=services.client,
        request_verification_enabled=False,  # done by handlers/web.py, before anything parses the body
        raise_error_for_unhandled_request=True,  # to the error handler, which logs it without the body
        name="billprocess",
        # What follows ack() (waiting on Slack, charts, exports) runs here; Bolt's default of 5 threads
        # would let a few slow listeners hold up the acknowledgement of every further request.
        listener_executor=ThreadPoolExecutor(max_workers=LISTENER_THREADS, thread_name_prefix="listener"),
    )

    @app.middleware
    def provide_services(context, next):
        context["services"] = services
        context["ack"] = KeptAck()
        next()

    register_all(app)
    return app
