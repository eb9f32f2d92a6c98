"""This data directory's Docker objects, as the operations find them.

Whether an object is ours is decided in `labels.py`; these are the engine calls that
apply it. Every operation that acts on a session's containers finds them here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from claude_cage import labels, metadata, names
from claude_cage.engine.answers import Container
from claude_cage.engine.api import EngineAPI
from claude_cage.errors import BadInput, SessionNotFound

if TYPE_CHECKING:
    pass


def inspect_ours(engine: EngineAPI, container: str) -> Container | None:
    """`docker inspect` of one of our containers; None when absent or not ours."""
    info = engine.inspect(container)
    return info if info is not None and labels.is_ours(info.labels) else None


def owned_containers(engine: EngineAPI, role: labels.Role = labels.Role.SESSION) -> list[Container]:
    """This data directory's containers of one role, in one engine call."""
    return engine.list_containers(labels.owner_filters(role=role))


def check_claimable(container: str, info: Container | None) -> None:
    """Refuse to take over a container of that name that is not ours."""
    if info is None:
        return
    whose = labels.ownership(info.labels)
    if whose is labels.Ownership.FOREIGN:
        raise BadInput(
            f"a container named {container} exists and is not managed by claude-cage",
            "pick another --name, or remove that container yourself",
        )
    if whose is labels.Ownership.OTHER_OWNER:
        raise BadInput(
            f"{container} belongs to claude-cage with another data directory",
            "pick another --name (CAGE_DATA_DIR decides which sessions are yours)",
        )


def running_container(name: str, engine: EngineAPI, store: metadata.SessionStore) -> str:
    """The session's container, checked to exist and run."""
    container = names.container_name(name)
    info = inspect_ours(engine, container)
    if info is None:
        if store.load(name) is None:
            raise SessionNotFound(name)
        raise BadInput(
            f"session {name} has no container", f"start it: claude-cage start --name {name}"
        )
    if not info.running:
        raise BadInput(
            f"session {name} is not running", f"start it: claude-cage start --name {name}"
        )
    return container
