"""One "poll until" for the tests: ask a predicate again and again until it holds or time is up."""
from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll_until(predicate: Callable[[], T | None], timeout_s: float, interval_s: float = 0.1,
               message: str | Callable[[], str] = "condition not reached in time",
               error: type[Exception] = AssertionError) -> T:
    """Call ``predicate`` every ``interval_s`` seconds and return its first truthy value; after
    ``timeout_s`` raise ``error`` (AssertionError unless a helper wants e.g. TimeoutError) with
    ``message``, which may be a function called at that moment (to show the latest log)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise error(message() if callable(message) else message)
        time.sleep(interval_s)


def text_with(fetch: Callable[[], str], *markers: str) -> Callable[[], str | None]:
    """A predicate for poll_until: the text ``fetch`` returns, once it holds every one of ``markers``."""

    def check() -> str | None:
        text = fetch()
        return text if all(marker in text for marker in markers) else None

    return check


def accepts(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a TCP connection to ``host:port`` succeeds now (a predicate for daemons starting up)."""
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0
