"""`billprocess demo`: the whole product on this machine, with a local Slack in the browser.

One command starts, in a folder of its own: a SQLite database (created or upgraded, and filled with the
demo data when it is empty); the sandbox on http://127.0.0.1:PORT — a Slack Web API (sandbox/slack.py)
and the page that shows it (sandbox/page.py); the Bolt app, served as `billprocess serve` serves it, with
SLACK_API_URL pointing at the sandbox; and its delivery worker and scheduler in a child process, as
`serve` runs them. It needs no Slack credentials and reads no `.env`: the tokens and the signing secret
are the sandbox's own, and bill emails are written to the folder, never sent.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import webbrowser
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot import accounts
from bot.errors import BillProcessError
from bot.settings import Settings, load_settings
from db import migrate
from db.models import User
from db.session import make_engine, make_session_factory
from sandbox.page import SandboxPage
from sandbox.slack import CHANNEL_ID, SIGNING_SECRET, TOKEN, FakeSlack

log = logging.getLogger(__name__)

WORKSPACE_FILE = "slack.json"  # what the sandbox's Slack shows, kept between runs
SAVE_EVERY_SECONDS = 2.0
STOP_CHECK_SECONDS = 0.5


@dataclass(frozen=True)
class Person:
    """Someone the page can act as: a Slack user, linked to a demo account (None: a visitor)."""

    slack_user_id: str
    account: str | None
    real_name: str


PEOPLE = (
    Person("U0FIONA01", "fiona", "Fiona"),
    Person("U0CAROL01", "carol", "Carol"),
    Person("U0CASEY01", "casey", "Casey"),
    Person("U0SAM0001", "sam", "Sam"),
    Person("U0VISIT01", None, "Vera (visitor)"),
)


def demo_settings(folder: Path, port: int) -> Settings:
    """The settings of the demo: its own database and mail folder, the sandbox as Slack, quick delivery."""
    return load_settings(
        _env_file=None,
        database_url=f"sqlite:///{folder / 'billprocess.db'}",
        mail_dir=folder / "mail",
        smtp_url=None,  # bills of made-up customers are written to files, never emailed
        slack_bot_token=TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_app_token=None,
        slack_api_url=f"http://127.0.0.1:{port}/api/",
        bills_channel=CHANNEL_ID,
        link_by_email=False,
        bcrypt_rounds=4,  # the demo accounts' passwords are random and never typed
        delivery_poll_seconds=0.1,
        progress_seconds=0.5,
    )


def prepare(sessions: sessionmaker[Session], settings: Settings) -> list[str]:
    """Load the demo data into an empty database and link the demo accounts to the sandbox's people."""
    from bot.seed import seed_demo

    lines = []
    with sessions() as session:
        with session.begin():
            empty = not session.scalar(select(func.count()).select_from(User))
        if empty:
            lines += seed_demo(session=session, settings=settings, today=datetime.now(settings.zone).date())
    with sessions() as session:
        for person in PEOPLE:
            if person.account is None:
                continue
            with session.begin():
                user = session.scalar(select(User).where(User.name == person.account))
            if user is not None and user.slack_user_id is None:
                try:
                    accounts.link(session=session, name=person.account, slack_user_id=person.slack_user_id)
                except BillProcessError as error:
                    log.warning("%s stays unlinked in the sandbox: %s", person.account, error)
    return lines


def register_people(fake: FakeSlack, sessions: sessionmaker[Session]) -> None:
    """Make each person a member of the sandbox's workspace, titled with their account's role."""
    with sessions() as session, session.begin():
        linked = session.scalars(select(User).where(User.slack_user_id.isnot(None)))
        users = {user.slack_user_id: user for user in linked}
    for person in PEOPLE:
        user = users.get(person.slack_user_id)
        fake.add_user(
            person.slack_user_id,
            name=user.name if user else person.real_name.split()[0].lower(),
            real_name=person.real_name,
            email=user.email if user else None,
            title=user.role.label if user else "not linked to an account",
        )


class WorkspaceFile:
    """The sandbox's Slack kept in a JSON file, so that a restarted demo shows what it showed before."""

    def __init__(self, fake: FakeSlack, path: Path):
        self.fake = fake
        self.path = path
        self._saved: int | None = None  # the version last saved; None until loaded
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keep, name="sandbox-save", daemon=True)

    def load(self) -> None:
        self._saved = self.fake.version
        if not self.path.exists():
            return
        try:
            self.fake.restore(json.loads(self.path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError, OSError) as error:
            log.warning("the sandbox starts empty: %s could not be read (%s)", self.path, error)
        self._saved = self.fake.version

    def save(self) -> None:
        version = self.fake.version
        if self._saved is None or version == self._saved:
            return  # nothing new (or never loaded: what the file holds is kept)
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps(self.fake.snapshot()), encoding="utf-8")
        partial.replace(self.path)
        self._saved = version

    def start(self) -> WorkspaceFile:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self.save()

    def _keep(self) -> None:
        while not self._stop.wait(SAVE_EVERY_SECONDS):
            try:
                self.save()
            except OSError as error:
                log.warning("could not save the sandbox to %s: %s", self.path, error)


@contextmanager
def _served(app, engine, signing_secret: str) -> Iterator[str]:
    """The app's HTTP server (as `serve` runs it) on a free local port, while the block runs; yields its URL."""
    from waitress import wasyncore

    from handlers.web import create_server

    server = create_server(app, engine, signing_secret=signing_secret, host="127.0.0.1", port=0, threads=8)
    thread = threading.Thread(target=server.run, name="app-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        # Closed from the server's own loop thread: closing its sockets from here races its select().
        try:
            server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
        except OSError:
            pass
        thread.join(timeout=5)
        server.task_dispatcher.shutdown()


def _wait_for_a_stop_signal() -> None:
    """Until Ctrl-C (SIGINT) or SIGTERM. The wait has a time limit: a signal that comes just before a wait
    without one could leave it waiting for good."""
    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())
    while not stop.wait(STOP_CHECK_SECONDS):
        pass


def run(*, folder: Path, port: int, open_browser: bool = False, out: Callable[[str], None] = print) -> None:
    """Run the demo until Ctrl-C or SIGTERM, then stop everything it started."""
    from handlers.app import create_app
    from handlers.worker import WorkerProcess

    folder.mkdir(parents=True, exist_ok=True)
    settings = demo_settings(folder, port)
    fake = FakeSlack(port=port)
    page = SandboxPage(fake)
    try:
        fake.start()
    except OSError as error:
        raise BillProcessError(f"cannot listen on port {port} ({error.strerror}); choose another with --port") from None
    engine = make_engine(settings.sqlalchemy_url)
    workspace = WorkspaceFile(fake, folder / WORKSPACE_FILE)
    worker = None
    # While it starts, SIGTERM (how services are stopped) unwinds like Ctrl-C: what was started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        migrate.upgrade(engine)
        sessions = make_session_factory(engine)
        for line in prepare(sessions, settings):
            out(line)
        register_people(fake, sessions)
        workspace.load()
        app = create_app(settings, sessions)
        with _served(app, engine, SIGNING_SECRET) as app_url:
            page.connect(app_url)
            worker = WorkerProcess(settings).start()
            workspace.start()
            url = f"http://127.0.0.1:{port}"
            out(f"BillProcess demo: open {url} — a local Slack in your browser (Ctrl-C stops it).")
            out(f"Its data is in {folder}/; delete the folder to start again from the demo data.")
            if open_browser:
                webbrowser.open(url)
            _wait_for_a_stop_signal()
    finally:
        if worker is not None:
            worker.close()
        workspace.stop()
        fake.stop()
        engine.dispose()
    out("Stopped.")
