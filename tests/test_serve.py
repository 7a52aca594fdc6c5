"""`billprocess serve` and `socket` as an operator starts them."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import main
from sandbox.app_requests import SlackSender, slash_command_body
from sandbox.slack import APP_TOKEN, CHANNEL_ID, FORM, SIGNING_SECRET, TOKEN, FakeSlack

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
        monkeypatch.setenv("BILLS_CHANNEL", CHANNEL_ID)
        assert main.main(["serve"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Slack did not accept the app's credentials") and "invalid_auth" in err
    assert "xoxb-a-wrong-one" not in err


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _port_for_serve() -> int:
    """A free port below the range the system hands out to other sockets, so none takes it before serve checks it."""
    lowest_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in random.sample(range(10_000, lowest_ephemeral), 100):
        with socket.socket() as probe:
            try:
                probe.bind(("0.0.0.0", port))
            except OSError:
                continue
        return port
    raise AssertionError("no free port for serve")


def _start(command: str, cwd: Path, env: dict[str, str | None]) -> subprocess.CompletedProcess:
    """Run `billprocess COMMAND` until it stops by itself, with only the Slack settings in `env` (None: unset)."""
    inherited = {
        name: value for name, value in os.environ.items()
        if not name.startswith("SLACK_") and name not in ("BILLS_CHANNEL", "PORT")
    }
    inherited.update({name: value for name, value in env.items() if value is not None})
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), command], cwd=cwd, env=inherited, capture_output=True, text=True,
        timeout=60,
    )


def _assert_stopped_with_one_line(result: subprocess.CompletedProcess, problem: str) -> None:
    assert result.returncode != 0, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert problem in result.stderr
    output = result.stdout + result.stderr
    for never in ("Traceback", "listening", "connected", "started", TOKEN, APP_TOKEN, SIGNING_SECRET):
        assert never not in output


def _slack_settings(fake: FakeSlack) -> dict[str, str | None]:
    return {
        "SLACK_API_URL": fake.url,
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_APP_TOKEN": APP_TOKEN,
        "BILLS_CHANNEL": CHANNEL_ID,
        "PORT": str(_port_for_serve()),
    }


@pytest.mark.parametrize(
    ("command", "change", "problem"),
    [
        pytest.param("serve", {"SLACK_API_URL": "unreachable"}, "cannot reach Slack at http://127.0.0.1:",
                     id="serve-slack-unreachable"),
        pytest.param("socket", {"SLACK_API_URL": "unreachable"}, "cannot reach Slack at http://127.0.0.1:",
                     id="socket-slack-unreachable"),
        pytest.param("worker", {"SLACK_API_URL": "unreachable"}, "cannot reach Slack at http://127.0.0.1:",
                     id="worker-slack-unreachable"),
        pytest.param("serve", {"BILLS_CHANNEL": None}, "BILLS_CHANNEL must be set", id="serve-no-bills-channel"),
        pytest.param("socket", {"BILLS_CHANNEL": None}, "BILLS_CHANNEL must be set", id="socket-no-bills-channel"),
        pytest.param("worker", {"BILLS_CHANNEL": None}, "BILLS_CHANNEL must be set", id="worker-no-bills-channel"),
        pytest.param("worker", {"SLACK_BOT_TOKEN": "xoxb-not-the-token"}, "SLACK_BOT_TOKEN was refused (invalid_auth)",
                     id="worker-wrong-bot-token"),
        pytest.param("serve", {"SLACK_BOT_TOKEN": "xoxb-not-the-token"}, "SLACK_BOT_TOKEN was refused (invalid_auth)",
                     id="serve-wrong-bot-token"),
        pytest.param("socket", {"SLACK_APP_TOKEN": "xapp-1-not-the-token"},
                     "SLACK_APP_TOKEN was refused (invalid_auth)", id="socket-wrong-app-token"),
        pytest.param("socket", {"SLACK_APP_TOKEN": TOKEN}, "SLACK_APP_TOKEN was refused (not_allowed_token_type)",
                     id="socket-bot-token-as-app-token"),
    ],
)
def test_a_start_up_problem_stops_the_app_with_one_line_before_it_says_it_started(
    cli_env, command, change, problem
):
    with FakeSlack() as fake:
        env = {**_slack_settings(fake), **change}
        if env["SLACK_API_URL"] == "unreachable":
            env["SLACK_API_URL"] = f"http://127.0.0.1:{_free_port()}/api/"  # nothing listens there
        result = _start(command, cli_env, env)
    _assert_stopped_with_one_line(result, problem)


def test_a_port_in_use_stops_serve_with_one_line(cli_env):
    with FakeSlack() as fake, socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = _start("serve", cli_env, {**_slack_settings(fake), "PORT": str(port)})
        assert fake.calls("auth.test") == []  # the port is checked before Slack is asked
    _assert_stopped_with_one_line(result, f"cannot listen on port {port}")


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
        "BILLS_CHANNEL": CHANNEL_ID,
        "PORT": str(port),
    }
    return subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "serve"], cwd=cli_env, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def test_serve_answers_health_checks_signed_commands_and_the_api_and_stops_on_sigterm(cli_env, database_url):
    port = _free_port()
    with FakeSlack() as fake:
        server = _start_serve(cli_env, database_url, fake, port)
        try:
            assert _wait_healthy(f"http://127.0.0.1:{port}/healthz", server)["ok"] is True
            sender = SlackSender(f"http://127.0.0.1:{port}", SIGNING_SECRET)
            answer = sender.post(slash_command_body("help", "U0NOBODY1", response_url=fake.response_url("help")))
            assert answer.status == 200
            [reply] = fake.wait_for("response_url", timeout=10)
            assert "/bill link" in json.dumps(reply)
            assert sender.post(slash_command_body("help", "U0NOBODY1"), forge=True).status == 401
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/openapi.json", timeout=10) as document:
                assert "/api/bills/{bill_id}/approve" in json.loads(document.read())["paths"]
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/bills", timeout=10)
            assert refused.value.code == 401 and refused.value.headers["Content-Type"] == "application/problem+json"
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


def test_socket_mode_stops_on_sigterm_and_stops_its_worker_first(cli_env, monkeypatch):
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from handlers.worker import WorkerProcess

    stopped_workers = []
    close = WorkerProcess.close
    monkeypatch.setattr(WorkerProcess, "close", lambda worker: (close(worker), stopped_workers.append(True)))
    monkeypatch.setattr(SocketModeHandler, "__init__", lambda handler, app, app_token: None)

    def connect(handler) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # as a service manager stops the app
        time.sleep(10)
        raise AssertionError("SIGTERM did not stop Socket Mode")

    monkeypatch.setattr(SocketModeHandler, "connect", connect)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with FakeSlack() as fake:
            monkeypatch.setenv("SLACK_API_URL", fake.url)
            monkeypatch.setenv("SLACK_BOT_TOKEN", TOKEN)
            monkeypatch.setenv("SLACK_APP_TOKEN", APP_TOKEN)
            monkeypatch.setenv("BILLS_CHANNEL", CHANNEL_ID)
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
        server = _start_serve(cli_env, database_url, fake, port)
        try:
            _wait_healthy(f"http://127.0.0.1:{port}/healthz", server)
            worker = _worker_of(server)
            server.kill()
            server.wait(timeout=10)
            deadline = time.monotonic() + 10
            while _alive(worker):
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
        server = _start_serve(cli_env, database_url, fake, port)
        try:
            _wait_healthy(f"http://127.0.0.1:{port}/healthz", server)
            first = _worker_of(server)
            os.kill(first, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while _worker_of(server, wait=False) in (None, first):
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
