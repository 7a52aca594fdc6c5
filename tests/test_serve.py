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
from tests.slack_fakes import FORM, SIGNING_SECRET, TOKEN, FakeSlack, SlackSender, slash_command_body

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


def _start_serve(cli_env, database_url: str, fake: FakeSlack, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SLACK_API_URL": fake.url,
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "PORT": str(port),
    }
    return subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "serve"], cwd=cli_env, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def test_serve_answers_health_checks_and_signed_commands_and_stops_on_sigterm(cli_env, database_url):
    port = _free_port()
    with FakeSlack() as fake:
        server = _start_serve(cli_env, database_url, fake, port)
        try:
            assert _wait_healthy(f"http://127.0.0.1:{port}/healthz", server) == {"ok": True}
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


def _peak_memory_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])


def _post_unsigned(port: int, size: int) -> bytes:
    """Announce `size` bytes of body and send as much of it as the server takes; return its answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(
            f"POST /slack/events HTTP/1.1\r\nHost: app\r\nContent-Type: {FORM}\r\n"
            f"Content-Length: {size}\r\n\r\n".encode()
        )
        chunk = b"text=" + b"x" * (1024 * 1024 - 5)
        try:
            for _ in range(size // len(chunk)):
                connection.sendall(chunk)
        except OSError:
            pass  # the server answered and closed without reading the body, as it should
        answer = b""
        while data := connection.recv(65536):
            answer += data
        return answer


def test_serve_refuses_a_100_mb_body_without_reading_or_logging_it(cli_env, database_url):
    port = _free_port()
    with FakeSlack() as fake:
        server = _start_serve(cli_env, database_url, fake, port)
        try:
            _wait_healthy(f"http://127.0.0.1:{port}/healthz", server)
            before = _peak_memory_kib(server.pid)
            answer = _post_unsigned(port, 100 * 1024 * 1024)
            grown = _peak_memory_kib(server.pid) - before
        finally:
            server.send_signal(signal.SIGTERM)
            assert server.wait(timeout=30) == 0
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert grown < 20 * 1024, f"serve grew by {grown} KiB"
    assert "xxxxxxxx" not in server.stderr.read().decode() + server.stdout.read().decode()


def test_socket_mode_stops_on_sigterm_and_drains_its_worker_first(cli_env, monkeypatch):
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from handlers.worker import ProcessWorker

    drained = []
    close = ProcessWorker.close
    monkeypatch.setattr(ProcessWorker, "close", lambda worker: (close(worker), drained.append(True)))
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
            with pytest.raises(SystemExit) as stopped:
                main.main(["socket"])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert stopped.value.code == 0
    assert drained == [True]


def _signal_handlers(services) -> tuple:
    """Run in the worker process: how it treats Ctrl-C and SIGTERM."""
    return signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)


def test_the_worker_process_ignores_the_signals_that_stop_the_server(database_url, tmp_path):
    """Stopping the server signals its whole process group; the parent drains the worker's queue instead."""
    from bot.settings import load_settings
    from handlers.worker import ProcessWorker

    settings = load_settings(_env_file=None, database_url=database_url, mail_dir=tmp_path / "mail", timezone="UTC")
    worker = ProcessWorker(settings)
    try:
        assert worker.submit(_signal_handlers).result(timeout=60) == (signal.SIG_IGN, signal.SIG_IGN)
    finally:
        worker.close()
