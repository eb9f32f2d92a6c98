"""A stop signal for work that blocks in another thread.

`Cancel` is a `threading.Event` (loops that poll check `is_set()` or `wait()`), and
also runs what was registered with `on_set` when it is set: a stream blocked in a
socket read (the engine's log, followed) registers the socket's shutdown, so the read
returns at once instead of when the next line comes, which may be never.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator


class Cancel(threading.Event):
    def __init__(self) -> None:
        super().__init__()
        self._hooks: list[Callable[[], None]] = []
        self._guard = threading.Lock()

    def set(self) -> None:
        with self._guard:
            super().set()
            hooks, self._hooks = self._hooks, []
        for hook in hooks:
            with contextlib.suppress(OSError):
                hook()

    @contextlib.contextmanager
    def on_set(self, hook: Callable[[], None]) -> Iterator[None]:
        """Run `hook` if this is set while the block runs (at once if it already is)."""
        with self._guard:
            already = self.is_set()
            if not already:
                self._hooks.append(hook)
        if already:
            with contextlib.suppress(OSError):
                hook()
        try:
            yield
        finally:
            with self._guard, contextlib.suppress(ValueError):
                self._hooks.remove(hook)
