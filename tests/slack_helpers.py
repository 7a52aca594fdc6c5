"""Reading what the app sent to the fake Slack, and serving an app under test."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietWSGIRequestHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests assert on responses, not on access logs."""


@contextmanager
def serve_wsgi(app: Callable) -> Iterator[str]:
    """Serve a WSGI app on a free port of 127.0.0.1 while the block runs; yields its base URL."""
    server = make_server(
        "127.0.0.1", 0, app, server_class=_ThreadingWSGIServer, handler_class=_QuietWSGIRequestHandler
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- reading what the app sent --------------------------------------------------------------------------


def texts(node: Any) -> str:
    """Every text a person reads in a message, an answer, a view or a list of blocks, in order."""
    found: list[str] = []

    def walk(item: Any) -> None:
        if isinstance(item, dict):
            if isinstance(item.get("text"), str):
                found.append(item["text"])
            for value in item.values():
                walk(value)
        elif isinstance(item, list):
            for element in item:
                walk(element)

    walk(node)
    return "\n".join(found)


def displayed(node: Any) -> str:
    """`texts(node)` as Slack shows it: with the &amp;, &lt; and &gt; that mrkdwn needs turned back into &, < and >."""
    return texts(node).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def eventually(condition: Callable[[], object], what: str, timeout: float = 5.0, every: float = 0.02):
    """Poll `condition` until it returns something true; its value, or AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(every)
    return value


def wait_until(read: Callable[[], list], count: int, what: str, timeout: float = 5.0) -> list:
    """Poll `read` until it returns at least `count` items (work that follows an acknowledgement)."""
    found: list = []

    def enough() -> bool:
        nonlocal found
        found = read()
        return len(found) >= count

    try:
        eventually(enough, what, timeout)
    except AssertionError:
        raise AssertionError(f"expected {what}, got {found}") from None
    return found
