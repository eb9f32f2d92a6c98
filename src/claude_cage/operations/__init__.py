"""Operations: one function per user-visible action. They return data and never print.

Every state-changing operation is wrapped by `@operation("kind")`, which records one
event for it in the event log, whether it succeeds or fails, so no caller has to
remember to. Queries (list, status, logs) record nothing.
"""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import Callable
from typing import Any, TypeVar

from claude_cage import paths
from claude_cage.errors import CageError

F = TypeVar("F", bound=Callable[..., Any])


def event_log() -> Any:
    """The event log, mirrored to MongoDB when `mongodb_uri` (or MONGODB_URI) is set."""
    return _event_log(str(paths.events_db()))


@functools.cache
def _event_log(db_path: str) -> Any:
    """One EventLog per data directory and process (the config is read once)."""
    # The config (~8 ms) and the event log (sqlite3, ~15 ms) load only when an event is
    # recorded (start-up: `logs` imports this package and needs neither)
    from claude_cage import config
    from claude_cage.eventlog import events
    from claude_cage.validators import parse_size

    try:
        cfg = config.load()
        uri, database = cfg["mongodb_uri"], cfg["mongodb_db"]
        limits = events.Limits(parse_size(cfg["events_max_size"]), cfg["events_max_age"])
    except CageError:  # a broken config file must not stop the log
        uri, database, limits = None, "claude_cage", events.Limits()
    return events.EventLog(db_path, uri, database, limits=limits)


def record_event(
    kind: str, name: str | None, value: dict[str, Any], type_: str = "session"
) -> None:
    """Write one event. The event log never fails an operation."""
    event_log().record(type_, f"{kind}:{name or '-'}", value, session=name)


def checkpoint(step: str) -> None:
    """A named step inside an operation. Tests set CAGE_TEST_KILL_AT=<step> to SIGKILL
    the CLI right there, and check that what is left behind is consistent."""
    if os.environ.get("CAGE_TEST_KILL_AT") == step:
        os.kill(os.getpid(), signal.SIGKILL)


def operation(kind: str) -> Callable[[F], F]:
    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            first = kwargs.get("name", args[0] if args else None)
            name = first if isinstance(first, str) else getattr(first, "name", None)
            try:
                result = fn(*args, **kwargs)
            except CageError as exc:
                record_event(kind, name, {"status": "error", "error": exc.message})
                raise
            details = getattr(result, "event_details", None)
            value = {"status": "ok", **(details() if callable(details) else {})}
            record_event(kind, getattr(result, "name", None) or name, value)
            return result

        return wrapper  # type: ignore[return-value]

    return decorate
