"""Parsing and checking what the user asked for: mounts, ports, env.

Everything here runs before any Docker object is created, so bad input is refused
with exit 2 and nothing half-made.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from claude_cage import paths
from claude_cage.errors import BadInput
from claude_cage.record import Mount

# Paths that must never be bound into a session, nor any directory that contains one.
# The engines' state directories and sockets give root on the host.
FORBIDDEN_TREES = (
    "/etc", "/proc", "/sys", "/dev",
    "/var/lib/docker", "/var/lib/containerd", "/run/containerd",
)  # fmt: skip
DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")
RESERVED_ENV = re.compile(
    r"^(ANTHROPIC_API_KEY|ANTHROPIC_AUTH_TOKEN|CLAUDE_CODE_OAUTH_TOKEN|CAGE_.*|HOME"
    r"|CLAUDE_CONFIG_DIR)$"
)
ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _inside(path: Path, tree: Path) -> bool:
    return path == tree or tree in path.parents


def docker_sockets() -> list[str]:
    """The usual Docker sockets, plus the one DOCKER_HOST names."""
    host = os.environ.get("DOCKER_HOST", "")
    extra = [host[len("unix://") :]] if host.startswith("unix://") else []
    return [*DOCKER_SOCKETS, *extra]


def parse_mount(spec: str, home: Path | None = None) -> Mount:
    """`PATH[:ro]` -> a bind to /workspace/<basename>, symlinks resolved first."""
    raw, read_only = spec, False
    if spec.endswith(":ro"):
        raw, read_only = spec[:-3], True
    elif spec.endswith(":rw"):
        raw = spec[:-3]
    if not raw:
        raise BadInput(f"--mount {spec!r} names no path", "use --mount PATH or --mount PATH:ro")
    path = Path(os.path.expanduser(raw))
    if not path.exists():
        raise BadInput(f"--mount {raw}: no such file or directory", "check the path")
    real = path.resolve()
    home = (home or Path.home()).resolve()
    data_dir = paths.data_dir().resolve()
    config_dir = paths.config_dir().resolve()
    why = None
    if real == Path("/"):
        why = "it is the root of the filesystem"
    elif _inside(home, real):
        why = "it is (or contains) your whole home directory"
    elif any(_inside(Path(sock).resolve(), real) for sock in docker_sockets()):
        why = "it is (or contains) the Docker socket, which would give root on the host"
    elif _inside(real, data_dir) or _inside(data_dir, real):
        why = "it is (or contains) claude-cage's data directory, which holds session secrets"
    elif _inside(real, config_dir) or _inside(config_dir, real):
        why = "it is (or contains) claude-cage's config directory, which holds your policy"
    elif any(_inside(real, Path(t)) or _inside(Path(t), real) for t in FORBIDDEN_TREES):
        why = "it is (or contains) a system directory"
    if why:
        raise BadInput(
            f"refusing to mount {real}: {why}",
            "mount a project directory instead, e.g. --mount ./my-project",
        )
    return Mount(str(real), f"/workspace/{real.name}", read_only)


def parse_mounts(specs: list[str] | tuple[str, ...]) -> list[Mount]:
    mounts = [parse_mount(spec) for spec in specs]
    targets = [m.target for m in mounts]
    for target in targets:
        if targets.count(target) > 1:
            raise BadInput(
                f"two mounts would both land on {target}",
                "mount directories with different names",
            )
    return mounts


def parse_port(spec: str) -> tuple[int, int]:
    """`HOST:CONTAINER` -> (host, container)."""
    match = re.fullmatch(r"(\d{1,5}):(\d{1,5})", spec.strip())
    ports = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
    if not match or not all(1 <= p <= 65535 for p in ports):
        raise BadInput(f"--port {spec!r} is not HOST:CONTAINER", "use e.g. --port 8080:3000")
    return ports


def parse_env(specs: list[str] | tuple[str, ...]) -> dict[str, str]:
    env = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep or not ENV_KEY.match(key):
            raise BadInput(f"--env {key!r} is not KEY=VALUE", "use e.g. --env DEBUG=1")
        if RESERVED_ENV.match(key):
            hint = (
                "pass the key through ANTHROPIC_API_KEY in your environment or --api-key-file"
                if key.startswith(("ANTHROPIC", "CLAUDE_CODE"))
                else "claude-cage sets this variable itself"
            )
            raise BadInput(f"--env {key} is reserved", hint)
        env[key] = value
    return env
