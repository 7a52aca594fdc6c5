"""`billprocess demo` as a person starts it, and headless Chromium to use its page.

The browser is Debian's `chromium`, driven by Playwright through its `executable_path` (no browser is
downloaded). Without Chromium the browser tests fail under CI=true and are skipped elsewhere.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.periods import Period
from sandbox.demo import PEOPLE
from sandbox.slack import CHANNEL_ID
from tests.conftest import IN_CI
from tests.slack_helpers import eventually

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
START_SECONDS = 60  # a demo that has not answered by then failed to start
VIEWPORT = {"width": 1280, "height": 800}
SLACK_ID = {person.real_name.split()[0]: person.slack_user_id for person in PEOPLE}  # "Fiona" → U…


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Demo:
    """A running `billprocess demo`: its process (leading a process group of its own), address and output."""

    process: subprocess.Popen
    url: str
    folder: Path
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=10) as answer:
            return json.loads(answer.read())

    def interrupt(self) -> None:
        """Ctrl-C in the terminal: SIGINT to the demo's whole process group."""
        os.killpg(self.process.pid, signal.SIGINT)

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.interrupt()
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise AssertionError("the demo did not stop within 30 s of Ctrl-C") from None


def start_demo(folder: Path, *, port: int | None = None, wait: bool = True, env: dict[str, str] | None = None) -> Demo:
    """Run `python main.py demo` on `folder`; with `wait`, return once its page answers.

    The schedule is off unless `env` sets it, so that what the tests see does not depend on the date (on the
    1st of a month the scheduler would generate last month's bills as soon as the demo starts).
    """
    port = port or free_port()
    log = folder.with_name(f"{folder.name}-{port}.log")
    env = {**os.environ, "TIMEZONE": "UTC", "PYTHONUNBUFFERED": "1", "GENERATE_CRON": "", "REMINDER_CRON": "",
           **(env or {})}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "main.py"), "demo", "--port", str(port), "--data", str(folder)],
            cwd=folder.parent, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    demo = Demo(process, f"http://127.0.0.1:{port}", folder, log)
    if wait:
        wait_for_page(demo)
    return demo


def wait_for_page(demo: Demo) -> None:
    def serving() -> bool:
        assert demo.process.poll() is None, f"the demo stopped:\n{demo.output()}"
        if "open http://" not in demo.output():
            return False
        try:
            demo.get("/sandbox/workspace")
        except OSError:
            return False
        return True

    try:
        eventually(serving, "the demo serving its page", timeout=START_SECONDS, every=0.1)
    except AssertionError as late:
        raise AssertionError(f"{late}\n{demo.output()}") from None


@pytest.fixture(scope="module")
def demo(request, tmp_path_factory) -> Iterator[Demo]:
    """One demo, freshly seeded, for a module's tests (with the module's DEMO_ENVIRONMENT, if it has one)."""
    env = getattr(request.module, "DEMO_ENVIRONMENT", None)
    running = start_demo(tmp_path_factory.mktemp("demo") / "data", env=env)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        message = "Chromium is not installed (apt-get install chromium)"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    """Where the browser tests leave their pictures: SANDBOX_SCREENSHOTS, or a temporary folder."""
    wanted = os.environ.get("SANDBOX_SCREENSHOTS")
    folder = Path(wanted) if wanted else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Slack:
    """The sandbox page in the browser, used as a person uses it."""

    def __init__(self, page, demo: Demo):
        self.page = page
        self.demo = demo
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def open(self, person: str) -> Slack:
        """Open the page as `person` ("Fiona", "Carol", "Casey", "Sam", "Vera") in #bills."""
        self.page.goto(f"{self.demo.url}/?as={SLACK_ID[person]}")
        self._shown(person)
        return self

    def act_as(self, person: str) -> None:
        """Switch person with the picker."""
        self.page.select_option("#person", SLACK_ID[person])
        self._shown(person)

    def _shown(self, person: str) -> None:
        """Wait until the page shows #bills as `person` sees it."""
        self.page.locator(f"body[data-shown='{SLACK_ID[person]} {CHANNEL_ID}']").wait_for(state="attached")

    def type(self, text: str, *, where: str = "#composer-text") -> None:
        self.page.fill(where, text)
        self.page.press(where, "Enter")

    def bill(self, customer: str, period: Period):
        """The bill's message in the conversation shown (not an ephemeral copy of it)."""
        header = self.page.locator(".b-header", has_text=re.compile(rf"· {re.escape(customer)} · {period.label}$"))
        return self.page.locator("#messages .msg.message").filter(has=header)

    def ephemeral(self, text: str):
        return self.page.locator("#messages .msg.ephemeral", has_text=text)

    def open_app(self, tab: str = "home") -> None:
        self.page.click("#app-nav")
        if tab != "home":
            self.page.click(f".tab[data-tab={tab}]")

    def open_channel(self) -> None:
        self.page.click(".nav-item[data-channel]")

    def shot(self, folder: Path, name: str) -> Path:
        path = folder / f"sandbox-{name}.png"
        self.page.screenshot(path=path)
        return path


@pytest.fixture
def slack(browser, demo) -> Iterator[Slack]:
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(20_000)
    used = Slack(page, demo)
    try:
        yield used
        assert used.errors == [], f"the page had script errors: {used.errors}"
    finally:
        context.close()


@pytest.fixture(scope="module")
def months() -> dict[str, Period]:
    """The demo data's months: P (last month, not billed yet), P-1 and P-2 (billed, in every state)."""
    from zoneinfo import ZoneInfo

    p = Period.previous(ZoneInfo("UTC"))
    return {"P": p, "P-1": p.shifted(-1), "P-2": p.shifted(-2)}
