"""The kinds a session can be, each declared once.

Every choice a user or a metadata file can name (mode, network, runtime, credential,
status) is an enum here, with its default beside it. They are `StrEnum`s, so they
compare equal to, and print as, the plain strings found in flags, config files,
metadata and JSON output.
"""

from __future__ import annotations

from enum import StrEnum


class Mode(StrEnum):
    CLI = "cli"  # Claude Code in a terminal
    DESKTOP = "desktop"  # a browser desktop through noVNC


class Network(StrEnum):
    NONE = "none"  # loopback only
    FILTERED = "filtered"  # allowlisted hosts only, through the companion's proxy
    HOST = "host"  # the host's network, no isolation


class Runtime(StrEnum):
    """The OCI runtime the session container runs under."""

    RUNC = "runc"  # the engine's default
    RUNSC = "runsc"  # gVisor: a user-space kernel between the session and the host


class Credential(StrEnum):
    """How the session reaches the Anthropic API."""

    NONE = "none"  # log in inside with /login
    API_KEY_FILE = "api-key-file"  # a 0600 file on the session's tmpfs
    API_KEY_PROXY = "api-key-proxy"  # the companion adds the key; it never enters the session
    CLAUDE_TOKEN_PROXY = "claude-token-proxy"  # the same, for a Claude subscription token
    OAUTH = "oauth"  # seen inside a running session by `status`, never chosen at start


class Status(StrEnum):
    STARTING = "starting"  # a new session's record, before its first container exists
    RUNNING = "running"
    STOPPED = "stopped"
    REMOVED = "removed"  # the container is gone; the metadata remains


DEFAULT_MODE = Mode.CLI
DEFAULT_NETWORK = Network.FILTERED
DEFAULT_RUNTIME = Runtime.RUNC


def values(kind: type[StrEnum]) -> list[str]:
    """The choices as plain strings, in declaration order (for flags and validation)."""
    return [member.value for member in kind]
