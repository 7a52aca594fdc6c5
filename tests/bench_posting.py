"""Benchmark of posting a month's bills at Slack's rate limit (issue 7): as fast as the limit allows, none lost.

What it does, on a temporary PostgreSQL database:

- loads --bills one-step customers with an overage in PERIOD and generates their DRAFT bills with
  `bot.billing.generate_month`, which queues one message per bill and the month's summary;
- starts the fake Slack (sandbox/slack.FakeSlack) in a process of its own, limiting
  chat.postMessage to --rate messages per second per channel with a burst of --burst, answering
  429 with Retry-After beyond it (Slack allows about one per second; the rate is a parameter so that
  the run is short);
- runs `python main.py worker` until the outbox is drained.

It prints the time from the first accepted post in the bills channel to the last, the minimum the
limit allows for that many posts ((posts - burst) / rate), their ratio, the 429s answered, and PASS or
MISS for: ratio <= 1.15, no bill without a message, no bill with two. Exit status 1 when a message was
lost or duplicated.

Run from the project root:

    .venv/bin/python tests/bench_posting.py [--bills 300] [--rate 10] [--burst 10] [--database-url URL]

The file name does not start with test_, so pytest does not collect it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
if str(PROJECT) not in sys.path:
    sys.path.insert(0, str(PROJECT))

from tests.bench_clicks import (  # noqa: E402
    FakeSlackProcess,
    app_environment,
    load_data,
    outbox_pending,
    summarize_log,
    verdict,
    wait_for,
)
from tests.bench_generate import DEFAULT_SERVER, libpq_conninfo, temporary_database  # noqa: E402

MAX_RATIO_TO_MINIMUM = 1.15


@contextmanager
def running(command: str, env: dict[str, str], workdir: str, log_path: Path,
            *, ready: str | None = None) -> Iterator[subprocess.Popen]:
    """`python main.py COMMAND` in a child process while the block runs; stopped with SIGTERM after it.

    `ready`: wait until the child's log (at INFO) shows this text before the block runs.
    """
    if ready:
        env = {**env, "LOG_LEVEL": "INFO"}
    with log_path.open("a") as log:
        child = subprocess.Popen([sys.executable, str(PROJECT / "main.py"), command], env=env, cwd=workdir,
                                 stdout=log, stderr=log)
    try:
        if ready:
            wait_for(lambda: child.poll() is None and ready in log_path.read_text(), f"{command} ready", 60, 0.05)
        yield child
    finally:
        child.terminate()
        child.wait(timeout=60)


def benchmark(url, args: argparse.Namespace) -> int:
    conninfo, sqlalchemy_url = libpq_conninfo(url), url.render_as_string(hide_password=False)
    load_data(sqlalchemy_url, conninfo, args.bills, 1)
    fake = FakeSlackProcess(1, args.rate, args.burst)
    with tempfile.TemporaryDirectory(prefix="bench-posting-") as workdir:
        env = app_environment(sqlalchemy_url, fake.origin, workdir)
        log_path = Path(workdir) / "worker.log"
        with running("worker", env, workdir, log_path) as worker:
            started = time.perf_counter()
            wait_for(lambda: worker.poll() is None and outbox_pending(conninfo) == 0, "the outbox drained",
                     args.timeout, 0.1)
            drained = time.perf_counter() - started
        log_summary = summarize_log(log_path.read_text())
    report = fake.report()
    fake.close()

    posts = report["posted_at"]
    elapsed = posts[-1] - posts[0]
    minimum = max(0, len(posts) - args.burst) / args.rate
    ratio = elapsed / minimum if minimum else float("inf")
    messages = report["bill_messages"]
    lost = args.bills - len(messages)
    duplicated = sum(1 for count in messages.values() if count > 1)
    limited = report["calls"].get("chat.postMessage 429", 0)

    print(f"{args.bills} bills (and the month's summary) posted by one `worker` at {args.rate:g} messages/s "
          f"per channel, burst {args.burst}")
    print(f"worker start to outbox drained: {drained:.1f} s")
    print(f"first to last of {len(posts)} posts: {elapsed:.1f} s; minimum the limit allows: {minimum:.1f} s; "
          f"ratio {ratio:.3f}; 429 answers: {limited}")
    print(f"fake Slack received: {dict(sorted(report['calls'].items()))}")
    if log_summary:
        print("the worker's log (times counted, numbers shown as N):\n  " + "\n  ".join(log_summary))
    print()
    print(f"elapsed <= {MAX_RATIO_TO_MINIMUM} x minimum{'':28}{verdict(ratio <= MAX_RATIO_TO_MINIMUM)}")
    print(f"bills without a message: {lost}{'':23}{verdict(lost == 0)}")
    print(f"bills with two messages or more: {duplicated} "
          f"(messages per bill: {dict(Counter(messages.values()))}){'':3}{verdict(duplicated == 0)}")
    return 0 if lost == 0 and duplicated == 0 else 1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bills", type=int, default=300, help="bills to post (default 300)")
    parser.add_argument("--rate", type=float, default=10, help="messages per second per channel (default 10)")
    parser.add_argument("--burst", type=int, default=10, help="messages allowed at once (default 10)")
    parser.add_argument("--database-url", default=DEFAULT_SERVER, help=f"the PostgreSQL server ({DEFAULT_SERVER})")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the outbox (300)")
    parser.add_argument("--keep", action="store_true", help="keep the database for a closer look")
    args = parser.parse_args()
    if args.bills < 1 or args.rate <= 0 or args.burst < 1:
        parser.error("--bills, --rate and --burst must be positive")
    return args


def main() -> int:
    args = parse_args()
    with temporary_database(args.database_url, args.keep) as url:
        return benchmark(url, args)


if __name__ == "__main__":
    sys.exit(main())
