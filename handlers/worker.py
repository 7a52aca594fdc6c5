"""The delivery worker: the outbox's delivery threads, the job runner and the scheduler, in one process.

`billprocess worker` runs it in the foreground. `serve` and `socket` run it in a child process of their
own (`WorkerProcess`): building messages and App Home views next to the HTTP server would hold up the
acknowledgement of every other request, since Python runs one thread at a time per process. The child
stops when its parent does, however the parent ends (even SIGKILL), and leaves nothing behind that
another worker cannot pick up: every piece of work lives in the outbox. Should the child die while its
parent runs, the parent starts another.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from multiprocessing import get_context, resource_tracker

from bot.delivery import Delivery
from bot.settings import Settings

log = logging.getLogger(__name__)

PARENT_CHECK_SECONDS = 0.5
RESTART_CHECK_SECONDS = 1.0
WORKER_NICENESS = 10


def run_worker(settings: Settings, stop: threading.Event, *, parent_pid: int | None = None) -> None:
    """Deliver and run scheduled jobs until `stop` is set (or the parent process is gone)."""
    from bot import approval
    from bot.scheduler import Scheduler
    from db.session import make_engine, make_session_factory
    from handlers.app import build_services
    from handlers.jobs import run_job

    # Loaded now rather than by the first job: the `/bill` commands bring matplotlib's figures and charts
    # (0.4-0.5 s of CPU), which would otherwise load while the server acknowledges the first clicks.
    from handlers import actions, commands  # noqa: F401

    approval.configure(settings)  # a spawned process starts with nothing configured
    engine = make_engine(settings.sqlalchemy_url)
    sessions = make_session_factory(engine)
    services = build_services(settings, sessions)
    delivery = Delivery(sessions=sessions, settings=settings, jobs=lambda row: run_job(services, row)).start()
    scheduler = Scheduler(sessions=sessions, settings=settings).start()
    log.info("delivery worker %s started (%d threads)", delivery.name, delivery.threads)
    try:
        while not stop.wait(PARENT_CHECK_SECONDS):
            if parent_pid is not None and os.getppid() != parent_pid:
                log.warning("the server process is gone; the worker stops")
                break
    finally:
        scheduler.stop()
        delivery.stop()
        engine.dispose()
        log.info("delivery worker stopped")


def _child_main(settings: Settings, parent_pid: int) -> None:
    stop = threading.Event()
    # Ctrl-C reaches the whole process group: the parent decides when the child stops (SIGTERM).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # Acknowledging Slack within its deadline comes first: on a busy machine the server gets the CPU before
    # the work that follows the acknowledgements, which is durable and can wait a moment.
    os.nice(WORKER_NICENESS)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_worker(settings, stop, parent_pid=parent_pid)


def _start(process) -> None:
    """Start the child with Ctrl-C blocked, which it keeps: Ctrl-C reaches the whole process group, and the
    parent decides when its worker stops (SIGTERM), even while the child is still importing its modules."""
    # Started first: starting it on the way unblocks SIGINT in this thread.
    resource_tracker.ensure_running()
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        process.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


class WorkerProcess:
    """The delivery worker in a child process of a server, started again should it die.

    `close()` stops it (SIGTERM: it finishes the rows in hand) and waits for it.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self._context = get_context("spawn")
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._process = self._new_process()
        self._watcher = threading.Thread(target=self._watch, name="worker-watch", daemon=True)

    def _new_process(self):
        return self._context.Process(
            target=_child_main, args=(self.settings, os.getpid()), name="billprocess-worker", daemon=False
        )

    def start(self) -> WorkerProcess:
        _start(self._process)
        self._watcher.start()
        return self

    def _watch(self) -> None:
        while not self._closing.wait(RESTART_CHECK_SECONDS):
            with self._lock:
                if not self._process.is_alive() and not self._closing.is_set():
                    log.error("the delivery worker process ended (exit code %s); starting it again",
                              self._process.exitcode)
                    self._process = self._new_process()
                    _start(self._process)

    def close(self, timeout: float = 30.0) -> None:
        with self._lock:  # no new child once closing has begun
            self._closing.set()
        if self._process.pid is None:
            return
        if self._process.is_alive():
            self._process.terminate()  # SIGTERM: finish the rows in hand, then stop
        self._process.join(timeout)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)
