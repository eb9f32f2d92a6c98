"""One way for a test to wait for something: poll, never sleep a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T], timeout: float = 30, what: str = "", interval: float = 0.1
) -> T:
    """The first truthy value of `predicate()`, asked every `interval` seconds; an
    AssertionError naming `what` (and the last value seen) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:g}s waiting for {what or predicate} (last: {value!r})"
            )
        time.sleep(interval)


def within(predicate: Callable[[], object], timeout: float, interval: float = 0.1) -> bool:
    """Whether `predicate()` becomes truthy within `timeout` seconds."""
    try:
        wait_until(predicate, timeout, interval=interval)
    except AssertionError:
        return False
    return True
