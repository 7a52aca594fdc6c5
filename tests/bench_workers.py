"""Benchmark of delivery scaling out (issue 7): a burst of Approve clicks until Slack shows every final state,
with one and with two delivery worker processes.

What it does, for each of --workers (default "1,2"), on a temporary PostgreSQL database of its own:

- loads --clicks one-step bills and --clients linked Sales approvers (as tests/bench_clicks.py does),
  and has `serve` post every bill to the fake Slack (sandbox/slack.FakeSlack, in a process of
  its own) before the clock runs;
- starts `python main.py serve`, whose delivery worker child is the first worker, and N - 1 more
  `python main.py worker` processes;
- sends the clicks, one per bill, from --clients concurrent clients, and measures from the first
  click until every APPROVE is recorded and until the fake Slack shows every bill's message as FINAL.

It prints both times for each N and how they scale (the one-worker time divided by the N-worker time).
Timings are printed, not asserted; exit status 1 when a click was lost, recorded twice, or a bill has
other than one message.

Run from the project root:

    .venv/bin/python tests/bench_workers.py [--clicks 1000] [--clients 20] [--workers 1,2] [--database-url URL]

The file name does not start with test_, so pytest does not collect it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
if str(PROJECT) not in sys.path:
    sys.path.insert(0, str(PROJECT))

from tests.bench_clicks import (  # noqa: E402
    BurstTimes,
    FakeSlackProcess,
    app_environment,
    approvals_recorded,
    click_body,
    click_burst,
    duplicate_approvals,
    load_data,
    post_the_bills,
    posted_clicks,
    server,
    verdict,
)
from tests.bench_generate import DEFAULT_SERVER, libpq_conninfo, temporary_database  # noqa: E402
from tests.bench_posting import running  # noqa: E402


@dataclass(frozen=True)
class Run:
    workers: int
    times: BurstTimes
    sound: bool  # every click recorded once, one message per bill


def run(workers: int, args: argparse.Namespace) -> Run:
    with temporary_database(args.database_url, False) as url:
        conninfo, sqlalchemy_url = libpq_conninfo(url), url.render_as_string(hide_password=False)
        load_data(sqlalchemy_url, conninfo, args.clicks, args.clients)
        fake = FakeSlackProcess(args.clients)
        with tempfile.TemporaryDirectory(prefix="bench-workers-") as workdir, ExitStack() as processes:
            env = app_environment(sqlalchemy_url, fake.origin, workdir)
            post_the_bills(conninfo, env, workdir, args.timeout)
            clicks = posted_clicks(conninfo, args.clients)
            bodies = [click_body(click, fake.origin) for click in clicks]
            by_client = [bodies[i :: args.clients] for i in range(args.clients)]
            base_url = processes.enter_context(
                server([sys.executable, str(PROJECT / "main.py"), "serve"], env, workdir, Path(workdir) / "serve.log"))
            for number in range(1, workers):
                processes.enter_context(
                    running("worker", env, workdir, Path(workdir) / f"worker-{number}.log", ready="started"))
            answers, times = click_burst(base_url, by_client, conninfo, fake, args.timeout)
        report = fake.report()
        fake.close()
        sound = (
            not answers.errors
            and approvals_recorded(conninfo) == len(clicks)
            and duplicate_approvals(conninfo) == 0
            and sorted(report["bill_messages"].values()) == [1] * len(clicks)
        )
    return Run(workers, times, sound)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=1000, help="clicks, one per bill (default 1000)")
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients and approvers (default 20)")
    parser.add_argument("--workers", default="1,2", help="worker process counts to compare (default 1,2)")
    parser.add_argument("--database-url", default=DEFAULT_SERVER, help=f"the PostgreSQL server ({DEFAULT_SERVER})")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for each stage (300)")
    args = parser.parse_args()
    args.workers = [int(count) for count in args.workers.split(",")]
    if args.clicks < 1 or not 1 <= args.clients <= 999 or min(args.workers) < 1:
        parser.error("--clicks and --workers must be at least 1, --clients between 1 and 999")
    return args


def main() -> int:
    args = parse_args()
    runs = []
    for workers in args.workers:
        result = run(workers, args)
        runs.append(result)
        print(f"{workers} worker process(es), {args.clicks:,} clicks, from the first click: {result.times.line()}"
              f"   {verdict(result.sound)}", flush=True)
    base = runs[0]
    print()
    print(f"{os.cpu_count()} CPU cores; every process, PostgreSQL and the fake Slack share them")
    for result in runs[1:]:
        before, after = base.times.final, result.times.final
        print(f"{result.workers} workers vs {base.workers}: every final state x{before / after:.2f} as fast "
              f"({before:.1f} s -> {after:.1f} s)")
    return 0 if all(result.sound for result in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
