"""Benchmark of `billprocess demo` (issue 9): how soon the page shows the bills, and how it copes with 500.

What it does, in temporary folders, with headless Chromium (Debian's `chromium`) as the person's browser,
already open when the command starts:

1. **Start-up** — runs `python main.py demo` on an empty folder (the database created, the demo data
   loaded, the app, its worker and the sandbox started) and times until the page shows the bills channel
   with every demo bill; then the same on the folder it left (a restart). `--runs` of each, median.
2. **500 bills** — imports enough customers over their limit for last month to have 500 bills, starts the
   demo on them, and as Finance types `/bill generate` on the page: it times until all 500 bill messages and
   the summary saying so are in #bills, and until the page shows the last of them, while the page measures
   how long its main thread was ever busy at once (the longest task: a page stays responsive while that is
   short). Then it times,
   with 500 more bills in the channel, loading the page, switching person, a click on Approve until the
   message shows the approval, and opening a thread; and counts the messages the page keeps rendered.

Run from the project root (about two minutes):

    .venv/bin/python tests/bench_demo.py [--runs 3] [--bills 500]

The file name does not start with test_, so pytest does not collect it.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

PROJECT = Path(__file__).resolve().parents[1]
if str(PROJECT) not in sys.path:
    sys.path.insert(0, str(PROJECT))

from bot.periods import Period  # noqa: E402
from tests.sandbox.conftest import CHROMIUM, SLACK_ID, VIEWPORT, Demo, free_port, start_demo  # noqa: E402
from tests.slack_helpers import eventually  # noqa: E402

DEMO_BILLS = 10  # the demo data's bills, two months of them
TARGET_START_SECONDS = 10.0
LONG_TASK_MS = 200  # a page whose main thread is never busy longer than this feels responsive

# Collects the page's long tasks (main thread busy > 50 ms) from the moment it loads.
WATCH_LONG_TASKS = """
window.longTasks = [];
new PerformanceObserver((list) => { for (const entry of list.getEntries()) window.longTasks.push(entry.duration); })
  .observe({ type: "longtask", buffered: true });
"""


def wait_for_bills(page, url: str, count: int, started: float, timeout: float = 120.0) -> float:
    """Load `url` until it answers, then wait until `count` bill messages are shown; seconds since `started`."""
    deadline = started + timeout

    def loaded() -> bool:
        try:
            page.goto(url, timeout=5_000)
        except Exception:  # the demo is not listening yet
            return False
        return True

    eventually(loaded, f"the page at {url} loaded", deadline - time.monotonic(), every=0.05)
    page.wait_for_function(
        "n => document.querySelectorAll('#messages .msg.message .b-header').length >= n",
        arg=count, timeout=max(1, deadline - time.monotonic()) * 1000, polling=50,
    )
    return time.monotonic() - started


def measure_start(browser, runs: int) -> tuple[list[float], list[float]]:
    fresh, again = [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="bench-demo-") as workdir:
            folder = Path(workdir) / "data"
            for times in (fresh, again):
                page = browser.new_page(viewport=VIEWPORT)
                started = time.monotonic()
                demo = start_demo(folder, wait=False)
                try:
                    times.append(wait_for_bills(page, f"{demo.url}/?as={SLACK_ID['Fiona']}", DEMO_BILLS, started))
                finally:
                    page.close()
                    demo.stop()
    return fresh, again


def import_customers(folder: Path, count: int, period: Period) -> None:
    """Customers over their limit in `period`, imported with the command line into the demo's database."""
    start = period.shifted(-12).first_day
    customers, usage = folder / "customers.csv", folder / "usage.csv"
    with customers.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["name", "billing_address", "billing_email", "monthly_api_limit", "overage_unit_cost",
                         "start_date", "end_date", "require_csm_approval", "csm"])
        for number in range(count):
            writer.writerow([f"Load Customer {number:03d}", f"{number} Bench Road", f"billing{number}@bench.example",
                             100_000, "0.002", start.isoformat(), "", "true" if number % 3 == 0 else "false",
                             "carol" if number % 2 else ""])
    with usage.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["customer", "year", "month", "api_usage"])
        for number in range(count):
            writer.writerow([f"Load Customer {number:03d}", period.year, period.month, 120_000 + number * 10])
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{folder / 'billprocess.db'}"}
    for command in (["customers", "import", str(customers)], ["usage", "import", str(usage)]):
        subprocess.run([sys.executable, str(PROJECT / "main.py"), *command], env=env, check=True,
                       stdout=subprocess.DEVNULL)


def measure_500(browser, bills: int, period: Period) -> dict[str, float]:
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as workdir:
        folder = Path(workdir) / "data"
        start_demo(folder).stop()  # the demo data; last month is not billed yet (6 of its bills to come)
        import_customers(folder, bills - 6, period)
        demo = start_demo(folder, port=free_port())
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.add_init_script(WATCH_LONG_TASKS)
            wait_for_bills(page, f"{demo.url}/?as={SLACK_ID['Fiona']}", DEMO_BILLS, time.monotonic())
            page.fill("#composer-text", "/bill generate")
            started = time.monotonic()
            page.press("#composer-text", "Enter")
            newest = wait_until_posted(demo, bills, period)
            figures["generate_and_post_seconds"] = time.monotonic() - started
            page.locator(f"#messages .msg[data-ts='{newest}']").wait_for(timeout=60_000)
            figures["generate_and_show_seconds"] = time.monotonic() - started
            tasks = page.evaluate("window.longTasks")
            figures["longest_task_ms"] = max(tasks, default=0.0)
            figures["long_tasks"] = len(tasks)
            figures["rendered_messages"] = page.locator("#messages .msg").count()
            page.close()
            figures.update(measure_reading(browser, demo, period))
        finally:
            demo.stop()
    return figures


def channel_messages(demo: Demo) -> list[dict]:
    """Every top-level message of #bills, read from the sandbox page by page."""
    messages: list[dict] = []
    before = ""
    while True:
        page = demo.get(f"/sandbox/conversation?user={SLACK_ID['Fiona']}&channel=C0BILLS01&limit=200&before={before}")
        messages = page["messages"] + messages
        if not page["has_more"] or not page["messages"]:
            return messages
        before = page["messages"][0]["ts"]


def wait_until_posted(demo: Demo, bills: int, period: Period, timeout: float = 600.0) -> str:
    """Wait until the month's `bills` messages and its finished summary are in #bills; the newest one's ts."""
    def newest_once_posted() -> str | None:
        messages = [m for m in channel_messages(demo) if m["kind"] == "message"]
        headers = [m["blocks"][0]["text"]["text"] for m in messages
                   if m.get("blocks") and m["blocks"][0]["type"] == "header"]
        posted = sum(header.endswith(period.label) for header in headers)
        finished = any(f"All {bills} bills are posted" in m.get("text", "") for m in messages)
        return messages[-1]["ts"] if posted >= bills and finished else None

    return eventually(newest_once_posted, f"{bills} bills and the month's summary posted", timeout, every=0.25)


def measure_reading(browser, demo: Demo, period: Period) -> dict[str, float]:
    """With the 500 bills in the channel: loading the page, switching person, a click, a thread."""
    page = browser.new_page(viewport=VIEWPORT)
    figures = {}
    started = time.monotonic()
    page.goto(f"{demo.url}/?as={SLACK_ID['Carol']}")
    page.locator(f"body[data-shown='{SLACK_ID['Carol']} C0BILLS01']").wait_for(state="attached")
    figures["load_page_seconds"] = time.monotonic() - started

    started = time.monotonic()
    page.select_option("#person", SLACK_ID["Sam"])
    page.locator(f"body[data-shown='{SLACK_ID['Sam']} C0BILLS01']").wait_for(state="attached")
    figures["switch_person_seconds"] = time.monotonic() - started

    page.select_option("#person", SLACK_ID["Carol"])
    page.locator(f"body[data-shown='{SLACK_ID['Carol']} C0BILLS01']").wait_for(state="attached")
    bill = page.locator("#messages .msg.message", has_text="Waiting for @carol").filter(
        has=page.locator("button", has_text="Approve")).last
    bill.wait_for()
    ts = bill.get_attribute("data-ts")
    started = time.monotonic()
    bill.locator("button", has_text="Approve").click()
    page.locator(f"#messages .msg[data-ts='{ts}']", has_text="approved by @carol").wait_for()
    figures["click_to_update_seconds"] = time.monotonic() - started

    thread_link = page.locator(f"#messages .msg[data-ts='{ts}'] .thread-link button")
    thread_link.wait_for()
    started = time.monotonic()
    thread_link.click()
    page.locator("#thread .msg").nth(1).wait_for()
    figures["open_thread_seconds"] = time.monotonic() - started
    page.close()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--bills", type=int, default=500)
    args = parser.parse_args()
    if CHROMIUM is None:
        print("error: Chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    print(f"{os.cpu_count()} cores; Chromium at {CHROMIUM}")
    period = Period.previous(ZoneInfo("UTC"))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        fresh, again = measure_start(browser, args.runs)
        print(f"start-up, empty folder (create, seed, start), to the channel with its {DEMO_BILLS} bills: "
              f"median {statistics.median(fresh):.1f} s of {[round(t, 1) for t in fresh]}")
        print(f"start-up, existing folder (restart): median {statistics.median(again):.1f} s "
              f"of {[round(t, 1) for t in again]}")
        figures = measure_500(browser, args.bills, period)
        browser.close()
    print(f"/bill generate of {args.bills} bills until all are posted: {figures['generate_and_post_seconds']:.1f} s;"
          f" until the page shows the last of them: {figures['generate_and_show_seconds']:.1f} s")
    print(f"  meanwhile the page's longest task: {figures['longest_task_ms']:.0f} ms "
          f"({figures['long_tasks']:.0f} tasks over 50 ms)")
    print(f"  messages kept rendered in the page: {figures['rendered_messages']:.0f}")
    print(f"with {args.bills + DEMO_BILLS} bills in the channel: load the page {figures['load_page_seconds']:.2f} s, "
          f"switch person {figures['switch_person_seconds']:.2f} s, click Approve until the message shows it "
          f"{figures['click_to_update_seconds']:.2f} s, open a thread {figures['open_thread_seconds']:.2f} s")
    start_ok = statistics.median(fresh) <= TARGET_START_SECONDS
    responsive = figures["longest_task_ms"] <= LONG_TASK_MS
    print(f"{'PASS' if start_ok else 'MISS'}: start-up to the channel ≤ {TARGET_START_SECONDS:.0f} s")
    print(f"{'PASS' if responsive else 'MISS'}: no task of the page longer than {LONG_TASK_MS} ms with "
          f"{args.bills} bills arriving")
    return 0


if __name__ == "__main__":
    sys.exit(main())
