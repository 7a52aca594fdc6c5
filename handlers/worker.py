"""Work that follows Slack's acknowledgement: done inline, or by a process of its own when serving.

Python runs one thread at a time per process. Applying a click, building messages and Home views next to
the HTTP server would hold up the acknowledgement of every other request, so `serve` and `socket` hand
that work to one child process, which does it in the order it was asked for. Tests and one-off commands
do it inline, in the calling thread.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context

from bot.notify import Notifier
from bot.periods import Period
from bot.settings import Settings

log = logging.getLogger(__name__)

Job = Callable[..., object]  # a module-level function (services, *args) → result
# The worker coalesces App Home refreshes over this many seconds: a burst of clicks republishes each
# Home once, not once per click.
HOME_REFRESH_DELAY = 1.0


class InlineWorker:
    """Does each job at once, in the calling thread."""

    services = None

    def bind(self, services) -> None:
        """The services jobs are given (handlers.app.build_services)."""
        self.services = services

    def submit(self, job: Job, *args) -> Future:
        future: Future = Future()
        future.set_result(job(self.services, *args))
        return future

    def notifier(self, local: Notifier) -> Notifier:
        return local

    def close(self) -> None:
        pass


class ProcessWorker:
    """Does jobs in one child process, in order; `close()` finishes what was asked for, then stops it."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.Lock()
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=1, mp_context=get_context("spawn"), initializer=_start_child, initargs=(self.settings,)
        )

    def submit(self, job: Job, *args) -> Future:
        with self._lock:
            try:
                future = self._pool.submit(_run_in_child, job, *args)
            except BrokenProcessPool:
                log.error("the worker process died; starting a new one")
                self._pool = self._new_pool()
                future = self._pool.submit(_run_in_child, job, *args)
        future.add_done_callback(_report_failure(job))
        return future

    def bind(self, services) -> None:
        """Jobs get the child process's own services, built there."""

    def notifier(self, local: Notifier) -> WorkerNotifier:
        return WorkerNotifier(self)

    def close(self) -> None:
        """Finish every job asked for (and the Homes they left due), then stop the process."""
        self.submit(_flush_homes)
        self._pool.shutdown(wait=True)


class WorkerNotifier:
    """The Notifier's methods, each done by the worker process's own Notifier."""

    def __init__(self, worker: ProcessWorker):
        self.worker = worker

    def bills_created(self, period: Period) -> None:
        """Queued, not awaited: posting a month of bills must not hold a listener thread meanwhile."""
        self.worker.submit(notify, "bills_created", period)

    def bill_changed(self, bill_id: int, *, action_id: int | None = None) -> None:
        self.worker.submit(notify, "bill_changed", bill_id, action_id)

    def refresh_message(self, bill_id: int) -> None:
        self.worker.submit(notify, "refresh_message", bill_id)

    def refresh_home(self, slack_user_id: str) -> None:
        self.worker.submit(notify, "refresh_home", slack_user_id)


def notify(services, method: str, *args):
    if method == "bill_changed":
        bill_id, action_id = args
        return services.notifier.bill_changed(bill_id, action_id=action_id)
    return getattr(services.notifier, method)(*args)


def _flush_homes(services) -> None:
    services.notifier.flush()


def _report_failure(job: Job) -> Callable[[Future], None]:
    def report(future: Future) -> None:
        error = future.exception()
        if error is not None:
            log.error("background job %s failed", job.__name__, exc_info=error)

    return report


# --- the child process --------------------------------------------------------------------------------

_child_services = None


def _start_child(settings: Settings) -> None:
    from db.session import make_engine, make_session_factory
    from handlers.app import build_services

    global _child_services
    # Ctrl-C and SIGTERM reach the whole process group; the parent stops and drains the queue with close(),
    # so the child must outlive them long enough to finish what it was asked to do.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sessions = make_session_factory(make_engine(settings.sqlalchemy_url))
    _child_services = build_services(settings, sessions, InlineWorker(), home_delay=HOME_REFRESH_DELAY)


def _run_in_child(job: Job, *args):
    return job(_child_services, *args)
