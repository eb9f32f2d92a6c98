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
import errno
import fcntl
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from claude_cage import paths, record
from claude_cage.errors import BadInput, CageError, DamagedFile, file_error
from claude_cage.record import SessionRecord

# The format's version, written as the file's last line. 1: values as they came, a
# newline turned into a space. 2: values escaped (see `_escape`), mounts in
# `Mount.to_field` form. Every version this one knows is read.
SCHEMA = "2"
SCHEMAS = ("1", "2")
REQUIRED = ("name", "mode", "status", "created", "container")
MAX_BYTES = 1 << 20  # a record is a few hundred bytes: a bigger file is damage, not read


class DamagedMetadata(DamagedFile):
    """A session's metadata file that cannot be read back as a record."""

    def __init__(self, name: str, path: Path, reason: str) -> None:
        self.name = name
        super().__init__(
            path,
            f"the metadata of session {name} is damaged ({reason})",
            f"remove the session with 'claude-cage destroy --force {name}' (the engine's "
            "labels are enough), or, while it runs, rebuild its record with 'claude-cage gc'",
        )
        self.reason = reason


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {"\\": "\\", "n": "\n", "r": "\r"}


def _escape(text: str) -> str:
    """One value on one line: backslash, newline and carriage return escaped, and lone
    surrogates (undecodable bytes of a path) as \\uXXXX, so the file stays UTF-8."""
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif "\ud800" <= char <= "\udfff":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return "".join(out)


def _unescape(text: str) -> str:
    if "\\" not in text:  # most values: nothing to undo
        return text
    out, i = [], 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt in _UNESCAPES:
                out.append(_UNESCAPES[nxt])
                i += 2
                continue
            if nxt == "u" and len(text) >= i + 6:
                try:
                    out.append(chr(int(text[i + 2 : i + 6], 16)))
                    i += 6
                    continue
                except ValueError:
                    pass
        out.append(char)
        i += 1
    return "".join(out)


def parse(text: str) -> dict[str, Any]:
    """The one reader of the key=value text (the seed's format). Lines split on newline
    only: other line breaks Python knows (\\x1c, \\u2028, ...) can be part of a value."""
    pairs = []
    for line in text.split("\n"):
        key, sep, value = line.removesuffix("\r").partition("=")
        if not sep or not key.strip() or key.startswith("#"):
            continue
        pairs.append((key.strip(), value))
    schema = next((value for key, value in reversed(pairs) if key == "schema"), "1")
    escaped = schema != "1"
    json_keys = record.json_keys()
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in json_keys:
            try:
                data[key] = json.loads(value)
                continue
            except (ValueError, RecursionError):  # RecursionError: nested too deep
                pass
        data[key] = _unescape(value) if escaped else value
    if not escaped and isinstance(data.get("mounts"), list):
        data["mounts"] = [record.Mount.from_legacy(m).to_field() for m in data["mounts"]]
    return data


def render(data: dict[str, Any]) -> str:
    """The one writer. The seed's keys first, as the seed wrote them; `schema` last, so
    a record cut short is told by its missing last line."""
    lines = []
    ordered = [k for k in REQUIRED if k in data] + sorted(
        k for k in data if k not in REQUIRED and k != "schema"
    )
    if "schema" in data:
        ordered.append("schema")
    for key in ordered:
        value = data[key]
        if value is None:
            continue
        if key in record.json_keys() or isinstance(value, list | dict):
            text = json.dumps(value, separators=(",", ":"))
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = _escape(str(value))
        lines.append(f"{key}={text}")
    return "\n".join(lines) + "\n"


def check(name: str, data: dict[str, Any]) -> str | None:
    """Why `data` is not a usable record of session `name`, or None when it is."""
    missing = [key for key in REQUIRED if not data.get(key)]
    if missing:
        return f"cut short or not metadata: no {', '.join(missing)}"
    # A record claude-cage wrote ends with its schema line; one written by hand in the
    # seed's format has only the seed's keys.
    if "schema" in data and data["schema"] not in SCHEMAS and data["schema"].isdigit():
        return f"written by a newer claude-cage (schema {data['schema']})"
    if set(data) - set(REQUIRED) and data.get("schema") not in SCHEMAS:
        return "cut short: its last line, schema=" + SCHEMA + ", is missing"
    if data["name"] != name:
        return f"it names session {data['name']!r}"
    kinds = record.field_types()
    for key in ("mode", "status"):
        try:
            kinds[key](data[key])
        except ValueError:
            return f"unknown {key} {data[key]!r}"
    for key in record.json_keys():
        if key in data and not isinstance(data[key], list):
            return f"{key} is not a list"
    return None


def _record(name: str, data: dict[str, Any]) -> SessionRecord:
    """The typed record of parsed metadata; `schema` belongs to the file, not to it."""
    return record.from_fields({**{k: v for k, v in data.items() if k != "schema"}, "name": name})


def _read_at_most(path: Path, limit: int) -> bytes:
    """Up to `limit` bytes of a regular file; never waits (a FIFO in its place)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", str(path))
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        chunks, left = [], limit
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


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


def write_file(path: Path, text: str, mode: int = 0o600) -> None:
    """Replace `path` atomically, making its directory (0700); a failure (a full or
    read-only disk) is one line naming the file."""
    try:
        _atomic_write(_private_dir(path.parent) / path.name, text, mode)
    except OSError as exc:
        raise file_error(exc, path) from None


class SessionStore:
    """All sessions' metadata under one data directory."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root if root is not None else paths.sessions_dir()

    def dir(self, name: str) -> Path:
        """The session's folder; a name that is not one plain path component (`../x`,
        `a/b`: no session can have it) is refused, so it never reaches another folder."""
        if not name or name in (".", "..") or "/" in name or "\0" in name:
            raise BadInput(
                f"invalid session name {name!r}",
                "session names are 1-63 characters: lowercase letters, digits, '_', '.', '-'",
            )
        return self.root / name

    def names(self) -> list[str]:
        """Sessions with a metadata file (damaged ones too)."""
        try:
            entries = list(self.root.iterdir())
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise file_error(exc, self.root) from None
        return sorted(p.name for p in entries if os.path.lexists(p / "metadata"))

    def read(self, name: str) -> dict[str, Any] | None:
        """The session's metadata; None when it has none. Raises DamagedMetadata when
        the file is there but unusable (not UTF-8, empty, cut short, garbage, a
        directory, unreadable, over MAX_BYTES, a value that does not fit its field)."""
        found = self._read(name)
        return None if found is None else found[0]

    def _read(self, name: str) -> tuple[dict[str, Any], SessionRecord] | None:
        """The session's metadata and its record, decoded once (as `read`)."""
        path = self.dir(name) / "metadata"
        try:
            raw = _read_at_most(path, MAX_BYTES + 1)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except IsADirectoryError:
            raise DamagedMetadata(name, path, "a directory is in its place") from None
        except OSError as exc:
            raise DamagedMetadata(name, path, f"cannot be read: {exc.strerror}") from None
        if len(raw) > MAX_BYTES:
            raise DamagedMetadata(name, path, f"larger than {MAX_BYTES >> 20} MiB")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DamagedMetadata(name, path, "not UTF-8 text") from None
        if not text.strip():
            raise DamagedMetadata(name, path, "empty")
        data = parse(text)
        problem = check(name, data)
        if problem:
            raise DamagedMetadata(name, path, problem)
        try:
            return data, _record(name, data)
        except ValueError as exc:  # record.DamagedField: the value that does not fit
            raise DamagedMetadata(name, path, str(exc)) from None

    def _scan(
        self,
    ) -> tuple[dict[str, tuple[dict[str, Any], SessionRecord]], dict[str, DamagedMetadata]]:
        good: dict[str, tuple[dict[str, Any], SessionRecord]] = {}
        damaged: dict[str, DamagedMetadata] = {}
        for name in self.names():
            try:
                found = self._read(name)
            except DamagedMetadata as exc:
                damaged[name] = exc
                continue
            if found is not None:
                good[name] = found
        return good, damaged

    def scan(self) -> tuple[dict[str, dict[str, Any]], dict[str, DamagedMetadata]]:
        """Every session's metadata, and apart from them the damaged ones."""
        good, damaged = self._scan()
        return {name: data for name, (data, _record) in good.items()}, damaged

    def read_all(self) -> dict[str, dict[str, Any]]:
        """Every usable session's metadata (damaged ones left out)."""
        return self.scan()[0]

    def load(self, name: str) -> SessionRecord | None:
        """The session's record, or None when it has no metadata."""
        found = self._read(name)
        return None if found is None else found[1]

    def load_all(self) -> dict[str, SessionRecord]:
        """Every usable record (damaged ones left out: see `scan`)."""
        return self.load_scan()[0]

    def load_scan(self) -> tuple[dict[str, SessionRecord], dict[str, DamagedMetadata]]:
        """Every usable record, and apart from them the damaged ones: each file read
        and decoded once (`list` and the dashboard's sessions page read them all)."""
        good, damaged = self._scan()
        return {name: found for name, (_data, found) in good.items()}, damaged

    def busy(self, name: str) -> bool:
        """Whether a start, stop or destroy holds the session's lock right now."""
        try:
            with self.lock(name, blocking=False) as locked:
                return not locked
        except CageError:
            return False

    def save(self, session: SessionRecord) -> None:
        """Replace the session's metadata with the record. Call with the lock held."""
        self.write(session.name, record.to_fields(session))

    @contextlib.contextmanager
    def lock(self, name: str, blocking: bool = True) -> Iterator[bool]:
        """Hold the session's exclusive lock. Yields False if not blocking and it is taken.

        Lock files live apart from the session directories, so a failed start leaves no
        directory behind and a destroy never pulls a lock out from under a waiter.
        """
        path = self.root.parent / "locks" / f"{name}.lock"
        try:
            handle = open(_private_dir(path.parent) / path.name, "a")  # noqa: SIM115
        except OSError as exc:
            raise file_error(exc, path) from None
        with handle:
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
        write_file(self.dir(name) / "metadata", render(data), 0o644)

    def update(self, name: str, blocking: bool = True, **changes: Any) -> SessionRecord | None:
        """Locked read-modify-write of some keys, best effort: returns the new record, or
        None if there is none, it is damaged, it cannot be written (a full or read-only
        filesystem), or (when not blocking) another process holds the lock."""
        if not (self.dir(name) / "metadata").is_file():
            return None
        try:
            with self.lock(name, blocking) as locked:
                data = self.read(name) if locked else None
                if data is None:
                    return None
                data.update({key: record.encode(value) for key, value in changes.items()})
                self.write(name, data)
                return record.from_fields({**data, "name": name})
        except CageError:
            return None

    def mark_active(self, name: str) -> None:
        """Note that someone used the session now (shell, attach, exec). Never waits."""
        from claude_cage import resources  # start-up time: `list` never marks

        self.update(name, blocking=False, last_active=resources.format_time(time.time()))

    def remove(self, name: str) -> None:
        path = self.dir(name)
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise file_error(exc, exc.filename or path) from None

    # Secrets live beside the metadata, one 0600 file each, never inside it.
    def write_secret(self, name: str, secret: str, value: str) -> Path:
        path = self.dir(name) / secret
        write_file(path, value, 0o600)
        return path

    def read_secret(self, name: str, secret: str) -> str | None:
        path = self.dir(name) / secret
        try:
            return path.read_text()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise DamagedFile(path, f"cannot be read: {reason}") from None
