"""The flight recorder: what a destroyed session leaves behind.

`destroy` (unless --purge) writes one gzip-compressed tar per session into
`$CAGE_DATA_DIR/history/NAME@STAMP.tar.gz`, mode 0600, written whole or not at all
(a temporary file, then a rename):

    manifest.json      the record's facts and when the session was destroyed
    transcripts/...    Claude Code's JSONL transcripts, as `logs` reads them
    egress.log         the companion's audit lines, as `egress` reads them
    events.jsonl       the session's events from the event log

Every JSON value goes through `redaction.redact` on the way in, and every other line
through `mask_uri`, so an archive holds no secret the event log would not. `logs` and
`egress` read the newest archive of a name once the session is gone; `history` lists
them; `history_days` prunes them (`gc`, and every new archive). A damaged archive is a
`DamagedArchive` naming the file, never a traceback.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import tarfile
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from claude_cage import names, paths
from claude_cage.engine.api import EngineAPI
from claude_cage.errors import CageError
from claude_cage.eventlog.redaction import mask_uri, redact
from claude_cage.record import SessionRecord

SUFFIX = ".tar.gz"
STAMP = "%Y%m%dT%H%M%S%fZ"
_FILE = re.compile(r"^(?P<name>[a-z0-9][a-z0-9_.-]{0,62})@(?P<stamp>\d{8}T\d{12}Z)\.tar\.gz$")
MAX_MEMBER = 512 * 1024**2  # a member larger than this is damage, not a transcript
# The record's fields a reader of the history wants (never env values: a record has none).
MANIFEST_FIELDS = ("mode", "network", "runtime", "image", "created", "started", "stopped",
                   "repo", "repo_name", "branch", "base", "engine", "allowed_hosts")  # fmt: skip


class DamagedArchive(CageError):
    def __init__(self, path: Path, why: str) -> None:
        super().__init__(
            f"the archive {path} is damaged: {why}",
            "move it aside; 'claude-cage history' lists the others",
        )


@dataclass(frozen=True)
class Archived:
    """One archive on disk."""

    name: str
    destroyed: datetime
    path: Path
    size: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "destroyed": self.destroyed.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "path": str(self.path),
            "size": self.size,
        }


@dataclass
class Contents:
    """What an archive holds."""

    archived: Archived
    manifest: dict[str, Any] = field(default_factory=dict)
    transcripts: dict[str, bytes] = field(default_factory=dict)
    egress: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)


def history_dir() -> Path:
    return paths.data_dir() / "history"


def _redact_jsonl(data: bytes) -> bytes:
    """Each JSON line redacted; a line that is not JSON has its URI credentials masked."""
    out = []
    for line in data.decode(errors="replace").splitlines():
        try:
            out.append(json.dumps(redact(json.loads(line)), ensure_ascii=False))
        except ValueError:
            out.append(mask_uri(line))
    return ("\n".join(out) + "\n" if out else "").encode()


def _egress_lines(engine: EngineAPI, name: str) -> str:
    info = engine.inspect(names.companion_name(name))
    if info is None:
        return ""
    lines = [raw.decode(errors="replace") for _stamp, raw in engine.output_lines(info.id)]
    return "\n".join(mask_uri(line.rstrip("\n")) for line in lines)


def _manifest(name: str, meta: SessionRecord | None, when: datetime) -> dict[str, Any]:
    facts: dict[str, Any] = {"name": name, "destroyed": when.strftime("%Y-%m-%dT%H:%M:%SZ")}
    if meta is not None:
        for key in MANIFEST_FIELDS:
            value = getattr(meta, key, None)
            facts[key] = list(value) if isinstance(value, tuple) else value
    return redact(facts)  # type: ignore[no-any-return]


def archive(
    engine: EngineAPI,
    name: str,
    meta: SessionRecord | None,
    transcripts: dict[str, bytes],
    events: list[dict[str, Any]],
) -> Archived:
    """Archive a session about to be destroyed (its companion still there, stopped or
    not), with its transcript files and events. Raises CageError when it cannot be
    written: then nothing is destroyed."""
    when = datetime.now(UTC)
    members: dict[str, bytes] = {
        "manifest.json": json.dumps(_manifest(name, meta, when), indent=1).encode()
    }
    for path, data in sorted(transcripts.items()):
        members[f"transcripts/{path}"] = _redact_jsonl(data)
    members["egress.log"] = _egress_lines(engine, name).encode()
    members["events.jsonl"] = b"".join(
        json.dumps(redact(e), ensure_ascii=False).encode() + b"\n" for e in events
    )
    directory = history_dir()
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = directory / f"{name}@{when.strftime(STAMP)}{SUFFIX}"
        fd, temp = tempfile.mkstemp(dir=directory, prefix=".archive-", suffix=".tmp")
        try:
            os.close(fd)
            with tarfile.open(temp, mode="w:gz") as tar:
                for member, data in members.items():
                    info = tarfile.TarInfo(member)
                    info.size, info.mtime, info.mode = len(data), int(when.timestamp()), 0o600
                    tar.addfile(info, io.BytesIO(data))
            os.replace(temp, target)
        finally:
            if os.path.exists(temp):
                os.unlink(temp)
    except OSError as exc:
        raise CageError(
            f"cannot archive session {name} in {directory}: {exc.strerror or exc}",
            f"free the space, or destroy it without an archive: 'claude-cage destroy --purge "
            f"{name}'",
        ) from None
    return Archived(name, when, target, target.stat().st_size)


def entries(name: str | None = None) -> list[Archived]:
    """The archives, oldest first (only `name`'s when given). Files that are not
    archives (a temporary file a killed destroy left) are not listed."""
    try:
        found = list(history_dir().iterdir())
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise CageError(f"cannot read {history_dir()}: {exc.strerror or exc}") from None
    out = []
    for path in found:
        match = _FILE.match(path.name)
        if match is None or (name is not None and match["name"] != name):
            continue
        when = datetime.strptime(match["stamp"], STAMP).replace(tzinfo=UTC)
        try:
            size = path.stat().st_size
        except OSError:
            continue  # pruned under us
        out.append(Archived(match["name"], when, path, size))
    return sorted(out, key=lambda a: (a.destroyed, a.name))


def latest(name: str) -> Archived | None:
    """The newest archive of a session named `name`."""
    found = entries(name)
    return found[-1] if found else None


def read(archived: Archived) -> Contents:
    """Everything an archive holds; DamagedArchive when it cannot be read."""
    contents = Contents(archived)
    try:
        with tarfile.open(archived.path, mode="r:gz") as tar:
            for member in tar:
                if not member.isfile() or member.size > MAX_MEMBER:
                    continue
                handle = tar.extractfile(member)
                data = handle.read() if handle else b""
                if member.name == "manifest.json":
                    contents.manifest = json.loads(data)
                elif member.name.startswith("transcripts/"):
                    contents.transcripts[member.name.removeprefix("transcripts/")] = data
                elif member.name == "egress.log":
                    contents.egress = data.decode(errors="replace")
                elif member.name == "events.jsonl":
                    contents.events = [json.loads(x) for x in data.splitlines() if x.strip()]
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, ValueError) as exc:
        raise DamagedArchive(archived.path, str(exc) or type(exc).__name__) from None
    except OSError as exc:
        raise DamagedArchive(archived.path, exc.strerror or str(exc)) from None
    if not isinstance(contents.manifest, dict):
        raise DamagedArchive(archived.path, "manifest.json is not an object")
    return contents


def expired(days: int, now: float | None = None) -> list[Archived]:
    """The archives older than `days` days (0: none ever expire)."""
    if days <= 0:
        return []
    cutoff = datetime.fromtimestamp(now if now is not None else time.time(), UTC)
    cutoff -= timedelta(days=days)
    return [a for a in entries() if a.destroyed < cutoff]


STALE_TEMP = 3600.0  # seconds: a temporary file this old is a killed destroy's


def _remove_stale_temps(now: float) -> None:
    """The half-written archives of destroys killed mid-write."""
    try:
        temps = list(history_dir().glob(".archive-*.tmp"))
    except OSError:
        return
    for temp in temps:
        try:
            if now - temp.stat().st_mtime > STALE_TEMP:
                temp.unlink()
        except OSError:
            continue


def prune(days: int, dry_run: bool = False) -> list[Archived]:
    """Remove the archives older than `days` days; the ones removed (or, dry, due).
    Half-written archives a killed destroy left go too, unreported."""
    if not dry_run:
        _remove_stale_temps(time.time())
    gone = []
    for archived in expired(days):
        if not dry_run:
            try:
                archived.path.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise CageError(
                    f"cannot remove the archive {archived.path}: {exc.strerror or exc}"
                ) from None
        gone.append(archived)
    return gone
