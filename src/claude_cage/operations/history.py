"""The flight recorder: what a removed session leaves behind.

Whatever removes a session (`destroy`, the `stop` of an ephemeral one, `gc`), unless
given --purge, first writes one gzip-compressed tar of it into
`$CAGE_DATA_DIR/history/NAME@STAMP.tar.gz`, mode 0600, written whole or not at all
(a temporary file, then a rename):

    manifest.json      the record's facts and when the session was destroyed
    transcripts/...    Claude Code's JSONL transcripts, as `logs` reads them; streamed
                       from the engine a line at a time, each file at most
                       `history_transcript_size` (64m): past it, and for a line
                       longer than LINE_MAX, a `system` line says what was left out
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
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from claude_cage import names, paths
from claude_cage.engine.api import EngineAPI
from claude_cage.engine.chunks import ChunkFile
from claude_cage.errors import CageError
from claude_cage.eventlog.redaction import mask_uri, redact
from claude_cage.record import SessionRecord

SUFFIX = ".tar.gz"
STAMP = "%Y%m%dT%H%M%S%fZ"
_FILE = re.compile(r"^(?P<name>[a-z0-9][a-z0-9_.-]{0,62})@(?P<stamp>\d{8}T\d{12}Z)\.tar\.gz$")
MAX_MEMBER = 512 * 1024**2  # a member larger than this is damage, not a transcript
# What `read` holds of an archive's transcripts in all: each is capped as it is written,
# but a session can write many, and the archive is read into memory.
MAX_HELD = 1024**3
# What the engine's tar of the transcripts may carry before the rest is not read: a
# sparse transcript of terabytes is a few bytes of the volume and all of the tar.
MAX_STREAMED = 2 * MAX_HELD
PARTS = frozenset({"transcripts", "egress", "events"})  # with the manifest, always read
MAX_TRANSCRIPT = "512m"  # history_transcript_size's ceiling: what `read` still takes
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
    # transcripts not read: past MAX_HELD, what `read` holds of transcripts in all
    left_out: list[str] = field(default_factory=list)


def history_dir() -> Path:
    return paths.data_dir() / "history"


LINE_MAX = 8 * 1024**2  # a longer transcript line is left out of the archive, marked
ROOM = 512  # bytes kept under the cap for the line that says the rest was left out


def _marker(text: str, timestamp: str) -> bytes:
    """A line `logs` shows as a system line, where the archive left something out."""
    line = {"type": "system", "content": f"claude-cage: {text}", "timestamp": timestamp}
    return json.dumps(line).encode() + b"\n"


def _redact_line(line: bytes, stamp: str = "") -> tuple[bytes, str]:
    """The line redacted (JSON), or its URI credentials masked (anything else); and the
    timestamp it carries ("" when none). A line nested too deep to parse is left out,
    marked at `stamp` (the session wrote it: it must not stop `destroy`)."""
    text = line.rstrip(b"\r\n").decode(errors="replace")
    try:
        data = json.loads(text)
    except ValueError:
        return mask_uri(text).encode() + b"\n", ""
    except RecursionError:
        return _marker(f"a line nested too deep ({len(line)} bytes) was left out", stamp), ""
    found = data.get("timestamp") if isinstance(data, dict) else None
    return (
        json.dumps(redact(data), ensure_ascii=False).encode() + b"\n",
        found if isinstance(found, str) else "",
    )


def _redact_stream(source: IO[bytes], size: int, out: IO[bytes], cap: int) -> int:
    """Copy a JSONL transcript of `size` bytes from `source` to `out`, redacted line by
    line, in at most `cap` bytes: past it, the rest is left out and a last line says so.
    A line longer than LINE_MAX is left out too, marked. Holds one line at a time.
    Returns the bytes written."""
    written = done = 0
    stamp = ""
    longest = min(LINE_MAX, cap // 2)
    while line := source.readline(longest + 1):
        skipped = len(line)
        if len(line) > longest:  # a line too long to hold: the rest of it is skipped
            tail = line
            while not tail.endswith(b"\n") and (tail := source.readline(longest)):
                skipped += len(tail)
            kept = _marker(f"a line of {skipped} bytes was left out of the archive", stamp)
        else:
            kept, found = _redact_line(line, stamp)
            stamp = found or stamp
        if written + len(kept) > cap - ROOM:
            last = _marker(
                f"the archive keeps {cap} bytes of a transcript (history_transcript_size): "
                f"its last {size - done} bytes were left out",
                stamp,
            )
            out.write(last)
            return written + len(last)
        out.write(kept)
        written += len(kept)
        done += skipped
    return written


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
    transcripts: Iterator[bytes] | None,
    events: list[dict[str, Any]],
    cap: int,
) -> Archived:
    """Archive a session about to be removed (its companion still there, stopped or
    not): `transcripts` is the engine's tar of its transcript directory as it comes
    (None: there is none), each JSONL file in it kept within `cap` bytes; and its
    events. Raises CageError when it cannot be written: then nothing is removed."""
    when = datetime.now(UTC)
    directory = history_dir()
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = directory / f"{name}@{when.strftime(STAMP)}{SUFFIX}"
        fd, temp = tempfile.mkstemp(dir=directory, prefix=".archive-", suffix=".tmp")
        try:
            os.close(fd)
            with tarfile.open(temp, mode="w:gz") as tar:
                stamp = int(when.timestamp())
                manifest = json.dumps(_manifest(name, meta, when), indent=1).encode()
                _add(tar, "manifest.json", io.BytesIO(manifest), len(manifest), stamp)
                if transcripts is not None:
                    _add_transcripts(name, transcripts, tar, stamp, cap)
                egress = _egress_lines(engine, name).encode()
                _add(tar, "egress.log", io.BytesIO(egress), len(egress), stamp)
                lines = b"".join(
                    json.dumps(redact(e), ensure_ascii=False).encode() + b"\n" for e in events
                )
                _add(tar, "events.jsonl", io.BytesIO(lines), len(lines), stamp)
            os.replace(temp, target)
        finally:
            if os.path.exists(temp):
                os.unlink(temp)
    except OSError as exc:
        raise CageError(
            f"cannot archive session {name} in {directory}: {exc.strerror or exc}",
            "free the space, or give --purge to keep no archive",
        ) from None
    return Archived(name, when, target, target.stat().st_size)


def _add(tar: tarfile.TarFile, member: str, data: IO[bytes], size: int, stamp: int) -> None:
    info = tarfile.TarInfo(member)
    info.size, info.mtime, info.mode = size, stamp, 0o600
    tar.addfile(info, data)


def _add_transcripts(
    name: str, chunks: Iterator[bytes], tar: tarfile.TarFile, stamp: int, cap: int
) -> None:
    """Each JSONL file of the engine's tar, redacted and capped, through a temporary
    file beside the archive (a tar member's size goes before it), one file at a time."""
    try:
        streamed = 0
        with tarfile.open(fileobj=ChunkFile(chunks), mode="r|") as source:  # never compressed
            for member in source:
                streamed += member.size
                if streamed > MAX_STREAMED:
                    break  # this file and those after it are not archived
                handle = source.extractfile(member) if member.isfile() else None
                if handle is None or not member.name.endswith(".jsonl"):
                    continue
                with tempfile.TemporaryFile(dir=history_dir()) as spool:
                    size = _redact_stream(handle, member.size, spool, cap)
                    spool.seek(0)
                    _add(tar, f"transcripts/{member.name}", spool, size, stamp)
    except (tarfile.TarError, EOFError) as exc:
        raise CageError(
            f"cannot read session {name}'s transcripts from the engine: {exc}",
            "give --purge to keep no archive",
        ) from None
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()  # the engine's connection, when the tar ended before its body did


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


def _part(member_name: str) -> str:
    if member_name == "manifest.json":
        return "manifest"
    if member_name.startswith("transcripts/"):
        return "transcripts"
    return {"egress.log": "egress", "events.jsonl": "events"}.get(member_name, "")


def read(archived: Archived, parts: frozenset[str] = PARTS) -> Contents:
    """The manifest and the `parts` an archive holds; DamagedArchive when it cannot be
    read. Transcripts past MAX_HELD bytes in all are named in `left_out`, not read."""
    contents = Contents(archived)
    held = 0
    try:
        with tarfile.open(archived.path, mode="r:gz") as tar:
            for member in tar:
                part = _part(member.name)
                if part not in parts | {"manifest"} or not member.isfile():
                    continue
                if member.size > MAX_MEMBER:
                    continue
                if part == "transcripts" and held + member.size > MAX_HELD:
                    contents.left_out.append(member.name.removeprefix("transcripts/"))
                    continue
                handle = tar.extractfile(member)
                data = handle.read() if handle else b""
                if part == "manifest":
                    contents.manifest = json.loads(data)
                elif part == "transcripts":
                    held += len(data)
                    contents.transcripts[member.name.removeprefix("transcripts/")] = data
                elif part == "egress":
                    contents.egress = data.decode(errors="replace")
                elif part == "events":
                    contents.events = [json.loads(x) for x in data.splitlines() if x.strip()]
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, ValueError) as exc:
        raise DamagedArchive(archived.path, str(exc) or type(exc).__name__) from None
    except RecursionError:  # JSON nested past the interpreter's limit
        raise DamagedArchive(archived.path, "JSON nested too deep") from None
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
