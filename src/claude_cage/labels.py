"""The Docker labels claude-cage puts on what it makes, and the one check of whether a
Docker object is ours.

Every container, volume and network claude-cage makes carries `managed-by=claude-cage`.
Those of a session also carry `cage.owner`, the id of the data directory that made
them (`paths.owner_id`): two users, or two test runs, sharing one engine never take
each other's objects for their own. An object is ours only with both.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from claude_cage import __version__, paths, processes

MANAGED_BY = "managed-by"
MANAGER = "claude-cage"
OWNER = "cage.owner"
SESSION = "cage.session"
MODE = "cage.mode"
NETWORK = "cage.network"
RUNTIME = "cage.runtime"  # on session containers: runc or runsc
ROLE = "cage.role"
VERSION = "cage.version"
EPHEMERAL = "cage.ephemeral"
IMAGE = "cage.image"  # on images, set by their Dockerfiles
SNAPSHOT = "cage.snapshot"  # on a snapshot's volumes: the snapshot's name
FROM = "cage.from"  # on images with the cage's layer on a user's (images/layer): that image
DEVCONTAINER = "cage.devcontainer"  # ... built from a devcontainer.json: its content key
PROBE = "cage.probe"  # on doctor's throwaway sessions: the pid of the doctor that made them

MANAGED_FILTER = f"{MANAGED_BY}={MANAGER}"  # the engine's label filter for "made by us"


class Role(StrEnum):
    SESSION = "session"
    COMPANION = "companion"
    VOLUME = "volume"
    NETWORK = "network"
    FILL = "fill"  # carries a clone into a new session's volume (operations/clone.py)
    EXPORT = "export"  # reads a stopped session's clone
    COPY = "copy"  # copies a session's volumes to or from a snapshot (snapcopy.py)
    SNAPSHOT = "snapshot"  # a snapshot's volume


class Ownership(StrEnum):
    OURS = "ours"  # made by claude-cage for this data directory
    OTHER_OWNER = "other-owner"  # made by claude-cage for another data directory
    FOREIGN = "foreign"  # not made by claude-cage (or unlabelled)


def for_session(
    name: str, owner: str, mode: str, network: str, ephemeral: bool, role: Role, probe: str = ""
) -> dict[str, str]:
    """The labels of one of a session's objects; `probe`: the pid of the `doctor` whose
    throwaway session this is."""
    found = {
        MANAGED_BY: MANAGER,
        OWNER: owner,
        SESSION: name,
        MODE: str(mode),
        NETWORK: str(network),
        ROLE: str(role),
        VERSION: __version__,
        EPHEMERAL: "true" if ephemeral else "false",
    }
    if probe:
        found[PROBE] = probe
    return found


def for_shared_network() -> dict[str, str]:
    """The egress network has no owner: the sessions of every data directory use it."""
    return {MANAGED_BY: MANAGER, ROLE: Role.NETWORK.value}


def ownership(labels: Mapping[str, str] | None, owner: str | None = None) -> Ownership:
    """Whose object this is; `owner` defaults to this data directory's id."""
    labels = labels or {}
    if labels.get(MANAGED_BY) != MANAGER:
        return Ownership.FOREIGN
    if labels.get(OWNER) != (paths.owner_id() if owner is None else owner):
        return Ownership.OTHER_OWNER
    return Ownership.OURS


def is_ours(labels: Mapping[str, str] | None, owner: str | None = None) -> bool:
    """Made by claude-cage for this data directory (or for `owner`)."""
    return ownership(labels, owner) is Ownership.OURS


def session_of(labels: Mapping[str, str] | None, owner: str | None = None) -> str | None:
    """The session an object of ours belongs to; None when it is not ours or has none."""
    if not is_ours(labels, owner):
        return None
    return (labels or {}).get(SESSION) or None


# Labels no session image may carry. A container takes its image's labels, and those of
# a session's container are claude-cage's: every other one is set at create, but PROBE
# only on doctor's probes, so an image (a project's devcontainer Dockerfile, `LABEL
# cage.probe=x`) saying it would make gc and doctor take a running session for a dead
# probe, removing it with no archive, and keep it out of max_sessions.
IMAGE_REFUSED = (PROBE,)


def is_probe(labels: Mapping[str, str] | None) -> bool:
    """A throwaway object of `doctor`'s: it never counts towards max_sessions, and is
    never adopted as a session."""
    return bool((labels or {}).get(PROBE))


def probe_gone(labels: Mapping[str, str] | None) -> bool:
    """A probe whose doctor is no longer running on this machine (killed before it
    removed the probe): `gc` and the next `doctor` remove it."""
    pid = (labels or {}).get(PROBE, "")
    if not pid.isdigit():
        return bool(pid)  # a probe label that names no process: no doctor owns it
    return processes.gone(int(pid))


def owner_filters(
    owner: str | None = None, role: Role | None = None, session: str | None = None
) -> list[str]:
    """Label filters for the engine's list calls: this data directory's objects, of one
    role or one session if given. (The engine adds `managed-by` itself.)"""
    found = [f"{OWNER}={paths.owner_id() if owner is None else owner}"]
    if role is not None:
        found.insert(0, f"{ROLE}={role}")
    if session is not None:
        found.append(f"{SESSION}={session}")
    return found
