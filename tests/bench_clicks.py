"""Benchmark of Approve clicks, recorded in the outbox before their acknowledgement (issue 7).

What it does, on a temporary PostgreSQL database:

- loads --clients Sales accounts linked to Slack users and --rounds x --clicks one-step customers with an
  overage in PERIOD, and generates PERIOD's DRAFT bills with `bot.billing.generate_month`, which queues
  their messages;
- starts the fake Slack Web API (sandbox/slack.FakeSlack) in a process of its own, then
  `python main.py serve` until its delivery worker has posted every bill, and stops it;
- serves, one after the other, (1) the floors: Bolt apps that only acknowledge an Approve click, one in
  a global middleware, in the request's thread, where the real app records it; one in a listener (Bolt's
  usual way, run in its thread pool, the acknowledgement polled for); and (2) the real app,
  `python main.py serve` (with its delivery worker child); all are the same WSGI application
  (handlers.web.wsgi_app) under waitress, in a child process, with the Web API on the fake;
- waits, once a server answers /healthz, until it and its children are idle (serve's delivery worker child
  is still starting then);
- sends each of them --clicks signed `block_actions` Approve clicks, one per bill, from --clients
  concurrent clients (client i clicks as approver i), and measures each click from sending the
  request to having read the whole answer;
- waits (up to --timeout seconds) until the real app has recorded one APPROVE per bill in
  bill_actions, and until the fake Slack shows every bill's message as FINAL;
- does all of that --rounds times, each round on --clicks bills of its own, with new servers.

One burst lasts about a second, so a single pause of the machine (a virtual machine's CPU taken by its host
for a few tens of milliseconds) slows every click in flight, and a few such pauses decide one burst's p99:
the ratio of one round varies widely for the same code. Each round compares the app with its own floors.

It prints each round's p50 / p99 and ratio (the app's p99 to the lower of the two floors' p99), the times
from the first click until every click is answered, recorded and shown final in Slack, then p50 / p99 / max /
mean of each server over all rounds, and PASS or MISS for: the median round's ratio <= 2 (with how many
rounds were within it), every click recorded once, one message per bill. Exit status 1 when a click was lost,
recorded twice or answered with an error, or a bill has not exactly one message.

Run from the project root:

    .venv/bin/python tests/bench_clicks.py [--clicks 1000] [--clients 20] [--rounds 5] [--database-url URL]

The file name does not start with test_, so pytest does not collect it.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
import http.client
import json
import math
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

PROJECT = Path(__file__).resolve().parents[1]
if str(PROJECT) not in sys.path:
    sys.path.insert(0, str(PROJECT))

import psycopg  # noqa: E402

from bot.periods import Period  # noqa: E402
from bot.slack_ids import ActionId, BlockId, bill_value  # noqa: E402
from sandbox.app_requests import block_actions_body, sign  # noqa: E402
from sandbox.slack import CHANNEL_ID, SIGNING_SECRET, TOKEN  # noqa: E402
from tests.bench_generate import DEFAULT_SERVER, libpq_conninfo, temporary_database  # noqa: E402
from tests.slack_helpers import eventually  # noqa: E402

PERIOD = Period(2026, 10)
MAX_RATIO_TO_FLOOR = 2.0
WARM_UP_REQUESTS = 20


# --- The data ------------------------------------------------------------------------------------

APPROVERS_SQL = """
INSERT INTO users (name, email, role, password_digest, session_token, slack_user_id, created_at)
SELECT 'sales-' || lpad(i::text, 3, '0'), 'sales-' || i || '@example.com', 'sales',
       '$2b$04$' || repeat('x', 53), md5('session-' || i), 'U0SALES' || lpad(i::text, 3, '0'), now()
FROM generate_series(1, %(approvers)s) AS i
"""

# One-step customers (require_csm_approval false), under contract since 2024, each 1,000 to 50,999
# calls over a 100,000-call limit in PERIOD.
CUSTOMERS_SQL = """
INSERT INTO customers (name, billing_address, billing_email, monthly_api_limit, overage_unit_cost,
                       start_date, require_csm_approval)
SELECT 'Customer ' || lpad(i::text, 5, '0'), i || ' Main Street, Springfield',
       'billing@customer-' || i || '.example', 100000, 0.0125, DATE '2024-01-01', false
FROM generate_series(1, %(customers)s) AS i
"""

USAGES_SQL = """
INSERT INTO usages (customer_id, year, month, api_usage)
SELECT id, %(year)s, %(month)s, 101000 + mod(id * 7919, 50000) FROM customers
"""

@dataclass(frozen=True)
class Click:
    bill_id: int
    slack_user_id: str
    slack_ts: str
    version: int  # the bill's latest action when its message was drawn


def slack_user_ids(approvers: int) -> list[str]:
    return [f"U0SALES{i:03d}" for i in range(1, approvers + 1)]


def load_data(url: str, conninfo: str, clicks: int, approvers: int) -> None:
    """Accounts, customers and usage in bulk, PERIOD's bills by generate_month (which queues their messages)."""
    from bot.billing import generate_month
    from db.session import make_engine, make_session_factory

    period = {"year": PERIOD.year, "month": PERIOD.month}
    with psycopg.connect(conninfo) as connection:
        connection.execute(APPROVERS_SQL, {"approvers": approvers})
        connection.execute(CUSTOMERS_SQL, {"customers": clicks})
        connection.execute(USAGES_SQL, period)
    engine = make_engine(url)
    with make_session_factory(engine)() as session:
        summary = generate_month(session=session, period=PERIOD, actor=None, today=PERIOD.shifted(1).first_day)
    engine.dispose()
    if summary.created != clicks:
        raise SystemExit(f"expected {clicks} bills, generate_month created {summary.created}: {summary.lines()}")
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE")


def posted_clicks(conninfo: str, approvers: int) -> list[Click]:
    """One click per posted bill, on the version of the bill its message shows (as its button carries)."""
    with psycopg.connect(conninfo) as connection:
        rows = connection.execute(
            "SELECT b.id, b.slack_ts, max(a.id) FROM bills b JOIN bill_actions a ON a.bill_id = b.id "
            "WHERE b.year = %(year)s AND b.month = %(month)s GROUP BY b.id ORDER BY b.id",
            {"year": PERIOD.year, "month": PERIOD.month},
        ).fetchall()
    users = slack_user_ids(approvers)
    return [Click(bill_id, users[index % approvers], ts, version) for index, (bill_id, ts, version) in enumerate(rows)]


def outbox_pending(conninfo: str) -> int:
    with psycopg.connect(conninfo) as connection:
        return connection.execute("SELECT count(*) FROM outbox WHERE status <> 'done'").fetchone()[0]


def wait_for(condition, what: str, timeout: float, every: float = 0.2) -> float:
    """Poll `condition` until true (tests.slack_helpers.eventually); the seconds waited."""
    start = time.perf_counter()
    eventually(condition, what, timeout, every)
    return time.perf_counter() - start


def approvals_recorded(conninfo: str) -> int:
    with psycopg.connect(conninfo) as connection:
        return connection.execute("SELECT count(*) FROM bill_actions WHERE action = 'APPROVE'").fetchone()[0]


def duplicate_approvals(conninfo: str) -> int:
    """Bills with more than one APPROVE."""
    with psycopg.connect(conninfo) as connection:
        return connection.execute(
            "SELECT count(*) FROM (SELECT bill_id FROM bill_actions WHERE action = 'APPROVE' "
            "GROUP BY bill_id HAVING count(*) > 1) AS twice"
        ).fetchone()[0]


# --- Child processes: the fake Slack and the two servers -------------------------------------------


def run_fake_slack(approvers: int, posts_per_second: float, burst: int) -> None:
    """Child: serve the fake Slack; print its origin, then answer the parent's requests on stdin.

    `final N TIMEOUT`: wait (at most TIMEOUT s) until N bill messages show FINAL; print the time.time() when
    they did.
    `report`: print what reached it as JSON (see FakeSlackProcess.report).
    """
    from sandbox.slack import FakeSlack

    with FakeSlack() as fake:
        if posts_per_second:
            fake.limit_posts(posts_per_second, burst)
        for user_id in slack_user_ids(approvers):
            fake.add_user(user_id, name=user_id.lower(), email=f"{user_id.lower()}@example.com")
        print(fake.origin, flush=True)
        for line in sys.stdin:
            command, _, argument = line.strip().partition(" ")
            if command == "final":
                count, timeout = argument.split()
                eventually(lambda: sum("· FINAL." in m["text"] for m in fake.top_level(CHANNEL_ID)) >= int(count),
                           f"{count} bill messages shown FINAL", float(timeout), every=0.05)
                print(time.time(), flush=True)
            elif command == "report":
                print(json.dumps(fake_report(fake)), flush=True)


def fake_report(fake) -> dict:
    bill_messages = [m for m in fake.top_level(CHANNEL_ID)
                     if "bill_id" in (m.get("metadata") or {}).get("event_payload", {})]
    posts = [c for c in fake.recorded("chat.postMessage") if c.params.get("channel") == CHANNEL_ID
             and not c.params.get("thread_ts")]
    return {
        "calls": Counter(f"{c.method} {c.status}" for c in fake.recorded()),
        "bill_messages": Counter(str(m["metadata"]["event_payload"]["bill_id"]) for m in bill_messages),
        "posted_at": sorted(c.at for c in posts if c.status == 200),
    }


class FakeSlackProcess:
    """The fake Slack in a child process, so that it does not share the clients' interpreter."""

    def __init__(self, approvers: int, posts_per_second: float = 0, burst: int = 1):
        self.child = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--fake-slack-in-this-process",
             f"{approvers},{posts_per_second},{burst}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=PROJECT,
        )
        self.origin = self.child.stdout.readline().strip()

    def ask(self, line: str) -> str:
        self.child.stdin.write(line + "\n")
        self.child.stdin.flush()
        return self.child.stdout.readline().strip()

    def final_at(self, count: int, timeout: float) -> float:
        """The time.time() at which `count` bill messages showed FINAL (waits for it, at most `timeout` s)."""
        return float(self.ask(f"final {count} {timeout}"))

    def report(self) -> dict:
        """calls: "method status" → count; bill_messages: bill id → messages; posted_at: top-level post times."""
        return json.loads(self.ask("report"))

    def close(self) -> None:
        self.child.stdin.close()
        self.child.wait(30)


FLOORS = ("middleware", "listener")


def run_floor_app(where: str) -> None:
    """Child: a Bolt app that only acknowledges Approve clicks, `where` the real app records them (a
    middleware) or in a listener; served like `serve` serves the real one."""
    from slack_bolt import App, BoltResponse
    from slack_bolt.middleware import Middleware

    from bot.settings import load_settings
    from db.session import make_engine
    from handlers.app import LISTENER_THREADS, slack_client
    from handlers.web import serve

    settings = load_settings()
    app = App(
        client=slack_client(settings),  # the client the real app uses
        request_verification_enabled=False,  # handlers/web.py verifies, as it does for the real app
        name="billprocess-floor",
        listener_executor=ThreadPoolExecutor(max_workers=LISTENER_THREADS),  # as many threads as the app's
    )

    if where == "middleware":
        class Acknowledge(Middleware):  # a Middleware class, as the real app's are
            def process(self, *, req, resp, next):
                body = req.body
                if body.get("type") == "block_actions" and body["actions"][0]["action_id"] == ActionId.APPROVE.value:
                    return BoltResponse(status=200, body="")
                return next()

        app.use(Acknowledge())
    else:
        @app.action(ActionId.APPROVE.value)
        def approve(ack):
            ack()

    secret = settings.slack_signing_secret.get_secret_value()
    serve(app, make_engine(settings.sqlalchemy_url), signing_secret=secret, port=settings.port)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def server(command: list[str], env: dict[str, str], workdir: str, log_path: Path,
           idle_timeout: float = 60) -> Iterator[str]:
    """Start a server child process on a free port; yields its base URL once /healthz answers and it is idle."""
    port = free_port()
    with log_path.open("w") as log:
        child = subprocess.Popen(command, env={**env, "PORT": str(port)}, cwd=workdir, stdout=log, stderr=log)
        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_until_healthy(base_url, child, log_path)
            wait_until_idle(child, log_path, idle_timeout)
            yield base_url
        finally:
            child.terminate()
            child.wait(timeout=30)


def wait_until_healthy(base_url: str, child: subprocess.Popen, log_path: Path, timeout: float = 30) -> None:
    def healthy() -> bool:
        if child.poll() is not None:
            raise SystemExit(f"the server exited with {child.returncode}:\n{log_path.read_text()}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", int(base_url.rsplit(":", 1)[1]), timeout=2)
            connection.request("GET", "/healthz")
            return connection.getresponse().status == 200
        except OSError:
            return False

    try:
        eventually(healthy, "/healthz answered", timeout, every=0.1)
    except AssertionError:
        raise SystemExit(f"the server did not answer /healthz within {timeout} s:\n{log_path.read_text()}") from None


def cpu_seconds(pid: int) -> float:
    """The CPU seconds a process and its descendants have used so far, those that ended included (Linux's /proc);
    0 once the process itself has ended."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0.0
    children = []
    for task in tasks:
        try:
            children += [int(child) for child in (task / "children").read_text().split()]
        except FileNotFoundError:
            if task.exists():
                raise  # the kernel does not list children: the wait below would not see the worker
            # else the thread ended while being read
    # utime, stime, and cutime and cstime: those of the children it has waited for (in clock ticks)
    ticks = sum(int(field) for field in stat.rsplit(")", 1)[1].split()[11:15])
    return ticks / os.sysconf("SC_CLK_TCK") + sum(cpu_seconds(child) for child in children)


def wait_until_idle(child: subprocess.Popen, log_path: Path, timeout: float = 60, window: float = 0.5,
                    busy: float = 0.05) -> None:
    """Wait until a server and its children use less than `busy` of a CPU over `window` seconds.

    `serve` answers /healthz while its delivery worker child is still starting (importing for a few
    seconds); the clicks are measured against a server that has started, as the floors are.
    """
    last = (cpu_seconds(child.pid), time.monotonic())

    def idle() -> bool:
        """Whether it was idle since the last look (the poll interval is the window measured over)."""
        nonlocal last
        if child.poll() is not None:
            raise SystemExit(f"the server exited with {child.returncode}:\n{log_path.read_text()}")
        previous, last = last, (cpu_seconds(child.pid), time.monotonic())
        elapsed = last[1] - previous[1]
        return elapsed >= window / 2 and last[0] - previous[0] < busy * elapsed

    try:
        eventually(idle, "the server idle after starting", timeout, every=window)
    except AssertionError:
        raise SystemExit(f"the server was still busy {timeout} s after it started:\n{log_path.read_text()}") from None


# --- The clicks ----------------------------------------------------------------------------------


@dataclass
class Answers:
    """Each click's time to its HTTP answer, in milliseconds, and the clicks answered with an error."""

    milliseconds: list[float]
    errors: list[str]

    def percentile(self, share: float) -> float:
        """The nearest-rank percentile: the smallest time at least `share` percent of clicks did not exceed."""
        ordered = sorted(self.milliseconds)
        return ordered[max(0, math.ceil(len(ordered) * share / 100) - 1)]

    @classmethod
    def together(cls, answers: list[Answers]) -> Answers:
        """Several bursts' answers as one."""
        return cls([ms for one in answers for ms in one.milliseconds],
                   [error for one in answers for error in one.errors])

    def line(self, name: str) -> str:
        return (
            f"{name:<24} p50 {self.percentile(50):7.1f} ms   p99 {self.percentile(99):7.1f} ms   "
            f"max {max(self.milliseconds):7.1f} ms   mean {statistics.fmean(self.milliseconds):6.1f} ms"
        )


def click_body(click: Click, fake_origin: str) -> str:
    return block_actions_body(
        click.slack_user_id,
        ActionId.APPROVE.value,
        bill_value(click.bill_id, click.version),
        block_id=BlockId.BILL_ACTIONS.value,
        message={"ts": click.slack_ts, "channel": CHANNEL_ID, "text": f"Bill #{click.bill_id}"},
        response_url=f"{fake_origin}/response_url/{quote(click.slack_user_id)}",
    )


def post_signed(base_url: str, body: str) -> tuple[int, float]:
    """POST a body signed now, on a new connection as Slack opens them; (status, milliseconds)."""
    port = int(base_url.rsplit(":", 1)[1])
    headers = {**sign(body, SIGNING_SECRET), "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)"}
    start = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", "/slack/events", body=body.encode(), headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status, (time.perf_counter() - start) * 1000
    finally:
        connection.close()


def send_clicks(base_url: str, bodies_by_client: list[list[str]]) -> Answers:
    """Each client sends its bodies one after the other; all clients at once."""
    answers = Answers([], [])
    lock = threading.Lock()
    start_together = threading.Barrier(len(bodies_by_client))

    def client(bodies: list[str]) -> None:
        start_together.wait()
        for body in bodies:
            status, milliseconds = post_signed(base_url, body)
            with lock:
                answers.milliseconds.append(milliseconds)
                if status != 200:
                    answers.errors.append(f"HTTP {status}")

    threads = [threading.Thread(target=client, args=(bodies,)) for bodies in bodies_by_client]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def warm_up(base_url: str) -> None:
    """Connections to the database and the first request's imports, before the clock runs."""
    port = int(base_url.rsplit(":", 1)[1])
    for _ in range(WARM_UP_REQUESTS):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/healthz")
        connection.getresponse().read()
        connection.close()


# --- Main ----------------------------------------------------------------------------------------


def summarize_log(text: str, most: int = 8) -> list[str]:
    """The server's log lines grouped by level, logger and message (numbers as N), most frequent first.

    waitress logs "Task queue depth is N" when every one of its threads is busy and requests wait.
    """
    lines = Counter()
    for line in text.splitlines():
        parts = line.split(" ", 3)
        if len(parts) == 4 and parts[2] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            lines[re.sub(r"\d+", "N", f"{parts[2]} {parts[3]}")] += 1
    return [f"{count:6} x {line}" for line, count in lines.most_common(most)]


def verdict(passed: bool) -> str:
    return "PASS" if passed else "MISS"


@dataclass(frozen=True)
class BurstTimes:
    """Seconds from the first click until every click was answered, recorded, and shown FINAL in Slack."""

    answered: float
    recorded: float
    final: float

    def line(self) -> str:
        return (f"every click answered in {self.answered:.1f} s, recorded in {self.recorded:.1f} s, "
                f"shown FINAL in Slack in {self.final:.1f} s")


def click_burst(base_url: str, bodies_by_client: list[list[str]], conninfo: str, fake: FakeSlackProcess,
                timeout: float, *, before: int = 0) -> tuple[Answers, BurstTimes]:
    """Send the clicks to a warmed-up app and wait until they are applied and shown, and the outbox drained;
    `before` approvals were recorded and shown FINAL earlier."""
    warm_up(base_url)
    clicked_at, clicked_at_wall = time.perf_counter(), time.time()
    answers = send_clicks(base_url, bodies_by_client)
    answered = time.perf_counter() - clicked_at
    expected = before + sum(len(bodies) for bodies in bodies_by_client)
    recorded = answered + wait_for(
        lambda: approvals_recorded(conninfo) >= expected, "every click recorded", timeout, 0.05)
    final = fake.final_at(expected, timeout) - clicked_at_wall
    wait_for(lambda: outbox_pending(conninfo) == 0, "the outbox drained", timeout)
    return answers, BurstTimes(answered, recorded, final)


def app_environment(sqlalchemy_url: str, origin: str, workdir: str, **settings: str) -> dict[str, str]:
    """The environment `main.py serve` / `worker` run with: the database, the fake Slack, quiet logs."""
    return {
        **{name: value for name, value in os.environ.items() if not name.startswith(("SLACK_", "DATABASE_"))},
        "PYTHONPATH": str(PROJECT),
        "DATABASE_URL": sqlalchemy_url,
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": f"{origin}/api/",
        "BILLS_CHANNEL": CHANNEL_ID,
        "MAIL_DIR": str(Path(workdir) / "mail"),
        "TIMEZONE": "UTC",
        "LOG_LEVEL": "WARNING",
        "GENERATE_CRON": "",
        "REMINDER_CRON": "",
        **settings,
    }


def post_the_bills(conninfo: str, env: dict[str, str], workdir: str, timeout: float) -> float:
    """Run `serve` until its delivery worker has posted every queued bill; the seconds from start to stop."""
    start = time.perf_counter()
    with server([sys.executable, str(PROJECT / "main.py"), "serve"], env, workdir, Path(workdir) / "posting.log",
                idle_timeout=timeout):
        wait_for(lambda: outbox_pending(conninfo) == 0, "every bill posted", timeout)
    return time.perf_counter() - start


@dataclass
class Round:
    """One round's answers: the floors' and the app's, and the app's burst times."""

    floors: dict[str, Answers]
    app: Answers
    times: BurstTimes

    @property
    def ratio(self) -> float:
        """The app's p99 to the lower of the floors' p99."""
        return self.app.percentile(99) / min(answers.percentile(99) for answers in self.floors.values())

    def line(self, number: int) -> str:
        floors = ", ".join(f"{where} {answers.percentile(50):.1f} / {answers.percentile(99):.1f}"
                           for where, answers in self.floors.items())
        return (f"round {number}: floors {floors} ms; serve {self.app.percentile(50):.1f} / "
                f"{self.app.percentile(99):.1f} ms ({self.ratio:.2f} x); {self.times.line()}")


def click_round(bodies: list[str], args: argparse.Namespace, conninfo: str, fake: FakeSlackProcess,
                env: dict[str, str], workdir: Path, before: int) -> Round:
    """The clicks on each floor, then on `serve`, each server started for them; its log kept under `workdir`."""
    by_client = [bodies[i :: args.clients] for i in range(args.clients)]
    floors = {}
    for where in FLOORS:
        floor_command = [sys.executable, str(Path(__file__).resolve()), "--floor-app-in-this-process", where]
        with server(floor_command, env, str(workdir), workdir / f"floor-{where}.log") as base_url:
            warm_up(base_url)
            floors[where] = send_clicks(base_url, by_client)
    app_command = [sys.executable, str(PROJECT / "main.py"), "serve"]
    with server(app_command, env, str(workdir), workdir / "app.log") as base_url:
        app, times = click_burst(base_url, by_client, conninfo, fake, args.timeout, before=before)
    return Round(floors, app, times)


def benchmark(url, args: argparse.Namespace) -> int:
    conninfo, sqlalchemy_url = libpq_conninfo(url), url.render_as_string(hide_password=False)
    start = time.perf_counter()
    bills = args.clicks * args.rounds
    load_data(sqlalchemy_url, conninfo, bills, args.clients)
    print(f"loaded {args.clients} linked Sales approvers and {bills:,} one-step DRAFT bills "
          f"for {PERIOD} in {time.perf_counter() - start:.1f} s")

    fake = FakeSlackProcess(args.clients)
    rounds: list[Round] = []
    app_logs = []
    with tempfile.TemporaryDirectory(prefix="bench-clicks-") as workdir:
        env = app_environment(sqlalchemy_url, fake.origin, workdir)
        posting = post_the_bills(conninfo, env, workdir, args.timeout)
        print(f"serve started, posted the {bills:,} bills and stopped in {posting:.1f} s")
        clicks = posted_clicks(conninfo, args.clients)
        print(f"{args.rounds} rounds of {args.clicks:,} Approve clicks from {args.clients} concurrent clients, "
              "each on its own bill (p50 / p99)")
        for number in range(args.rounds):
            round_clicks = clicks[number * args.clicks : (number + 1) * args.clicks]
            round_dir = Path(workdir) / f"round-{number + 1}"
            round_dir.mkdir()
            rounds.append(click_round([click_body(click, fake.origin) for click in round_clicks], args, conninfo,
                                      fake, env, round_dir, before=number * args.clicks))
            print(rounds[-1].line(number + 1), flush=True)
            app_logs.append((round_dir / "app.log").read_text())
        log_summary = summarize_log("".join(app_logs))
    report = fake.report()
    fake.close()
    recorded, twice = approvals_recorded(conninfo), duplicate_approvals(conninfo)
    messages = Counter(report["bill_messages"].values())

    floors = {where: Answers.together([one.floors[where] for one in rounds]) for where in FLOORS}
    app = Answers.together([one.app for one in rounds])
    print()
    print(f"all {len(app.milliseconds):,} clicks of each server together")
    for where, answers in floors.items():
        print(answers.line(f"floor: ack in {where}"))
    print(app.line("BillProcess serve"))
    print(f"fake Slack received: {dict(sorted(report['calls'].items()))}")
    floor_errors = [error for answers in floors.values() for error in answers.errors]
    if app.errors or floor_errors:
        print(f"answers with errors: app {len(app.errors)} {sorted(set(app.errors))}, "
              f"floors {len(floor_errors)} {sorted(set(floor_errors))}")
    if log_summary:
        print("the app's log, every round (times counted, numbers shown as N):\n  " + "\n  ".join(log_summary))
    print()
    ratios = [one.ratio for one in rounds]
    within = sum(ratio <= MAX_RATIO_TO_FLOOR for ratio in ratios)
    median = statistics.median(ratios)
    print(f"p99 <= {MAX_RATIO_TO_FLOOR:.0f} x the lower floor's p99: median round {median:.2f} x "
          f"(rounds {', '.join(f'{ratio:.2f}' for ratio in ratios)}; {within} of {len(ratios)} within)   "
          f"{verdict(median <= MAX_RATIO_TO_FLOOR)}")
    once = recorded == bills and twice == 0 and not app.errors
    print(f"clicks recorded {recorded:,} / {bills:,}, {twice} twice{'':17}{verdict(once)}")
    one_message = messages == Counter({1: bills})
    print(f"one message per bill in Slack (messages per bill: {dict(messages)}){'':3}{verdict(one_message)}")
    return 0 if once and one_message else 1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=1000, help="clicks, one per bill (default 1000)")
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients and approvers (default 20)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, each on bills of its own (default 5)")
    parser.add_argument("--database-url", default=DEFAULT_SERVER, help=f"the PostgreSQL server ({DEFAULT_SERVER})")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for each stage (300)")
    parser.add_argument("--keep", action="store_true", help="keep the database for a closer look")
    parser.add_argument("--fake-slack-in-this-process", metavar="APPROVERS,RATE,BURST", help=argparse.SUPPRESS)
    parser.add_argument("--floor-app-in-this-process", choices=FLOORS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.clicks < 1 or args.rounds < 1 or not 1 <= args.clients <= 999:
        parser.error("--clicks and --rounds must be at least 1 and --clients between 1 and 999")
    return args


def main() -> int:
    args = parse_args()
    if args.fake_slack_in_this_process is not None:
        approvers, rate, burst = args.fake_slack_in_this_process.split(",")
        run_fake_slack(int(approvers), float(rate), int(burst))
        return 0
    if args.floor_app_in_this_process:
        run_floor_app(args.floor_app_in_this_process)
        return 0
    with temporary_database(args.database_url, args.keep) as url:
        return benchmark(url, args)


if __name__ == "__main__":
    sys.exit(main())
