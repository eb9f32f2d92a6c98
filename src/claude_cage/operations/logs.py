"""`logs`: what the agent did, from Claude Code's transcripts in the session's data
volume (see transcript.py), read through the engine's archive API, which works for a
running and a stopped session alike, and, once it is destroyed, from its newest archive
(history.py); `logs --raw`: the container's own output."""

from __future__ import annotations

import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from claude_cage import names
from claude_cage.engine.api import EngineAPI
from claude_cage.engine.chunks import ChunkFile
from claude_cage.errors import SessionNotFound
from claude_cage.operations.owned import inspect_ours
from claude_cage.transcript import Event, Reader

if TYPE_CHECKING:
    from claude_cage.context import Context

TRANSCRIPTS = "/home/claude/.claude/projects"  # CLAUDE_CONFIG_DIR/projects
FOLLOW_INTERVAL = 1.0  # seconds between two looks at the files when following


def _container(engine: EngineAPI, name: str) -> str:
    container = names.container_name(name)
    if inspect_ours(engine, container) is None:
        raise SessionNotFound(name)
    return container


MAX_HELD = 1024**3  # transcripts held at once, in all (as history.MAX_HELD for an archive)
MAX_STREAMED = 2 * MAX_HELD  # what the engine's tar may carry before the rest is not read


def transcript_files(engine: EngineAPI, container: str) -> tuple[dict[str, bytes], list[str]]:
    """Every transcript file in the session (path -> its content), and the paths of
    those left out, past MAX_HELD bytes in all: the session decides their sizes, and
    an unbounded data volume would otherwise be held in this process's memory."""
    chunks = engine.get_archive(container, TRANSCRIPTS)
    if chunks is None:
        return {}, []
    files, left_out, held, streamed = {}, [], 0, 0
    try:
        with tarfile.open(fileobj=ChunkFile(chunks), mode="r|") as archive:  # plain tar
            for member in archive:
                streamed += member.size
                if streamed > MAX_STREAMED:  # a sparse file of terabytes streams for hours
                    left_out.append(f"{member.name} and any file after it")
                    break
                if member.isfile() and member.name.endswith(".jsonl"):
                    if held + member.size > MAX_HELD:
                        left_out.append(member.name)  # skipped as the stream goes on
                        continue
                    held += member.size
                    handle = archive.extractfile(member)
                    files[member.name] = handle.read() if handle else b""
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()  # the engine's answer, when it is not read to its end
    return files, left_out


@dataclass
class Files:
    """A session's transcript files as they are now (path -> content): the live
    session's, else its newest archive's (`destroyed`: when, ISO 8601)."""

    name: str
    files: dict[str, bytes]
    destroyed: str | None = None
    left_out: tuple[str, ...] = ()  # transcripts past MAX_HELD in all, not read


def read_files(ctx: Context, name: str) -> Files:
    """The live session's transcript files, else its newest archive's (SessionNotFound
    when there is neither)."""
    return _read_files(ctx.engine_for(name), name)


def _read_files(engine: EngineAPI, name: str) -> Files:
    container = names.container_name(name)
    if inspect_ours(engine, container) is None:
        from claude_cage.operations import history  # start-up: only a destroyed session's

        archived = history.latest(name)
        if archived is None:
            raise SessionNotFound(name)
        contents = history.read(archived, frozenset({"transcripts"}))
        when = archived.as_dict()["destroyed"]
        return Files(name, contents.transcripts, when, tuple(contents.left_out))
    files, left_out = transcript_files(engine, container)
    return Files(name, files, left_out=tuple(left_out))


@dataclass
class Transcript:
    """A session's transcript: `batches` of events, the first what is there now; from an
    archive when the session was destroyed (`destroyed`: when, ISO 8601)."""

    name: str
    batches: Iterator[list[Event]]
    destroyed: str | None = None
    left_out: tuple[str, ...] = ()  # transcripts past MAX_HELD in all, not read


def _last(events: list[Event], tail: int | None) -> list[Event]:
    return events if tail is None else events[len(events) - tail :] if tail > 0 else []


def read_transcript(
    ctx: Context, name: str, follow: bool = False, tail: int | None = None
) -> Transcript:
    """The live session's transcript, else its newest archive's (SessionNotFound when
    there is neither)."""
    engine = ctx.engine_for(name)
    now = _read_files(engine, name)
    reader = Reader()
    first = _last(reader.feed(now.files), tail)
    if now.destroyed is not None:
        return Transcript(name, iter([first]), now.destroyed, now.left_out)
    live = _live(engine, names.container_name(name), reader, first, follow)
    return Transcript(name, live, left_out=now.left_out)


def transcript(
    ctx: Context, name: str, follow: bool = False, tail: int | None = None
) -> Iterator[list[Event]]:
    """The session's transcript events in time order: what is there now (the last
    `tail` of them), then, when following, each new batch as it appears."""
    yield from read_transcript(ctx, name, follow, tail).batches


def _live(
    engine: EngineAPI, container: str, reader: Reader, first: list[Event], follow: bool
) -> Iterator[list[Event]]:
    yield first
    while follow:
        time.sleep(FOLLOW_INTERVAL)
        if engine.inspect(container) is None:
            return
        yield reader.feed(transcript_files(engine, container)[0])


def raw(ctx: Context, name: str, follow: bool = False, tail: int | None = None) -> Iterator[bytes]:
    """The session container's own output (`logs --raw`)."""
    engine = ctx.engine_for(name)
    yield from engine.logs(_container(engine, name), follow=follow, tail=tail)
