"""How much a clone-mode session may send back, and for how long: `review_max_size` and
`review_timeout` (config.py), for diff, fetch, merge and apply.

What the session sends is read as it arrives and never held whole: its output counts
against the size cap byte by byte, and a timer armed when the command starts stops
everything still running at the deadline (the exec's stream, `git index-pack`), so no
blocking read or write can outlast it. Past either bound the command fails with one
line, and what it had received is thrown away with its temporary directory.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from claude_cage.errors import CageError
from claude_cage.validators import parse_size


class ReviewLimit(CageError):
    """The session sent more than review_max_size, or took longer than review_timeout."""


def _human(size: int) -> str:
    for unit, scale in (("g", 1024**3), ("m", 1024**2), ("k", 1024)):
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    return f"{size} bytes"


@dataclass
class Bounds:
    """The bounds of one review command over session `name` (use it as a context
    manager: the timer starts on entry and is cancelled on exit)."""

    name: str
    max_size: int
    timeout: float
    received: int = 0
    expired: bool = False
    _stops: list[Callable[[], Any]] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _timer: threading.Timer | None = field(default=None, repr=False)

    @classmethod
    def from_config(cls, name: str, values: dict[str, Any]) -> Bounds:
        return cls(name, parse_size(values["review_max_size"]), float(values["review_timeout"]))

    def __enter__(self) -> Bounds:
        self._timer = threading.Timer(self.timeout, self._expire)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            stops = list(self._stops)
        for stop in stops:
            with contextlib.suppress(Exception):
                stop()

    @contextlib.contextmanager
    def stopping(self, stop: Callable[[], Any]) -> Iterator[None]:
        """While inside, `stop` is called at the deadline (at once if it is past)."""
        with self._lock:
            late = self.expired
            self._stops.append(stop)
        if late:
            with contextlib.suppress(Exception):
                stop()
        try:
            yield
        finally:
            with self._lock:
                self._stops.remove(stop)

    def count(self, size: int) -> None:
        """`size` more bytes arrived from the session."""
        self.received += size
        if self.received > self.max_size:
            raise self.too_big()

    def check(self) -> None:
        """Raise if the deadline passed (call it where a stopped read or write ends)."""
        if self.expired:
            raise self.too_slow()

    def too_big(self) -> ReviewLimit:
        return ReviewLimit(
            f"stopped reading session {self.name}'s work: it sent more than "
            f"{_human(self.max_size)} (review_max_size); nothing was kept",
            "if the work is really that big, raise review_max_size (e.g. "
            f"CAGE_REVIEW_MAX_SIZE=8g); else look inside: 'claude-cage shell {self.name}'",
        )

    def too_slow(self) -> ReviewLimit:
        return ReviewLimit(
            f"stopped reading session {self.name}'s work after {self.timeout:g} s "
            "(review_timeout); nothing was kept",
            "if the work is really that slow to send, raise review_timeout (e.g. "
            f"CAGE_REVIEW_TIMEOUT=1800); else look inside: 'claude-cage shell {self.name}'",
        )
