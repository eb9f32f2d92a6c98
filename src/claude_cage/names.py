"""Session names: validation and generation (adjective-noun-xxxx, as the seed does)."""

from __future__ import annotations

import re

from claude_cage.errors import BadInput

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")

ADJECTIVES = (
    "amber", "brave", "calm", "clever", "crisp", "eager", "fuzzy", "gentle", "happy", "jolly",
    "keen", "lucid", "merry", "nimble", "quiet", "rapid", "shiny", "steady", "swift", "witty",
)  # fmt: skip
NOUNS = (
    "badger", "canyon", "comet", "falcon", "fjord", "gecko", "harbor", "heron", "lagoon", "lynx",
    "meadow", "nebula", "otter", "panda", "quartz", "raven", "summit", "tiger", "walrus", "willow",
)  # fmt: skip


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise BadInput(
            f"invalid session name {name!r}",
            "use 1-63 characters: lowercase letters, digits, '_', '.', '-', "
            "starting with a letter or digit",
        )
    return name


def generate_name() -> str:
    import secrets  # start-up: it imports hashlib (a few ms); only a start without --name needs it

    return f"{secrets.choice(ADJECTIVES)}-{secrets.choice(NOUNS)}-{secrets.token_hex(2)}"


def container_name(session: str) -> str:
    return f"cage-{session}"


def companion_name(session: str) -> str:
    # Never of the form cage-<name>, so it can never collide with a session container.
    return f"companion-cage-{session}"


def data_volume(session: str) -> str:
    return f"cage-data-{session}"


def socket_volume(session: str) -> str:
    return f"cage-sock-{session}"


def managed_volume(session: str) -> str:
    """Claude Code's managed settings, on an engine that cannot see this machine's files."""
    return f"cage-managed-{session}"


def workspace_volume(session: str) -> str:
    return f"cage-work-{session}"


def scratch_volume(session: str) -> str:
    """The /workspace of a session without a project: somewhere it can write."""
    return f"cage-scratch-{session}"


def snapshot_volume(snapshot: str, kind: str) -> str:
    """A snapshot's copy of one of a session's volumes (kind: work, data, scratch)."""
    return f"cage-snap-{snapshot}-{kind}"


def copy_container(session: str) -> str:
    # Copies a session's volumes to or from a snapshot; never of the form cage-<name>.
    return f"copy-cage-{session}"


def export_container(session: str) -> str:
    # Reads a stopped session's clone; never of the form cage-<name> either.
    return f"export-cage-{session}"


def fill_container(session: str) -> str:
    # Carries the clone into a new session's volume; created, never started.
    return f"fill-cage-{session}"
