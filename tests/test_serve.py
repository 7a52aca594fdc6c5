"""`billprocess serve` and `socket` as an operator starts them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import main
from tests.slack_fakes import SIGNING_SECRET, TOKEN, FakeSlack, SlackSender, slash_command_body

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("command", "env", "missing"),
    [
        ("serve", {}, "SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET must be set"),
        ("serve", {"SLACK_BOT_TOKEN": "xoxb-1"}, "SLACK_SIGNING_SECRET must be set"),
        ("socket", {"SLACK_BOT_TOKEN": "xoxb-1"}, "SLACK_APP_TOKEN must be set"),
    ],
)
def test_missing_credentials_stop_the_app_with_one_line(cli_env, monkeypatch, capsys, command, env, missing):
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main.main([command]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {missing}") and err.count("\n") == 1
    assert "xoxb-1" not in err


def test_a_refused_token_stops_the_app_without_showing_it(cli_env, monkeypatch, capsys):
    with FakeSlack(token="xoxb-the-right-one") as fake:
        monkeypatch.setenv("SLACK_API_URL", fake.url)
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-a-wrong-one")
        monkeypatch.setenv("SLACK_SIGNING_SECRET", "secret")
        assert main.main(["serve"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Slack did not accept the app's credentials") and "invalid_auth" in err
    assert "xoxb-a-wrong-one" not in err


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_healthy(url: str, server: subprocess.Popen) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.poll() is None, server.stderr.read().decode()
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return json.loads(answer.read())
        except OSError:
            time.sleep(0.2)
    raise AssertionError("serve never answered /healthz")


def test_serve_answers_health_checks_and_signed_commands_and_stops_on_sigterm(cli_env, database_url):
    port = _free_port()
    with FakeSlack() as fake:
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "SLACK_API_URL": fake.url,
            "SLACK_BOT_TOKEN": TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "BILLS_CHANNEL": "C0BILLS01",
            "PORT": str(port),
        }
        server = subprocess.Popen(
            [sys.executable, str(ROOT / "main.py"), "serve"], cwd=cli_env, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        try:
            assert _wait_healthy(f"http://127.0.0.1:{port}/healthz", server)["ok"] is True
            sender = SlackSender(f"http://127.0.0.1:{port}", SIGNING_SECRET)
            answer = sender.post(slash_command_body("help", "U0NOBODY1", response_url=fake.response_url("help")))
            assert answer.status == 200
            [reply] = fake.wait_for("response_url", timeout=10)
            assert "/bill link" in json.dumps(reply)
            assert sender.post(slash_command_body("help", "U0NOBODY1"), forge=True).status == 401
        finally:
            server.send_signal(signal.SIGTERM)
            assert server.wait(timeout=30) == 0
    assert TOKEN not in server.stderr.read().decode()


def test_socket_mode_stops_on_sigterm_and_stops_its_worker_first(cli_env, monkeypatch):
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from handlers.worker import WorkerProcess

    stopped_workers = []
    close = WorkerProcess.close
    monkeypatch.setattr(WorkerProcess, "close", lambda worker: (close(worker), stopped_workers.append(True)))
    monkeypatch.setattr(SocketModeHandler, "__init__", lambda handler, app, app_token: None)

    def start(handler) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # as a service manager stops the app
        time.sleep(10)
        raise AssertionError("SIGTERM did not stop Socket Mode")

    monkeypatch.setattr(SocketModeHandler, "start", start)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with FakeSlack() as fake:
            monkeypatch.setenv("SLACK_API_URL", fake.url)
            monkeypatch.setenv("SLACK_BOT_TOKEN", TOKEN)
            monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-1-test")
            monkeypatch.setenv("BILLS_CHANNEL", "C0BILLS01")
            with pytest.raises(SystemExit) as stopped:
                main.main(["socket"])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert stopped.value.code == 0
    assert stopped_workers == [True]


def _children(pid: int) -> list[int]:
    """The process's children, whichever of its threads started them."""
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(child) for child in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return children


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_the_worker_process_stops_when_serve_is_killed(cli_env, database_url):
    """SIGKILL gives serve no chance to stop its worker: the worker notices and stops by itself."""
    port = _free_port()
    with FakeSlack() as fake:
        env = {**os.environ, "DATABASE_URL": database_url, "SLACK_API_URL": fake.url, "SLACK_BOT_TOKEN": TOKEN,
               "SLACK_SIGNING_SECRET": SIGNING_SECRET, "BILLS_CHANNEL": "C0BILLS01", "PORT": str(port)}
        server = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "serve"], cwd=cli_env, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_healthy(f"http://127.0.0.1:{port}/healthz", server)
            deadline = time.monotonic() + 30
            while not (workers := [pid for pid in _children(server.pid) if "spawn_main" in _cmdline(pid)]):
                assert time.monotonic() < deadline, "serve started no worker process"
                time.sleep(0.1)
            server.kill()
            server.wait(timeout=10)
            deadline = time.monotonic() + 10
            while _alive(workers[0]):
                assert time.monotonic() < deadline, "the worker outlived its server"
                time.sleep(0.1)
        finally:
            if server.poll() is None:
                server.kill()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


def test_serve_starts_its_worker_again_when_it_dies(cli_env, database_url):
    port = _free_port()
    with FakeSlack() as fake:
        env = {**os.environ, "DATABASE_URL": database_url, "SLACK_API_URL": fake.url, "SLACK_BOT_TOKEN": TOKEN,
               "SLACK_SIGNING_SECRET": SIGNING_SECRET, "BILLS_CHANNEL": "C0BILLS01", "PORT": str(port)}
        server = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "serve"], cwd=cli_env, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _wait_healthy(f"http://127.0.0.1:{port}/healthz", server)
            first = _worker_of(server)
            os.kill(first, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while (second := _worker_of(server, wait=False)) in (None, first):
                assert time.monotonic() < deadline, "serve never started its worker again"
                time.sleep(0.1)
        finally:
            server.send_signal(signal.SIGTERM)
            assert server.wait(timeout=30) == 0
    assert "starting it again" in server.stderr.read().decode()


def _worker_of(server: subprocess.Popen, *, wait: bool = True) -> int | None:
    deadline = time.monotonic() + 30
    while True:
        workers = [pid for pid in _children(server.pid) if "spawn_main" in _cmdline(pid) and _alive(pid)]
        if workers or not wait:
            return workers[0] if workers else None
        assert time.monotonic() < deadline, "serve started no worker process"
        time.sleep(0.1)
