"""Copying a session's state between volumes: into a snapshot, back from one, or into a
new session (fork, `start --from`).

The copy runs in a throwaway container on the session's engine (so a snapshot of a
session on a remote engine stays there), from an image that engine already has: the
session's. It mounts the sources read-only and the targets, has no network, and runs
`cp -a` as root with only the capabilities a faithful copy needs (CHOWN, DAC_OVERRIDE,
FOWNER, FSETID: owners, modes and files the agent made unreadable). It never runs
anything of the session's.

A running session is frozen for the copy (`docker pause`: its cgroup's freezer), so the
copy is of one moment: every volume as it was at the same instant, as after a power
cut, with nothing half-written by a process that was still running. What is in memory
(running processes, unflushed buffers of a program) is not kept.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from claude_cage import labels, names, paths, policy, quota
from claude_cage.config import parse_size
from claude_cage.engine.api import EngineAPI
from claude_cage.errors import BadInput, CageError, EngineError
from claude_cage.record import SessionRecord

KINDS = ("work", "data", "scratch")  # the clone, Claude Code's data, a scratch /workspace
CAPABILITIES = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"]

# Each kind: the target emptied, then the source copied over it, the top directory's
# owner and mode with it ("/."); then each target's size in bytes.
COPY = r"""
set -eu
for kind in "$@"; do
    find "/to/$kind" -mindepth 1 -maxdepth 1 -exec rm -rf -- {} +
    cp -a "/from/$kind/." "/to/$kind/"
done
for kind in "$@"; do
    printf '%s %s\n' "$kind" "$(du -sbx "/to/$kind" | cut -f1)"
done
"""


def session_volumes(meta: SessionRecord) -> dict[str, str]:
    """What of a session a snapshot keeps, kind -> its volume: the clone, Claude Code's
    data, and the scratch /workspace of a session without a project."""
    found = {}
    if meta.repo_name:
        found["work"] = names.workspace_volume(meta.name)
    if meta.persist:
        found["data"] = names.data_volume(meta.name)
        if not meta.repo_name and not meta.mounts:
            found["scratch"] = names.scratch_volume(meta.name)
    return found


def refuse_mounts(meta: SessionRecord, verb: str) -> None:
    """A bound host directory is the user's own disk: nothing of it can be kept."""
    if meta.mounts:
        raise BadInput(
            f"session {meta.name} works on host directories (--mount): {verb} cannot keep them",
            "start the session with --clone PATH to snapshot and fork its project",
        )


def bounded_size(volume: str, kind: str, cfg: dict[str, object]) -> str:
    """The size a new volume gets: that of the volume it copies when bounded, else the
    config's."""
    image = paths.data_dir() / "volumes" / volume / "fs.img"
    with contextlib.suppress(OSError):
        return str(image.stat().st_size)
    return str(cfg["data_size"] if kind == "data" else cfg["workspace_size"])


def make_volume(
    engine: EngineAPI, volume: str, volume_labels: dict[str, str], size: str, owner: tuple[int, int]
) -> None:
    """A new volume for a copy: bounded (quota.py) on the local engine when it can be."""
    options = None
    if engine.endpoint.is_local and parse_size(size):
        options = quota.prepare(volume, size, *owner)
    engine.ensure_volume(volume, volume_labels, options)


@dataclass(frozen=True)
class Copy:
    kind: str
    source: str  # volume
    target: str  # volume


def copy(
    engine: EngineAPI,
    image: str,
    session: str,
    copies: list[Copy],
    freeze: str | None = None,
) -> int:
    """Copy each source volume over its target (emptied first); with `freeze`, that
    container (if it runs) is paused for the copy. Returns the bytes copied."""
    if engine.endpoint.is_local:
        for item in copies:  # bounded volumes, after a reboot
            quota.ensure_mounted(item.source)
            quota.ensure_mounted(item.target)
    volumes = []
    for item in copies:
        volumes += [
            {"source": item.source, "target": f"/from/{item.kind}", "read_only": True,
             "no_copy": True},
            {"source": item.target, "target": f"/to/{item.kind}", "no_copy": True},
        ]  # fmt: skip
    with (
        helper(engine, image, session, volumes, "0:0", CAPABILITIES) as name,
        _frozen(engine, freeze),
    ):
        code, out, err = engine.exec_output(
            name, ["sh", "-c", COPY, "copy", *(c.kind for c in copies)]
        )
    if code != 0:
        raise EngineError(
            f"could not copy the session's volumes: {err.decode(errors='replace').strip()[-300:]}",
            "see 'claude-cage doctor' (is the disk full?)",
        )
    total = 0
    for line in out.decode(errors="replace").splitlines():
        _kind, _, size = line.partition(" ")
        total += int(size) if size.isdigit() else 0
    return total


@contextlib.contextmanager
def helper(
    engine: EngineAPI,
    image: str,
    session: str,
    volumes: list[dict[str, object]],
    user: str,
    cap_add: list[str],
) -> Iterator[str]:
    """A throwaway container of the session's image on its engine, mounting `volumes`,
    with no network and only the capabilities `cap_add`: its name, while it sleeps for
    the copy's exec. Removed at the end, and by `gc` when a command is killed."""
    spec = policy.ContainerSpec(
        name=names.copy_container(session),
        image=image,
        role=labels.Role.COPY,
        labels=labels.for_session(
            session, paths.owner_id(), "cli", "none", False, labels.Role.COPY
        ),
        user=user,
        command=["sleep", "3600"],
        volumes=volumes,
        tmpfs={
            "/run": "rw,nosuid,nodev,noexec,size=1m",
            "/tmp": "rw,nosuid,nodev,size=1m",
        },
        cap_add=cap_add,
        security_opt=["no-new-privileges:true"],
        network_mode="none",
        pids_limit=64,
    )
    engine.remove(spec.name)  # a leftover of a killed run
    engine.create(spec)
    try:
        engine.start(spec.name)
        yield spec.name
    finally:
        with contextlib.suppress(CageError):
            engine.remove(spec.name)


@contextlib.contextmanager
def _frozen(engine: EngineAPI, container: str | None) -> Iterator[None]:
    """The container paused (if it runs and is not paused already), then unpaused."""
    info = engine.inspect(container) if container else None
    if container is None or info is None or not info.running or info.state.paused:
        yield
        return
    engine.pause(container)
    try:
        yield
    finally:
        engine.unpause(container)
