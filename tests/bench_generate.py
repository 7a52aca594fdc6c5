"""Benchmark of monthly bill generation (SPEC §3) on PostgreSQL at scale.

What it measures, for one month of usage of --customers customers (100,000 by default):

- the wall time of `bot.billing.generate_month`, each run in a fresh child process, and that
  process's peak RSS (VmHWM, or ru_maxrss where there is no /proc);
- the wall time of one hand-written SQL statement that creates the same bills and DRAFT actions
  (`WITH new AS (INSERT INTO bills ... RETURNING id), drafted AS (INSERT INTO bill_actions ... FROM new
  RETURNING bill_id) INSERT INTO outbox ... FROM drafted`: the bills, their DRAFT actions, their queued messages),
  run through psycopg directly.

The two alternate, --repeat times each, starting from no bills for the month every time. Every run
must produce the same bills (count, total and a digest of every row) or the script exits with 1.
It prints the medians, the ratio generate/reference and the peak RSS against the targets
(ratio <= 1.5, peak RSS <= 250 MB) as PASS or MISS. Timings are printed, never asserted.

The data is a realistic mix (see MIX): most customers within their limit, a fifth over it, some in
their first three months, a few not under contract, without usage, or over by less than a cent.
--history-months adds earlier months of usage and their bills, as a database in production has.

Run from the project root:

    .venv/bin/python tests/bench_generate.py [--customers 100000] [--database-url URL] [--repeat 3]

--database-url names the PostgreSQL server (default postgresql+psycopg://postgres@127.0.0.1:5432);
the benchmark creates a temporary database there, migrates it, and drops it at the end (unless
--keep). The file name does not start with test_, so pytest does not collect it.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
if str(PROJECT) not in sys.path:
    sys.path.insert(0, str(PROJECT))

import psycopg  # noqa: E402
from sqlalchemy.engine import URL, make_url  # noqa: E402

from bot.periods import Period  # noqa: E402

DEFAULT_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
PERIOD = Period(2026, 10)
MAX_RATIO = 1.5
MAX_PEAK_RSS_MB = 250

# What each customer looks like in PERIOD, in percent; the names are the summary's reasons.
MIX = [
    ("not under contract", 2),
    ("first three months", 5),
    ("no usage recorded", 3),
    ("below one cent", 2),
    ("billed", 20),
    ("within limit", 68),
]
assert sum(share for _, share in MIX) == 100


# --- The data ------------------------------------------------------------------------------------


def _kind_of(column: str) -> str:
    """SQL that gives the MIX kind of a customer id: ids are spread over the kinds by id % 100."""
    branches, upper = [], 0
    for kind, share in MIX:
        upper += share
        branches.append(f"WHEN mod({column}, 100) < {upper} THEN '{kind}'")
    return "CASE " + " ".join(branches) + " END"


# Each customer's kind and contract. First three months: starts in PERIOD or one of the two months
# before. Not under contract: ended before PERIOD, or starts after it. Everyone else started 3 to 50
# months before PERIOD; one in five has a contract ending a year later, one in fifty mid-PERIOD.
PLAN_SQL = f"""
CREATE TEMP TABLE plan ON COMMIT DROP AS
SELECT id, kind, start_date,
       CASE WHEN kind = 'not under contract' AND start_date < %(first_day)s
                THEN %(first_day)s - 1 - mod(id, 60)
            WHEN mod(id, 5) = 0 THEN %(last_day)s + 365
            WHEN mod(id, 50) = 1 THEN greatest(start_date, %(first_day)s + 10)
       END AS end_date
FROM (
    SELECT id, kind,
           CASE WHEN kind = 'first three months'
                    THEN (%(first_day)s - make_interval(months => mod(id, 3)))::date + mod(id, 28)
                WHEN kind = 'not under contract' AND mod(id, 2) = 0
                    THEN (%(first_day)s - make_interval(years => 2))::date
                WHEN kind = 'not under contract'
                    THEN %(last_day)s + 1 + mod(id, 60)
                ELSE (%(first_day)s - make_interval(months => 3 + mod(id, 48)))::date + mod(id, 28)
           END AS start_date
    FROM (SELECT i AS id, {_kind_of("i")} AS kind FROM generate_series(1, %(customers)s) AS i) AS kinds
) AS starts
"""

CUSTOMERS_SQL = """
INSERT INTO customers (id, name, billing_address, billing_email, monthly_api_limit, overage_unit_cost,
                       start_date, end_date, require_csm_approval)
SELECT id,
       'Customer ' || lpad(id::text, 7, '0'),
       id || ' Main Street, Springfield',
       'billing@customer-' || id || '.example',
       (10 + mod(id, 91)) * 10000,
       CASE WHEN kind = 'below one cent' THEN 0.000125 ELSE (1 + mod(id, 80)) * 0.000125 END,
       start_date,
       end_date,
       mod(id, 4) = 0
FROM plan;
SELECT setval(pg_get_serial_sequence('customers', 'id'), (SELECT max(id) FROM customers));
"""

# Usage of PERIOD by kind: within limit is 50-100% of the limit, below one cent is 1-39 calls over
# at 0.000125 (40 would round up to 0.01), everyone else is 1,000 or more calls over.
USAGES_SQL = """
INSERT INTO usages (customer_id, year, month, api_usage)
SELECT c.id, %(year)s, %(month)s,
       CASE p.kind
           WHEN 'within limit' THEN c.monthly_api_limit * (50 + mod(c.id, 51)) / 100
           WHEN 'below one cent' THEN c.monthly_api_limit + 1 + mod(c.id, 39)
           ELSE c.monthly_api_limit + 1000 + mod(c.id::bigint * 7919, 500000)
       END
FROM plan AS p JOIN customers AS c USING (id)
WHERE p.kind <> 'no usage recorded'
"""

# Earlier months: everyone with usage, 60-119% of the limit.
HISTORY_SQL = """
INSERT INTO usages (customer_id, year, month, api_usage)
SELECT c.id, %(year)s, %(month)s, c.monthly_api_limit * (60 + mod(c.id + 13 * %(month)s, 60)) / 100
FROM plan AS p JOIN customers AS c USING (id)
WHERE p.kind <> 'no usage recorded'
"""


def load_data(conninfo: str, customers: int, history_months: int) -> None:
    """Customers, usage of PERIOD and of `history_months` before it, and the earlier months' bills."""
    with psycopg.connect(conninfo) as connection:
        dates = {"first_day": PERIOD.first_day, "last_day": PERIOD.last_day}
        connection.execute(PLAN_SQL, {**dates, "customers": customers})
        connection.execute(CUSTOMERS_SQL)
        connection.execute(USAGES_SQL, {"year": PERIOD.year, "month": PERIOD.month})
        for back in range(history_months, 0, -1):
            earlier = PERIOD.shifted(-back)
            connection.execute(HISTORY_SQL, {"year": earlier.year, "month": earlier.month})
    for back in range(history_months, 0, -1):
        run_reference(conninfo, PERIOD.shifted(-back))
    vacuum_analyze(conninfo)


def expected_mix(conninfo: str) -> dict[str, int]:
    """How many customers of each MIX kind were loaded."""
    with psycopg.connect(conninfo) as connection:
        rows = connection.execute(f"SELECT {_kind_of('id')}, count(*) FROM customers GROUP BY 1").fetchall()
    return {kind: count for kind, count in rows}


def vacuum_analyze(conninfo: str, *tables: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f"VACUUM ANALYZE {', '.join(tables)}")


# --- The runs ------------------------------------------------------------------------------------


# "Not already billed" is the unique key's ON CONFLICT DO NOTHING, not NOT EXISTS (SELECT FROM bills ...):
# when the month has no bills yet, PostgreSQL plans NOT EXISTS as a nested loop over a sequential scan of
# bills, which rescans the rows this same statement is adding, once per bill (quadratic: 2.5 s, not 0.45 s,
# for 20,000 bills).
REFERENCE_SQL = """
WITH new AS (
    INSERT INTO bills (customer_id, year, month, api_usage, monthly_api_limit, overage_units,
                       overage_unit_cost, overage_amount, status, created_at, updated_at)
    SELECT c.id, u.year, u.month, u.api_usage, c.monthly_api_limit, u.api_usage - c.monthly_api_limit,
           c.overage_unit_cost, round((u.api_usage - c.monthly_api_limit) * c.overage_unit_cost, 2),
           'DRAFT', now(), now()
    FROM customers AS c
    JOIN usages AS u ON u.customer_id = c.id AND u.year = %(year)s AND u.month = %(month)s
    WHERE c.start_date <= %(last_day)s
      AND (c.end_date IS NULL OR c.end_date >= %(first_day)s)
      AND c.start_date < %(first_billable_start)s
      AND u.api_usage > c.monthly_api_limit
      AND round((u.api_usage - c.monthly_api_limit) * c.overage_unit_cost, 2) > 0
    ON CONFLICT (customer_id, year, month) DO NOTHING
    RETURNING id
), drafted AS (
    INSERT INTO bill_actions (bill_id, stakeholder_id, origin, action, status_after, created_at)
    SELECT id, NULL, 'scheduler', 'DRAFT', 'DRAFT', now() FROM new
    RETURNING bill_id
)
INSERT INTO outbox (kind, lane, bill_id, status, attempts, outcome_unknown, available_at, created_at)
SELECT 'bill_message', 'bill:' || bill_id, bill_id, 'pending', 0, false, now(), now() FROM drafted
"""


def run_reference(conninfo: str, period: Period) -> float:
    """Create the bills of `period` with REFERENCE_SQL; the seconds the statement and commit took."""
    params = {
        "year": period.year,
        "month": period.month,
        "first_day": period.first_day,
        "last_day": period.last_day,
        # The start month and the two after it are free: a contract is billed from its fourth month.
        "first_billable_start": period.shifted(-2).first_day,
    }
    with psycopg.connect(conninfo) as connection:
        start = time.perf_counter()
        connection.execute(REFERENCE_SQL, params)
        connection.commit()
        return time.perf_counter() - start


@dataclass(frozen=True)
class GenerateRun:
    """One generate_month as its child process measured it."""

    seconds: float
    peak_rss_mb: float
    rss_before_mb: float  # the peak before the call: interpreter, imports, the connection
    created: int
    total: str
    skipped: dict[str, int]


def run_generate(url: str) -> GenerateRun:
    """Run generate_month for PERIOD in a fresh Python process; its timing and peak RSS."""
    result = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--generate-in-this-process", url],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"generate_month failed in the child process:\n{result.stderr}")
    return GenerateRun(**json.loads(result.stdout.splitlines()[-1]))


def generate_in_this_process(url: str) -> None:
    """The child's side of run_generate: generate PERIOD and print the measurements as JSON."""
    from bot.billing import generate_month
    from db.session import make_engine, make_session_factory

    engine = make_engine(url)
    with engine.connect():  # connect and learn the server's dialect before the clock starts
        pass
    sessions = make_session_factory(engine)
    month_after = PERIOD.shifted(1)
    rss_before = peak_rss_mb()
    start = time.perf_counter()
    with sessions() as session:
        summary = generate_month(session=session, period=PERIOD, actor=None, today=month_after.first_day)
    seconds = time.perf_counter() - start
    engine.dispose()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_rss_mb": peak_rss_mb(),
                "rss_before_mb": rss_before,
                "created": summary.created,
                "total": str(sum(summary.totals.values(), Decimal(0))),  # every customer here bills in USD
                "skipped": {reason.value: count for reason, count in summary.skipped.items()},
            }
        )
    )


def peak_rss_mb() -> float:
    """This process's peak resident set size.

    Linux keeps ru_maxrss across exec, so a child started by a bigger parent would report the
    parent's peak; VmHWM belongs to the process's own memory and is read where /proc has it.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


@dataclass(frozen=True)
class Bills:
    """What a run left in the database for PERIOD, enough to tell two runs apart."""

    count: int
    total: str
    digest: str
    draft_actions: int
    queued_messages: int  # the bills' messages queued in the outbox, in the same transaction


BILLS_SQL = """
SELECT count(*),
       coalesce(sum(overage_amount), 0.00)::text,
       md5(coalesce(string_agg(
           concat_ws(':', customer_id, api_usage, monthly_api_limit, overage_units, overage_unit_cost,
                     overage_amount, status),
           ',' ORDER BY customer_id), '')),
       (SELECT count(*) FROM bill_actions AS a JOIN bills AS b ON b.id = a.bill_id
        WHERE b.year = %(year)s AND b.month = %(month)s AND a.action = 'DRAFT' AND a.stakeholder_id IS NULL
          AND a.origin = 'scheduler' AND a.status_before IS NULL AND a.status_after = 'DRAFT'),
       (SELECT count(*) FROM outbox AS o JOIN bills AS b ON b.id = o.bill_id
        WHERE b.year = %(year)s AND b.month = %(month)s AND o.kind = 'bill_message' AND o.status = 'pending'
          AND o.lane = 'bill:' || b.id)
FROM bills WHERE year = %(year)s AND month = %(month)s
"""


def bills_of_period(conninfo: str) -> Bills:
    with psycopg.connect(conninfo) as connection:
        row = connection.execute(BILLS_SQL, {"year": PERIOD.year, "month": PERIOD.month}).fetchone()
    return Bills(*row)


def delete_bills_of_period(conninfo: str) -> None:
    """Back to no bills for PERIOD, vacuumed, as before a month's first generation."""
    params = {"year": PERIOD.year, "month": PERIOD.month}
    with psycopg.connect(conninfo) as connection:
        of_period = "year = %(year)s AND month = %(month)s"
        # The benchmark's own database: lift the append-only guard for this transaction only.
        connection.execute(f"DELETE FROM outbox WHERE bill_id IN (SELECT id FROM bills WHERE {of_period})", params)
        connection.execute("DELETE FROM outbox WHERE kind <> 'bill_message'")  # the summary and Home refreshes
        connection.execute("ALTER TABLE bill_actions DISABLE TRIGGER bill_actions_no_delete")
        connection.execute(
            f"DELETE FROM bill_actions WHERE bill_id IN (SELECT id FROM bills WHERE {of_period})", params
        )
        connection.execute("ALTER TABLE bill_actions ENABLE TRIGGER bill_actions_no_delete")
        connection.execute(f"DELETE FROM bills WHERE {of_period}", params)
    vacuum_analyze(conninfo, "bills", "bill_actions", "outbox")


# --- The database --------------------------------------------------------------------------------


def libpq_conninfo(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def temporary_database(server: str, keep: bool):
    """A new, migrated database on `server`, as a SQLAlchemy URL; dropped afterwards unless `keep`."""
    from db.migrate import upgrade  # here, so that the generating child does not load Alembic
    from db.session import make_engine

    server_url = make_url(server).set(drivername="postgresql+psycopg")
    name = f"billprocess_bench_{uuid.uuid4().hex[:12]}"
    admin = libpq_conninfo(server_url)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = server_url.set(database=name)
    try:
        engine = make_engine(url.render_as_string(hide_password=False))
        upgrade(engine)
        engine.dispose()
        yield url
    finally:
        if keep:
            print(f"kept the database {name}")
        else:
            with psycopg.connect(admin, autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- The report ----------------------------------------------------------------------------------


def check_mix(expected: dict[str, int], run: GenerateRun) -> list[str]:
    """Differences between the loaded MIX and generate_month's summary."""
    got = {**run.skipped, "billed": run.created}
    return [
        f"{kind}: loaded {expected.get(kind, 0)}, summary says {got.get(kind, 0)}"
        for kind in sorted(set(expected) | set(got))
        if expected.get(kind, 0) != got.get(kind, 0)
    ]


def verdict(passed: bool) -> str:
    return "PASS" if passed else "MISS"


def seconds_list(values: list[float]) -> str:
    return " ".join(f"{value:.3f}" for value in values)


def print_report(generated: list[GenerateRun], reference: list[float]) -> None:
    generate_median = statistics.median(run.seconds for run in generated)
    reference_median = statistics.median(reference)
    ratio = generate_median / reference_median
    peak_rss = max(run.peak_rss_mb for run in generated)
    rss_before = max(run.rss_before_mb for run in generated)
    print()
    generate_runs = seconds_list([run.seconds for run in generated])
    print(f"generate_month   median {generate_median:7.3f} s   runs {generate_runs}")
    print(f"reference SQL    median {reference_median:7.3f} s   runs {seconds_list(reference)}")
    print(f"ratio generate/reference  {ratio:6.2f}    target <= {MAX_RATIO}     {verdict(ratio <= MAX_RATIO)}")
    print(
        f"peak RSS of generate      {peak_rss:6.1f} MB target <= {MAX_PEAK_RSS_MB} MB  "
        f"{verdict(peak_rss <= MAX_PEAK_RSS_MB)}   ({rss_before:.1f} MB before generate_month was called)"
    )


# --- Main ----------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000, help="customers to load (default 100000)")
    parser.add_argument("--database-url", default=DEFAULT_SERVER, help=f"the PostgreSQL server ({DEFAULT_SERVER})")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, alternating (default 3)")
    parser.add_argument("--history-months", type=int, default=0, help="earlier months with usage and bills")
    parser.add_argument("--keep", action="store_true", help="keep the database for a closer look")
    parser.add_argument("--generate-in-this-process", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.customers < 1 or args.repeat < 1 or args.history_months < 0:
        parser.error("--customers and --repeat must be at least 1, --history-months at least 0")
    return args


@dataclass
class Rounds:
    """Everything the alternating runs measured and found."""

    generated: list[GenerateRun] = field(default_factory=list)
    reference: list[float] = field(default_factory=list)
    bills: list[tuple[str, Bills]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def run_round(number: int, sqlalchemy_url: str, conninfo: str, mix: dict[str, int], rounds: Rounds) -> None:
    """generate_month once, then the reference once, each from no bills for PERIOD."""
    run = run_generate(sqlalchemy_url)
    bills = bills_of_period(conninfo)
    rounds.generated.append(run)
    rounds.bills.append((f"generate_month run {number}", bills))
    if (run.created, Decimal(run.total)) != (bills.count, Decimal(bills.total)):
        rounds.problems.append(
            f"generate_month run {number}: its summary says {run.created} bills, {run.total}; "
            f"the table holds {bills.count}, {bills.total}"
        )
    rounds.problems += check_mix(mix, run)
    delete_bills_of_period(conninfo)

    rounds.reference.append(run_reference(conninfo, PERIOD))
    rounds.bills.append((f"reference run {number}", bills_of_period(conninfo)))
    delete_bills_of_period(conninfo)
    print(
        f"run {number}: generate_month {run.seconds:.3f} s, peak RSS {run.peak_rss_mb:.1f} MB; "
        f"reference {rounds.reference[-1]:.3f} s; {bills.count:,} bills, total {bills.total}"
    )


def differences(results: list[tuple[str, Bills]]) -> list[str]:
    """Every run that left other bills than the first, and bills without their DRAFT action."""
    first_name, first = results[0]
    found = [
        f"{name} differs from {first_name}: {bills} vs {first}" for name, bills in results[1:] if bills != first
    ]
    if first.draft_actions != first.count:
        found.append(f"{first_name}: {first.count} bills but {first.draft_actions} DRAFT actions")
    return found


def benchmark(url: URL, args: argparse.Namespace) -> int:
    """Load, then alternate generate_month and the reference; 1 when their bills differ."""
    conninfo, sqlalchemy_url = libpq_conninfo(url), url.render_as_string(hide_password=False)
    start = time.perf_counter()
    load_data(conninfo, args.customers, args.history_months)
    mix = expected_mix(conninfo)
    loaded = ", ".join(f"{kind} {count:,}" for kind, count in mix.items())
    seconds = time.perf_counter() - start
    print(f"loaded {args.customers:,} customers for {PERIOD} in {seconds:.1f} s: {loaded}")

    rounds = Rounds()
    for number in range(1, args.repeat + 1):
        run_round(number, sqlalchemy_url, conninfo, mix, rounds)
    problems = rounds.problems + differences(rounds.bills)
    if problems:
        print("\nMISMATCH between generate_month and the reference:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print_report(rounds.generated, rounds.reference)
    return 0


def main() -> int:
    args = parse_args()
    if args.generate_in_this_process:
        generate_in_this_process(args.generate_in_this_process)
        return 0
    with temporary_database(args.database_url, args.keep) as url:
        return benchmark(url, args)


if __name__ == "__main__":
    sys.exit(main())
