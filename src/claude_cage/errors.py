"""The one error hierarchy. Each error is one line plus a hint, and maps to an exit code.

Exit codes: 0 ok, 1 failed, 2 bad input, 3 not found. A damaged file of claude-cage's
own state (metadata, config, event log, locks) and a full or read-only filesystem are
failures (1): the message names the file, the hint says what to do.
"""

from __future__ import annotations

import errno
from pathlib import Path

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_FOUND = 3


class CageError(Exception):
    """An expected failure: shown as one line and a hint, never as a traceback."""

    exit_code = EXIT_FAILED
    hint: str | None = None

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    @property
    def message(self) -> str:
        return str(self)


class BadInput(CageError):
    exit_code = EXIT_BAD_INPUT


class NotFound(CageError):
    exit_code = EXIT_NOT_FOUND


class SessionNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"no session named {name!r}", "see 'claude-cage list' for the sessions")


class SnapshotNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"no snapshot named {name!r}", "see 'claude-cage snapshot list'")


class EngineUnavailable(CageError):
    hint = (
        "start the Docker engine (as root: scripts/ensure-docker, or 'systemctl start docker'), "
        "then check with 'docker info'"
    )


class EngineStalled(EngineUnavailable):
    """The engine took the connection but did not answer within the bound of the call
    (config `engine_call_timeout`, `engine_timeout` for `list`): stalled, or overloaded."""

    def __init__(self, described: str, seconds: float, setting: str) -> None:
        super().__init__(
            f"{described} did not answer within {seconds:g} s",
            f"it is stalled or overloaded: check it with 'docker info' "
            f"(config {setting} sets the bound)",
        )


class EngineError(CageError):
    """A failure reported by the engine. `status` is the HTTP status of its answer (0
    when there was none), so callers test a type or a status, never a message text."""

    status = 0

    def __init__(self, message: str, hint: str | None = None, status: int | None = None) -> None:
        super().__init__(message, hint)
        if status is not None:
            self.status = status


class ImageMissing(EngineError):
    status = 404

    def __init__(self, image: str) -> None:
        super().__init__(
            f"image {image!r} is not built",
            "run 'claude-cage build' (or 'make build') to build the images",
        )


class EngineNotFound(NotFound, EngineError):
    """The engine has no such container, volume, network or exec (HTTP 404)."""

    status = 404


class EngineRefusedSetting(BadInput, EngineError):
    """The engine refused a setting of the request (HTTP 400): bad input, exit 2."""

    status = 400
    hint = "check --cpus, --memory, --pids and --port against this machine"


class EngineConflict(EngineError):
    """The object is in a state that forbids the request (HTTP 409)."""

    status = 409


class PortAllocated(EngineError):
    """A host port to publish is taken by another container."""


class CapacityReached(CageError):
    """max_sessions sessions are running already."""


class OutOfMemory(CageError):
    hint = "start it with more memory (--memory 8g), or stop other sessions"


class DamagedFile(CageError):
    """A file of claude-cage's own state that cannot be used as it is."""

    def __init__(self, path: Path | str, reason: str, hint: str | None = None) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}", hint or f"move it aside ('mv {path} {path}.bad')")


def file_error(exc: OSError, path: Path | str | None = None) -> CageError:
    """A filesystem failure (full, read-only, a directory in a file's place, no
    permission) as one line naming the file, and a hint that fixes it."""
    where = str(path if path is not None else exc.filename or "a file")
    reason = exc.strerror or str(exc)
    code = exc.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        hint = f"free some space on the filesystem that holds {where}, then try again"
    elif code == errno.EROFS:
        hint = (
            f"{where} is on a read-only filesystem: make it writable, "
            "or point CAGE_DATA_DIR at a writable directory"
        )
    elif code in (errno.EACCES, errno.EPERM):
        hint = f"check the owner and permissions of {where}"
    elif code in (errno.EISDIR, errno.ENOTDIR):
        hint = f"something else is in the place of {where}: move it aside"
    else:
        hint = f"check {where}"
    return CageError(f"{where}: {reason}", hint)
