"""The damage a file in the data or config directory can come to: the unit and the
integration damaged-state tests apply the same functions."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

DOCUMENTED = {0, 1, 2, 3}  # the exit codes a damaged file may cause
GOOD_CONFIG = "memory: 2g\nidle_timeout: 30\nallowed_hosts:\n  - example.com\n"
FILES = ("metadata", "config", "events", "lock")


def _garbage(path: Path) -> None:
    path.write_bytes(random.Random(7).randbytes(777))


def _wrong_encoding(path: Path) -> None:
    path.write_bytes("name=caf\u00e9\nmode=cli\n".encode("latin-1") + b"\xff\xfe\xfd\n")


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: max(1, len(data) // 2)])


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "inside").write_text("x")


def _unreadable(path: Path) -> None:
    path.chmod(0)


DAMAGES: dict[str, Callable[[Path], None]] = {
    "wrong-encoding": _wrong_encoding,
    "empty": _empty,
    "truncated": _truncated,
    "garbage": _garbage,
    "directory": _directory,
    "unreadable": _unreadable,
}
