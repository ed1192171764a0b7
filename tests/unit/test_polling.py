"""The tests' one "poll until"."""
from __future__ import annotations

import itertools

import pytest

from tests.support.polling import poll_until, text_with


def test_returns_the_first_truthy_value() -> None:
    counter = itertools.count()
    assert poll_until(lambda: next(counter) >= 3 and "ready", 5, 0.001) == "ready"


def test_times_out_with_the_message_and_error_asked_for() -> None:
    with pytest.raises(AssertionError, match="never"):
        poll_until(lambda: False, 0.01, 0.001, "never")
    log = iter(["booting", "still booting"])
    with pytest.raises(TimeoutError, match="last: still booting"):
        poll_until(text_with(lambda: next(log, "x"), "ready"), 0.01, 0.001, lambda: "last: still booting",
                   error=TimeoutError)
