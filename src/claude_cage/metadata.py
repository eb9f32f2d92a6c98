"""Session metadata on disk: `<data dir>/sessions/<name>/metadata`.

The format is the seed's: `key=value` lines, at least name, mode, status, created and
container. Lists are stored as JSON arrays. `parse` and `render` are the one reader and
the one writer of that text; `record.py` types what they hold (`SessionRecord`), and
`SessionStore.load`/`save` are how the rest of claude-cage reads and writes it. Writes
are atomic (temp file + rename) and every read-modify-write holds the session's lock
(an flock on `locks/<name>.lock`). Secrets never go in here; they live in 0600 files
beside it (see `write_secret`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from claude_cage import paths, record
from claude_cage.record import SessionRecord

SCHEMA = "1"
REQUIRED = ("name", "mode", "status", "created", "container")


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(text: str) -> dict[str, Any]:
    data: dict[str, Any] = {}
    json_keys = record.json_keys()
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep or not key.strip() or key.startswith("#"):
            continue
        key = key.strip()
        if key in json_keys:
            try:
                data[key] = json.loads(value)
                continue
            except ValueError:
                pass
        data[key] = value
    return data


def render(data: dict[str, Any]) -> str:
    lines = []
    ordered = [k for k in REQUIRED if k in data] + sorted(k for k in data if k not in REQUIRED)
    for key in ordered:
        value = data[key]
        if value is None:
            continue
        if key in record.json_keys() or isinstance(value, list | dict):
            text = json.dumps(value, separators=(",", ":"))
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value).replace("\n", " ")
        lines.append(f"{key}={text}")
    return "\n".join(lines) + "\n"


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def _atomic_write(path: Path, text: str, mode: int = 0o600) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class SessionStore:
    """All sessions' metadata under one data directory."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root if root is not None else paths.sessions_dir()

    def dir(self, name: str) -> Path:
        return self.root / name

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "metadata").is_file())

    def read(self, name: str) -> dict[str, Any] | None:
        try:
            return parse((self.dir(name) / "metadata").read_text())
        except FileNotFoundError:
            return None

    def read_all(self) -> dict[str, dict[str, Any]]:
        result = {}
        for name in self.names():
            data = self.read(name)
            if data is not None:
                result[name] = data
        return result

    def load(self, name: str) -> SessionRecord | None:
        """The session's record, or None when it has no metadata."""
        data = self.read(name)
        return None if data is None else record.from_fields({**data, "name": name})

    def load_all(self) -> dict[str, SessionRecord]:
        return {
            name: record.from_fields({**data, "name": name})
            for name, data in self.read_all().items()
        }

    def save(self, session: SessionRecord) -> None:
        """Replace the session's metadata with the record. Call with the lock held."""
        self.write(session.name, record.to_fields(session))

    @contextlib.contextmanager
    def lock(self, name: str, blocking: bool = True) -> Iterator[bool]:
        """Hold the session's exclusive lock. Yields False if not blocking and it is taken.

        Lock files live apart from the session directories, so a failed start leaves no
        directory behind and a destroy never pulls a lock out from under a waiter.
        """
        locks = _private_dir(self.root.parent / "locks")
        with open(locks / f"{name}.lock", "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def write(self, name: str, data: dict[str, Any]) -> None:
        """Replace the metadata. Call with the lock held."""
        data = {**data, "name": name, "schema": SCHEMA, "updated": now_iso()}
        _atomic_write(_private_dir(self.dir(name)) / "metadata", render(data), 0o644)

    def update(self, name: str, blocking: bool = True, **changes: Any) -> SessionRecord | None:
        """Locked read-modify-write of some keys. Returns the new record, or None if
        there is none (or, when not blocking, if another process holds the lock)."""
        if not (self.dir(name) / "metadata").is_file():
            return None
        with self.lock(name, blocking) as locked:
            data = self.read(name) if locked else None
            if data is None:
                return None
            data.update({key: record.encode(value) for key, value in changes.items()})
            self.write(name, data)
            return record.from_fields({**data, "name": name})

    def mark_active(self, name: str) -> None:
        """Note that someone used the session now (shell, attach, exec). Never waits."""
        from claude_cage import resources  # start-up time: `list` never marks

        self.update(name, blocking=False, last_active=resources.format_time(time.time()))

    def remove(self, name: str) -> None:
        import shutil  # start-up time: only destroy and gc remove anything

        shutil.rmtree(self.dir(name), ignore_errors=True)

    # Secrets live beside the metadata, one 0600 file each, never inside it.
    def write_secret(self, name: str, secret: str, value: str) -> Path:
        path = _private_dir(self.dir(name)) / secret
        _atomic_write(path, value, 0o600)
        return path

    def read_secret(self, name: str, secret: str) -> str | None:
        try:
            return (self.dir(name) / secret).read_text()
        except FileNotFoundError:
            return None
