"""The one way a session about to be removed is archived (history.py), whatever removes
it: `destroy`, the `stop` of an ephemeral session, `gc`.

The transcripts are read from the session's container (running or stopped, its data
volume included) while there is one; when it is gone (an ephemeral session's container
removes itself as it stops) from its data volume, through a container that is only
created, never started, with nothing but that volume. A session without either (no
data volume: `--no-persist`, its container gone) leaves no transcript to keep.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING

from claude_cage import labels, names, paths, policy, workdir
from claude_cage.engine.api import EngineAPI
from claude_cage.errors import CageError, ImageMissing
from claude_cage.kinds import Mode, Network
from claude_cage.operations import companion, history, logs
from claude_cage.operations.owned import inspect_ours
from claude_cage.record import SessionRecord

if TYPE_CHECKING:
    from claude_cage.context import Context


def archive(
    ctx: Context, engine: EngineAPI, name: str, meta: SessionRecord | None
) -> history.Archived:
    """Archive the session (its companion's log filed in the event log first), and
    prune the archives past `history_days`. The caller holds the session's lock.
    Raises CageError when it cannot: then the caller removes nothing."""
    from claude_cage.validators import parse_size  # start-up: the validators' imports

    companion.drain_audit(ctx, engine, name)
    cap = parse_size(ctx.config["history_transcript_size"])
    with _transcripts(ctx, engine, name, meta) as chunks:
        done = history.archive(engine, name, meta, chunks, ctx.events.query(session=name), cap)
    history.prune(int(ctx.config["history_days"]))
    return done


@contextlib.contextmanager
def _transcripts(
    ctx: Context, engine: EngineAPI, name: str, meta: SessionRecord | None
) -> Iterator[Iterator[bytes] | None]:
    """The engine's tar of the transcript directory, as it comes; None when none."""
    container = names.container_name(name)
    if inspect_ours(engine, container) is not None:
        yield engine.get_archive(container, logs.TRANSCRIPTS)
        return
    volume = names.data_volume(name)
    if not labels.is_ours(engine.volume_labels(volume)):
        yield None
        return
    reader = policy.ContainerSpec(
        name=names.export_container(name),
        image=meta.image if meta is not None and meta.image else str(ctx.config["image_cli"]),
        role=labels.Role.EXPORT,
        labels=labels.for_session(
            name,
            paths.owner_id(),
            meta.mode if meta is not None else Mode.CLI,
            meta.network if meta is not None else Network.NONE,
            meta.ephemeral if meta is not None else False,
            labels.Role.EXPORT,
        ),
        command=["true"],
        volumes=[{"source": volume, "target": workdir.CONFIG_DIR, "read_only": True}],
    )
    engine.remove(reader.name)  # a leftover of a killed run
    try:
        engine.create(reader)
    except ImageMissing:  # its own image is gone: any other reads the volume as well
        reader = dataclasses.replace(reader, image=str(ctx.config["image_cli"]))
        engine.create(reader)
    try:
        yield engine.get_archive(reader.name, logs.TRANSCRIPTS)
    finally:
        with contextlib.suppress(CageError):
            engine.remove(reader.name)
