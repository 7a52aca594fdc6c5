"""Durable delivery with real processes: `serve` and `worker` started as an operator starts them, killed with
SIGKILL during a burst of clicks, the fake Slack failing, PostgreSQL dropping connections, three workers
sharing the scheduler. What must hold each time: every acknowledged click recorded exactly once, every
bill's message showing its final state, one message per bill and one thread reply per action.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from bot.billing import generate_month
from bot.home import reminders_due
from bot.periods import Period
from bot.slack_ids import ActionId
from db.models import ActionType, Bill, BillAction, BillStatus, Outbox, OutboxStatus, Role, ScheduledRun, User, utcnow
from db.session import make_session_factory
from sandbox.app_requests import SlackSender, block_actions_body
from sandbox.slack import CHANNEL_ID, SIGNING_SECRET, TOKEN, FakeSlack
from tests.factories import add_customer, add_user
from tests.slack_helpers import eventually, texts

ROOT = Path(__file__).resolve().parents[1]
PERIOD = Period(2026, 10)
APPROVER = "U0SALES001"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


class Process:
    """One `python main.py COMMAND` (serve or worker), with its log in a file."""

    def __init__(self, command: str, env: dict[str, str], workdir: Path, name: str):
        self.command, self.env, self.workdir, self.name = command, env, workdir, name
        self.popen: subprocess.Popen | None = None
        self.port: int | None = None
        self.starts = 0
        self.orphans: list[int] = []  # worker children of a killed `serve`, stopping on their own

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Process:
        self.starts += 1
        env = dict(self.env)
        if self.command == "serve":
            self.port = _free_port()
            env["PORT"] = str(self.port)
        with self.log.open("a") as log:
            log.write(f"--- start {self.starts}\n")
            self.popen = subprocess.Popen([sys.executable, str(ROOT / "main.py"), self.command], env=env,
                                          cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)
        if self.command == "serve":
            eventually(self._healthy, f"{self.name} answering /healthz\n{self.log.read_text()}", timeout=60, every=0.1)
        return self

    def _healthy(self) -> bool:
        assert self.popen.poll() is None, f"{self.name} exited:\n{self.log.read_text()}"
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    def children(self) -> list[int]:
        """The delivery worker children (multiprocessing's resource tracker aside)."""
        try:
            found = Path(f"/proc/{self.popen.pid}/task/{self.popen.pid}/children").read_text().split()
            return [int(pid) for pid in found if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        except OSError:
            return []

    def kill(self) -> None:
        """SIGKILL, as the kernel's OOM killer or a pulled plug would; the worker child is left to notice."""
        self.orphans += self.children()
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def kill_worker_child(self) -> None:
        """SIGKILL the delivery worker that `serve` runs as its child; `serve` goes on answering."""
        [child] = eventually(self.children, f"{self.name}'s worker child", timeout=60, every=0.1)
        os.kill(child, signal.SIGKILL)
        eventually(lambda: not _alive(child), "the killed worker child gone", timeout=10, every=0.1)

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        for pid in self.orphans:
            try:
                eventually(lambda: not _alive(pid), f"orphaned worker {pid} stopping by itself", timeout=30, every=0.1)
            except AssertionError:
                os.kill(pid, signal.SIGKILL)
                raise

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


class Site:
    """The fake Slack, the database and the processes of one test."""

    def __init__(self, fake: FakeSlack, database_url: str, engine, workdir: Path, **settings: str):
        self.fake = fake
        self.sessions = make_session_factory(engine)
        self.engine = engine
        self.workdir = workdir
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "SLACK_API_URL": fake.url,
            "SLACK_BOT_TOKEN": TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "BILLS_CHANNEL": CHANNEL_ID,
            "MAIL_DIR": str(workdir / "mail"),
            "TIMEZONE": "UTC",
            "LOG_LEVEL": "WARNING",
            "OUTBOX_LEASE_SECONDS": "3",  # a killed process's rows are taken over within seconds
            "DELIVERY_POLL_SECONDS": "0.1",
            "DELIVERY_MAX_BACKOFF": "1",
            "SLACK_TIMEOUT_SECONDS": "2",
            "GENERATE_CRON": "",
            "REMINDER_CRON": "",
            **settings,
        }
        self.processes: list[Process] = []

    def process(self, command: str, name: str | None = None) -> Process:
        process = Process(command, self.env, self.workdir, name or f"{command}-{len(self.processes)}")
        self.processes.append(process)
        return process.start()

    def close(self) -> None:
        for process in self.processes:
            process.stop()

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.log.read_text()[-4000:]}" for p in self.processes)

    # --- data ------------------------------------------------------------------------------------

    def one_step_bills(self, count: int, period: Period = PERIOD) -> list[int]:
        """`count` DRAFT bills that one Sales approval finishes; their messages queued for Slack."""
        with self.sessions() as session:
            if session.scalar(select(User).where(User.slack_user_id == APPROVER)) is None:
                add_user(session, "Sam Sales", Role.SALES, slack_user_id=APPROVER)
            for number in range(count):
                add_customer(session, f"Customer {period} {number:04d}", limit=1000,
                             usage={(period.year, period.month): 2000 + number})
            summary = generate_month(session=session, period=period, actor=None, today=period.shifted(1).first_day)
        assert summary.created == count
        with self.sessions() as session:
            return list(session.scalars(
                select(Bill.id).where(Bill.year == period.year, Bill.month == period.month).order_by(Bill.id)))

    # --- what the database and Slack show --------------------------------------------------------

    def approvals(self) -> Counter:
        with self.sessions() as session:
            return Counter(dict(session.execute(
                select(BillAction.bill_id, func.count()).where(BillAction.action == ActionType.APPROVE)
                .group_by(BillAction.bill_id)).all()))

    def unfinished(self) -> int:
        with self.sessions() as session:
            return session.scalar(select(func.count()).select_from(Outbox).where(Outbox.status != OutboxStatus.DONE))

    def bills(self, ids: list[int]) -> list[Bill]:
        with self.sessions() as session:
            return list(session.scalars(select(Bill).where(Bill.id.in_(ids)).order_by(Bill.id)))

    def shows_final_state(self, bill: Bill) -> bool:
        if bill.slack_ts is None:
            return False
        message = self.fake.message(bill.slack_channel, bill.slack_ts)
        return message is not None and f"Bill #{bill.id} " in message["text"] and \
            f"· {bill.status.value}." in message["text"]

    def settled(self, ids: list[int], approved: bool) -> bool:
        """Nothing left to deliver, and Slack shows every bill as the database has it."""
        if self.unfinished():
            return False
        bills = self.bills(ids)
        if approved and any(bill.status is not BillStatus.FINAL for bill in bills):
            return False
        return all(self.shows_final_state(bill) for bill in bills)

    def wait_settled(self, ids: list[int], *, approved: bool, timeout: float = 90) -> None:
        try:
            eventually(lambda: self.settled(ids, approved), "Slack showing every bill's final state", timeout, every=0.1)
        except AssertionError:
            with self.sessions() as session:
                rows = session.scalars(select(Outbox).where(Outbox.status != OutboxStatus.DONE).limit(10)).all()
                left = [(r.id, r.kind.value, r.status.value, r.attempts, r.last_error) for r in rows]
            raise AssertionError(f"not settled; outbox left: {left}\n{self.logs()}") from None

    def assert_exactly_once(self, ids: list[int], *, approved: bool) -> None:
        """One APPROVE per bill (when clicked), one message per bill showing its state, one reply per action."""
        bills = self.bills(ids)
        if approved:
            assert self.approvals() == Counter({bill_id: 1 for bill_id in ids})
        top = self.fake.top_level(CHANNEL_ID)
        posted = Counter(m["metadata"]["event_payload"].get("bill_id") for m in top if m.get("metadata"))
        assert {bill_id: posted[bill_id] for bill_id in ids} == {bill_id: 1 for bill_id in ids}
        with self.sessions() as session:
            actions = dict(session.execute(
                select(BillAction.bill_id, BillAction.id)
                .where(BillAction.bill_id.in_(ids), BillAction.action == ActionType.APPROVE)).all())
        for bill in bills:
            assert self.shows_final_state(bill), self.fake.message(bill.slack_channel, bill.slack_ts)
            replies = self.fake.thread_replies(CHANNEL_ID, bill.slack_ts)
            expected = [actions[bill.id]] if bill.id in actions else []
            assert [m["metadata"]["event_payload"]["action_id"] for m in replies] == expected
        with self.sessions() as session:
            failed = session.scalars(select(Outbox).where(Outbox.status == OutboxStatus.FAILED)).all()
        assert [(row.kind.value, row.last_error) for row in failed] == []


@pytest.fixture
def site(cli_env, database_url, engine) -> Iterator[Callable[..., Site]]:
    sites: list[Site] = []

    def make(**settings: str) -> Site:
        fake = FakeSlack().start()
        made = Site(fake, database_url, engine, cli_env, **settings)
        sites.append(made)
        return made

    yield make
    for made in sites:
        made.close()
        made.fake.stop()


# --- clicks, as people make them -------------------------------------------------------------------------


def approve_button(message: dict) -> str:
    """The value of the Approve button in a bill's message, as a person clicking it sends it."""
    for block in message["blocks"]:
        for element in block.get("elements") or []:
            if element.get("action_id") == ActionId.APPROVE.value:
                return element["value"]
    raise AssertionError(f"no Approve button in {texts(message)}")


class Burst:
    """Approve clicks on every bill from several people at once; a click not answered 200 is clicked again."""

    def __init__(self, site: Site, server: Process, ids: list[int], clients: int = 10):
        self.site, self.server = site, server
        bills = site.bills(ids)
        self.clicks = [(bill, approve_button(site.fake.message(bill.slack_channel, bill.slack_ts))) for bill in bills]
        self.clients = clients
        self.answered = 0
        self.refused = Counter()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> Burst:
        for number in range(self.clients):
            thread = threading.Thread(target=self._client, args=(self.clicks[number::self.clients],), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _client(self, clicks) -> None:
        for bill, value in clicks:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                # A fresh body each time: a new trigger id and signature, as a second click has.
                body = block_actions_body(APPROVER, ActionId.APPROVE.value, value, message={
                    "ts": bill.slack_ts, "channel": bill.slack_channel}, response_url=self.site.fake.response_url(
                    f"bill-{bill.id}"))
                try:
                    status = SlackSender(self.server.url).post(body, timeout=10).status
                except OSError:
                    status = None
                with self._lock:
                    if status == 200:
                        self.answered += 1
                        break
                    self.refused[status] += 1
                time.sleep(0.05)  # the person clicks again a moment later
            else:
                raise AssertionError(f"the click on bill #{bill.id} was never answered 200")

    def wait_answered(self, count: int) -> None:
        eventually(lambda: self.answered >= count, f"{count} clicks answered", timeout=60, every=0.01)

    def join(self) -> None:
        for thread in self._threads:
            thread.join(90)
        assert self.answered == len(self.clicks)


# --- the tests --------------------------------------------------------------------------------------------


def test_sigkill_during_a_burst_of_clicks_loses_nothing_and_duplicates_nothing(site, database_url):
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    print(f"random seed {seed}")  # shown with a failure's captured output
    several = database_url.startswith("postgresql")
    here = site()
    ids = here.one_step_bills(200)
    server = here.process("serve")
    worker = here.process("worker") if several else None
    here.wait_settled(ids, approved=False)

    burst = Burst(here, server, ids).start()
    kills = sorted(rng.sample(range(10, 190), 3))
    print(f"kills after {kills} clicks answered")
    burst.wait_answered(kills[0])
    if worker:
        worker.kill()
        worker.start()
    else:
        server.kill_worker_child()
        server.kill()
        server.start()
    burst.wait_answered(kills[1])
    server.kill()  # its worker child notices and stops; rows it held are taken over when their lease ends
    server.start()
    burst.wait_answered(kills[2])
    if worker:
        server.kill_worker_child()  # `serve` keeps answering; the standalone worker takes over
        worker.kill()
        worker.start()
    else:
        server.kill()
        server.start()
    burst.join()

    here.wait_settled(ids, approved=True)
    here.assert_exactly_once(ids, approved=True)


def test_slack_failing_then_recovering_leaves_slack_and_the_database_agreeing_without_a_restart(site):
    here = site(SLACK_TIMEOUT_SECONDS="1")
    fake = here.fake
    ids = here.one_step_bills(60)
    # Posting the bills: 15 answers of HTTP 500, then three 429s with Retry-After, then Slack hangs.
    fake.server_error("chat.postMessage", times=15)
    fake.rate_limit("chat.postMessage", retry_after=2, times=3)
    server = here.process("serve")
    eventually(lambda: len([c for c in fake.recorded("chat.postMessage") if c.status == 429]) >= 3,
               "the 500s and 429s used up", timeout=60, every=0.1)
    fake.delay("chat.postMessage", 2.5)  # each post is made but answered after the client gave up
    hung = len(fake.recorded("chat.postMessage"))
    eventually(lambda: len(fake.recorded("chat.postMessage")) >= hung + 6, "posts made while Slack hangs", timeout=60, every=0.1)
    fake.delay("chat.postMessage", 0)
    here.wait_settled(ids, approved=False)

    # Approving them: chat.update fails ten times, thread replies are rate limited.
    fake.server_error("chat.update", times=10)
    fake.rate_limit("chat.postMessage", retry_after=1, times=4)
    fake.delay("chat.update", 1.5)
    burst = Burst(here, server, ids).start()
    eventually(lambda: len(fake.recorded("chat.update")) >= 15, "updates made while Slack hangs", timeout=60, every=0.1)
    fake.delay("chat.update", 0)
    burst.join()
    here.wait_settled(ids, approved=True)

    here.assert_exactly_once(ids, approved=True)
    assert fake.recorded("conversations.history")  # posts whose answer never came were looked up, not repeated
    assert server.starts == 1 and server.running
    assert "Traceback" not in server.log.read_text()


@pytest.mark.postgres_only  # several instances and dropped connections: SQLite runs one instance
def test_postgresql_dropping_every_connection_under_load_is_survived_without_a_restart(site, database_url):
    here = site()
    ids = here.one_step_bills(100)
    server = here.process("serve")
    worker = here.process("worker")
    here.wait_settled(ids, approved=False)

    def drop_connections() -> int:
        with here.engine.connect() as connection:
            return connection.execute(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar_one()

    burst = Burst(here, server, ids).start()
    dropped = 0
    for answered in (10, 30, 50, 70, 90):
        burst.wait_answered(answered)
        dropped += drop_connections()
    burst.join()
    dropped += drop_connections()  # and once more while the clicks are applied
    here.wait_settled(ids, approved=True)

    assert dropped >= 10
    here.assert_exactly_once(ids, approved=True)
    assert server.starts == 1 and worker.starts == 1 and server.running and worker.running
    with urllib.request.urlopen(f"{server.url}/healthz", timeout=5) as answer:
        assert json.loads(answer.read())["ok"] is True


@pytest.mark.postgres_only  # several instances and dropped connections: SQLite runs one instance
def test_three_workers_run_a_just_missed_occurrence_once(site, database_url):
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=1)
    just_missed = f"{now.minute} {now.hour} * * *"
    here = site(GENERATE_CRON=just_missed, REMINDER_CRON=just_missed, REMINDER_AFTER_DAYS="0")
    generated = Period.containing(now.date()).shifted(-1)
    waiting = here.one_step_bills(5, generated.shifted(-1))  # bills waiting on both approvers already
    with here.sessions() as session:
        add_user(session, "Sue Sales", Role.SALES, slack_user_id="U0SALES002")
        for number in range(20):
            add_customer(session, f"Scheduled {number:02d}", limit=1000,
                         usage={(generated.year, generated.month): 1500 + number})
    for number in range(3):
        here.process("worker", f"worker-{number}")

    def month_generated() -> list[int]:
        with here.sessions() as session:
            runs = session.scalars(select(ScheduledRun.job).where(ScheduledRun.job.in_(["generate", "remind"]))).all()
            ids = session.scalars(select(Bill.id).where(Bill.year == generated.year, Bill.month == generated.month)).all()
        return list(ids) if sorted(runs) == ["generate", "remind"] else []

    new = eventually(month_generated, "both occurrences run", timeout=60, every=0.1)
    here.wait_settled(waiting + new, approved=False)

    with here.sessions() as session:
        jobs = sorted(session.scalars(select(ScheduledRun.job)).all())
        # Each occurrence once across the three; the daily end of absences may have caught up too.
        assert [job for job in jobs if job != "absences"] == ["generate", "remind"] and jobs.count("absences") <= 1
        approvers = session.scalars(select(User).where(User.slack_user_id.is_not(None))).all()
        due = {u.slack_user_id for u in approvers if reminders_due(session=session, user=u, now=utcnow(), after_days=0)}
    assert len(new) == 20 and due == {APPROVER, "U0SALES002"}
    here.assert_exactly_once(waiting + new, approved=False)
    summaries = [m["text"] for m in here.fake.top_level(CHANNEL_ID) if "bill_id" not in m["metadata"]["event_payload"]]
    assert len([summary for summary in summaries if generated.label in summary]) == 1
    for slack_user_id in due:
        reminders = here.fake.top_level(here.fake.dm_channel(slack_user_id))
        assert [m["metadata"]["event_payload"]["day"] for m in reminders] == [now.date().isoformat()]
