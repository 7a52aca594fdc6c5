"""`billprocess demo` as a person runs it: it starts with nothing but Python, keeps its data between runs,
and Ctrl-C stops every process it started."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest

from tests.sandbox.conftest import free_port, start_demo
from tests.slack_helpers import eventually


def _descendants(pid: int) -> set[int]:
    """Every process below `pid`, children of children included."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.parametrize("whom", ["process group", "demo process"])
def test_ctrl_c_stops_the_demo_and_every_process_it_started(tmp_path, whom):
    """Ctrl-C reaches the terminal's whole process group; SIGINT to the demo process alone must do as well."""
    demo = start_demo(tmp_path / "data")
    started = _descendants(demo.process.pid)
    assert started, "the demo runs its delivery worker in a process of its own"

    if whom == "process group":
        demo.interrupt()
    else:
        demo.process.send_signal(signal.SIGINT)
    status = demo.process.wait(timeout=30)

    eventually(lambda: not any(_alive(pid) for pid in started), f"{started} stopped with the demo", timeout=10)
    assert status == 0
    output = demo.output()
    assert "Stopped." in output and "Traceback" not in output
    with socket.socket() as probe:  # its port is free again (for a server, which reuses addresses in TIME_WAIT)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", int(demo.url.rsplit(":", 1)[1])))


def test_a_port_in_use_stops_the_demo_with_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        demo = start_demo(tmp_path / "data", port=port, wait=False)
        status = demo.process.wait(timeout=60)

    errors = [line for line in demo.output().splitlines() if line.startswith("error:")]
    assert status == 1
    assert errors == [f"error: cannot listen on port {port} (Address already in use); choose another with --port"]
    assert "Traceback" not in demo.output()


def test_a_restarted_demo_keeps_its_bills_and_its_slack_and_ignores_settings_meant_for_real_slack(
    tmp_path, monkeypatch
):
    (tmp_path / ".env").write_text("DATABASE_URL=postgresql+psycopg://nobody@127.0.0.1:1/nothing\n"
                                   "SLACK_BOT_TOKEN=xoxb-a-real-workspace\nBILLS_CHANNEL=C0REAL\n")
    monkeypatch.setenv("SLACK_API_URL", "http://127.0.0.1:9/api/")  # a real Slack would be elsewhere
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "a-real-secret")
    first = start_demo(tmp_path / "data")
    try:
        assert "Seeded 4 accounts" in first.output()
        note = {"user": "U0FIONA01", "channel": "C0BILLS01", "text": "Remember to check Acme."}
        _post(first.url + "/sandbox/message", note)
        before = first.get("/sandbox/conversation?user=U0FIONA01&channel=C0BILLS01&limit=200")["messages"]
    finally:
        assert first.stop() == 0
    assert any(message.get("text") == note["text"] for message in before)

    again = start_demo(tmp_path / "data", port=free_port())
    try:
        after = again.get("/sandbox/conversation?user=U0FIONA01&channel=C0BILLS01&limit=200")["messages"]
    finally:
        assert again.stop() == 0
    assert "Seeded" not in again.output()
    assert [m["ts"] for m in after if m["kind"] == "message"] == [m["ts"] for m in before if m["kind"] == "message"]
    assert sorted(os.listdir(tmp_path / "data")) == ["billprocess.db", "mail", "slack.json"]


def _post(url: str, fields: dict) -> None:
    import json
    import urllib.request

    body = json.dumps(fields).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
