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
from typing import TYPE_CHECKING, Any, TypeVar

from claude_cage.errors import CageError

if TYPE_CHECKING:
    from claude_cage.context import Context

F = TypeVar("F", bound=Callable[..., Any])


def record_event(
    ctx: Context, kind: str, name: str | None, value: dict[str, Any], type_: str = "session"
) -> None:
    """Write one event. The event log never fails an operation."""
    ctx.events.record(type_, f"{kind}:{name or '-'}", value, session=name)


def checkpoint(ctx: Context, step: str) -> None:
    """A named step inside an operation. Tests set CAGE_TEST_KILL_AT=<step> to SIGKILL
    the CLI right there, and check that what is left behind is consistent."""
    if ctx.environ.get("CAGE_TEST_KILL_AT") == step:
        os.kill(os.getpid(), signal.SIGKILL)


def operation(kind: str) -> Callable[[F], F]:
    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(ctx: Context, *args: Any, **kwargs: Any) -> Any:
            first = kwargs.get("name", args[0] if args else None)
            name = first if isinstance(first, str) else getattr(first, "name", None)
            try:
                result = fn(ctx, *args, **kwargs)
            except CageError as exc:
                record_event(ctx, kind, name, {"status": "error", "error": exc.message})
                raise
            details = getattr(result, "event_details", None)
            value = {"status": "ok", **(details() if callable(details) else {})}
            record_event(ctx, kind, getattr(result, "name", None) or name, value)
            return result

        return wrapper  # type: ignore[return-value]

    return decorate
