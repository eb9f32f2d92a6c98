"""Every path claude-cage uses, in one place.

Directories come from platformdirs (XDG on Linux) and can each be overridden by an
environment variable, which is also how tests isolate themselves.
"""

from __future__ import annotations

import os
from pathlib import Path

APP = "claude-cage"


def data_dir() -> Path:
    """`$CAGE_DATA_DIR`, else `$XDG_DATA_HOME/claude-cage` (`~/.local/share/claude-cage`)."""
    env = os.environ.get("CAGE_DATA_DIR")
    if env:
        return Path(env)
    import platformdirs  # start-up: ~2 ms, and not needed when CAGE_DATA_DIR is set

    return Path(platformdirs.user_data_dir(APP, appauthor=False))


def config_dir() -> Path:
    """`$CAGE_CONFIG_DIR`, else `$XDG_CONFIG_HOME/claude-cage` (`~/.config/claude-cage`)."""
    env = os.environ.get("CAGE_CONFIG_DIR")
    if env:
        return Path(env)
    import platformdirs  # start-up: ~2 ms, and not needed when CAGE_CONFIG_DIR is set

    return Path(platformdirs.user_config_dir(APP, appauthor=False))


def owner_id(directory: Path | None = None) -> str:
    """A short id of a data directory (default: this one), put on every Docker object
    as `cage.owner`.

    Each data directory sees only its own sessions, so two users (or two test runs)
    sharing one engine never take each other's sessions for orphans.
    """
    import hashlib  # start-up: a few ms; only commands that label or filter Docker objects need it

    directory = data_dir() if directory is None else directory
    return hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:12]


def user_config_file() -> Path:
    return config_dir() / "config.yaml"


def sessions_dir() -> Path:
    return data_dir() / "sessions"


def incoming_dir() -> Path:
    """Scratch space of clone snapshots and review quarantines (hostgit.py); `gc`
    removes what a killed command left there."""
    return data_dir() / "incoming"


def snapshots_dir() -> Path:
    """Each snapshot's record; its volumes are on the session's engine."""
    return data_dir() / "snapshots"


def locks_dir() -> Path:
    """flock files: one per session (metadata.py), one per repository a session's work
    is brought into (hostgit.repo_lock)."""
    return data_dir() / "locks"


def events_db() -> Path:
    return data_dir() / "events.sqlite3"


def package_data(*parts: str) -> Path:
    """A file shipped inside the package (images, seccomp profile, defaults)."""
    return Path(__file__).parent.joinpath(*parts)
