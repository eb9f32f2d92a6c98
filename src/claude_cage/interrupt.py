"""Ctrl-C ends any command within a second, whatever the engine does.

Python raises KeyboardInterrupt in the main thread, and a blocking socket read there
gives way at once. What runs after it (a start's rollback, a `finally` that records an
event) may still ask the engine: from the interrupt on, every engine call shares one
second (`bound`), so a stalled engine cannot hold the exit up; what was not undone in
that time stays as a kill would leave it, for `gc` and `start NAME`. Threads never hold
the exit up either: `pool` lets its workers go on an error, and the command line ends
the process without waiting for them (cli.main).
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

BUDGET_S = 1.0
_deadline: float | None = None


def begin() -> None:
    """The interrupt came: engine calls from now on share BUDGET_S seconds."""
    global _deadline
    if _deadline is None:
        _deadline = time.monotonic() + BUDGET_S


def bound(timeout: float | None) -> float | None:
    """An engine call's timeout: `timeout`, or what is left of the budget after an
    interrupt (a little above zero, so the call fails at once rather than blocks)."""
    if _deadline is None:
        return timeout
    left = max(0.01, _deadline - time.monotonic())
    return left if timeout is None else min(timeout, left)


def _on_sigint(_signum: int, _frame: FrameType | None) -> None:
    begin()
    raise KeyboardInterrupt


def install() -> None:
    """Count Ctrl-C's budget from the signal (unless SIGINT is ignored, as in a
    background job: then it stays ignored)."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)


@contextlib.contextmanager
def pool(workers: int) -> Iterator[ThreadPoolExecutor]:
    """A thread pool that waits for its work when all went well, and lets it go on an
    error or an interrupt (a worker stuck on a stalled engine must not hold it up)."""
    # start-up: concurrent.futures brings logging (~10 ms); only the commands that use
    # a pool pay for it
    from concurrent.futures import ThreadPoolExecutor

    executor = ThreadPoolExecutor(max_workers=workers)
    try:
        yield executor
    except BaseException:
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    executor.shutdown(wait=True)
