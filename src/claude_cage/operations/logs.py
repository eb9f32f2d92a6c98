"""`logs`: what the agent did, from Claude Code's transcripts in the session's data
volume (see transcript.py), read through the engine's archive API, which works for a
running and a stopped session alike; `logs --raw`: the container's own output."""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from claude_cage import names
from claude_cage.engine.api import EngineAPI
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


def transcript_files(engine: EngineAPI, container: str) -> dict[str, bytes]:
    """Every transcript file in the session: path -> its content."""
    data = engine.get_archive(container, TRANSCRIPTS)
    if not data:
        return {}
    files = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        for member in archive:
            if member.isfile() and member.name.endswith(".jsonl"):
                handle = archive.extractfile(member)
                files[member.name] = handle.read() if handle else b""
    return files


def transcript(
    ctx: Context, name: str, follow: bool = False, tail: int | None = None
) -> Iterator[list[Event]]:
    """The session's transcript events in time order: what is there now (the last
    `tail` of them), then, when following, each new batch as it appears."""
    engine = ctx.engine_for(name)
    container = _container(engine, name)
    reader = Reader()
    events = reader.feed(transcript_files(engine, container))
    yield events if tail is None else events[len(events) - tail :] if tail > 0 else []
    while follow:
        time.sleep(FOLLOW_INTERVAL)
        if engine.inspect(container) is None:
            return
        yield reader.feed(transcript_files(engine, container))


def raw(ctx: Context, name: str, follow: bool = False, tail: int | None = None) -> Iterator[bytes]:
    """The session container's own output (`logs --raw`)."""
    engine = ctx.engine_for(name)
    yield from engine.logs(_container(engine, name), follow=follow, tail=tail)
