"""Where a session's commands start: the project, not the read-only `/workspace`.

The project is the session's clone (`/workspace/<repo>`), else its first mount, else
`/workspace`. Every entry point (start, attach, shell, exec, the desktop's terminal) asks
`project_dir`; `--workdir` is resolved against it by `resolve`, which refuses a path that
leaves the project. Pure: no I/O, so callers can use it before touching the engine.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from typing import Any

from claude_cage import record
from claude_cage.errors import BadInput
from claude_cage.record import SessionRecord

DEVCONTAINER_FILES = (".devcontainer/devcontainer.json", ".devcontainer.json")

# Where things are inside every session (policy.py mounts them; sandbox.py checks them).
HOME = "/home/claude"
CONFIG_DIR = f"{HOME}/.claude"  # Claude Code's (CLAUDE_CONFIG_DIR): the data volume
MANAGED_SETTINGS_DIR = "/etc/claude-code"  # where Claude Code reads its managed settings
HOST_GIT_VIEW = "/cage/git"  # host git directories, read-only, for alternates (gitdirs.py)
COMPANION_UID = 13  # Debian's `proxy` user, which the companion image runs as

WORKSPACE = "/workspace"


def clone_target(repo_name: str) -> str:
    return f"{WORKSPACE}/{repo_name}"


def project_dir_of(clone_name: str | None, mount_targets: Iterable[str]) -> str:
    """The clone's directory, else the first mount's target, else /workspace."""
    if clone_name:
        return clone_target(clone_name)
    for target in mount_targets:
        return target
    return WORKSPACE


def project_dir(session: SessionRecord | Mapping[str, Any] | None) -> str:
    """The project directory of a session, from its record or its metadata keys
    (None: no metadata)."""
    if session is None:
        return WORKSPACE
    if not isinstance(session, SessionRecord):
        session = record.from_fields({"name": "-", **session})
    if session.workspace_folder:  # a devcontainer.json's workspaceFolder, in the project
        return session.workspace_folder
    return project_dir_of(session.repo_name, [m.target for m in session.mounts])


def resolve(project: str, requested: str | None) -> str:
    """`--workdir DIR`, relative to the project (absolute paths must lie inside it)."""
    if not requested:
        return project
    joined = posixpath.normpath(posixpath.join(project, requested))
    if joined != project and not joined.startswith(project.rstrip("/") + "/"):
        raise BadInput(
            f"--workdir {requested} is outside the project {project}",
            f"give a directory inside {project}, e.g. --workdir src",
        )
    return joined
