"""Sandbox verification: does a running session really have the hardening the policy
asked for? Checks `docker inspect` output, plus one probe from inside the container."""

from __future__ import annotations

from typing import Any

from claude_cage import labels, userconfig
from claude_cage.engine.answers import Container, Mount
from claude_cage.engine.api import EngineAPI
from claude_cage.errors import CageError
from claude_cage.kinds import Network
from claude_cage.operations import answer
from claude_cage.resources import human_bytes
from claude_cage.runtimes import RUNC, RUNSC
from claude_cage.workdir import CONFIG_DIR, HOST_GIT_VIEW, MANAGED_SETTINGS_DIR

DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")
_PROBE = (
    "id -u; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; "
    "if touch /.cage-probe 2>/dev/null; then echo root=writable; else echo root=read-only; fi; "
    'if [ -s "$CLAUDE_CONFIG_DIR/.credentials.json" ]; then echo login=yes; fi; '
    # Which kernel answers: gVisor's logs its own boot; the host's refuses (seccomp).
    "if dmesg 2>/dev/null | head -1 | grep -q gVisor; then echo kernel=gvisor; "
    "else echo kernel=host; fi"
)


def probe_inside(engine: EngineAPI, info: Container) -> dict[str, str]:
    """From inside the session: uid, effective caps, no_new_privs, seccomp mode, root
    writability, login and which kernel answers. A session at its pids limit has no
    room for the probe: the facts are then {"error": why}. (Resource use is read from
    outside, see cgroups.py.)"""
    try:
        code, output = answer.probe(engine, info.name, ["sh", "-c", _PROBE])
    except CageError as exc:
        return {"error": exc.message}
    lines = output.decode(errors="replace").split("\n")
    if code != 0 or not lines[0].strip().isdigit():
        why = " ".join(line.strip() for line in lines if line.strip())[:200]
        return {"error": f"exit {code}: {why or 'no output'}"}
    facts: dict[str, str] = {"uid": lines[0].strip()}
    for line in lines[1:]:
        key, sep, value = line.replace("=", ":", 1).partition(":")
        if sep:
            facts[key.strip()] = value.strip()
    return facts


def _user_setup(bind: Mount) -> bool:
    """A read-only bind of the user's Claude Code setup: one of its names, from the
    session's copy on the host (userconfig.py), over the same name in ~/.claude."""
    name = bind.destination.removeprefix(CONFIG_DIR + "/")
    return (
        not bind.writable
        and name in (*userconfig.FILES, *userconfig.DIRECTORIES)
        and bind.source.endswith(f"/{userconfig.DIRECTORY}/{name}")
    )


def _check(name: str, ok: bool, detail: str) -> dict[str, Any]:
    return {"check": name, "ok": bool(ok), "detail": detail}


def verify(
    info: Container,
    recorded_network: str | None,
    inside: dict[str, str] | None,
    companion: Container | None = None,
    recorded_runtime: str | None = None,
) -> dict[str, Any]:
    """The checks of a session container's inspect output against the policy; the
    network is the recorded one, else (an orphan) its container's label. The runtime
    check compares the engine's runtime with the recorded one and, from inside, the
    kernel that answers (gVisor's, or the host's)."""
    host = info.settings
    opts = host.security_opt
    network = recorded_network or info.labels.get(labels.NETWORK, "")
    mode = host.network_mode
    mounts = [m for m in info.mounts if m.type == "bind"]
    # The managed settings are a bind of the data directory, or on a remote engine a
    # volume of the session's own (names.managed_volume).
    managed = [m for m in info.mounts if m.destination == MANAGED_SETTINGS_DIR]
    binds = [m for m in mounts if m.destination != MANAGED_SETTINGS_DIR]
    ulimits = set(host.ulimits)
    user = info.user or "root"
    checks = [
        _check("read-only root", host.read_only_root, "root filesystem is read-only"),
        _check(
            "capabilities",
            host.cap_drop == ("ALL",) and not host.cap_add and not host.privileged,
            f"dropped: {', '.join(host.cap_drop) or 'none'}; "
            f"added: {', '.join(host.cap_add) or 'none'}",
        ),
        _check(
            "no-new-privileges",
            any(o.startswith("no-new-privileges") for o in opts),
            "setuid binaries cannot raise privileges",
        ),
        _check(
            "seccomp",
            any(o.startswith("seccomp=") and o != "seccomp=unconfined" for o in opts),
            "claude-cage's syscall profile"
            if (host.runtime or RUNC) == RUNC
            else "gVisor's kernel takes the syscalls; its own filter guards the host's",
        ),
        _check(
            "non-root user",
            user.split(":")[0] not in ("", "0", "root"),
            f"user {user}",
        ),
        _check(
            "limits",
            host.memory > 0
            and host.nano_cpus > 0
            and (host.pids_limit or 0) > 0
            and {"nofile", "nproc"} <= ulimits,
            f"memory {human_bytes(host.memory)}, "
            f"{host.nano_cpus / 1e9:g} CPUs, {host.pids_limit} processes, "
            f"ulimits {', '.join(sorted(ulimits)) or 'none'}",
        ),
        _check(
            "namespaces",
            host.pid_mode == "" and host.ipc_mode in ("private", "none"),
            f"pid={host.pid_mode or 'private'} ipc={host.ipc_mode}",
        ),
        _check(
            "network policy",
            (network == Network.HOST and mode == "host")
            or (network != Network.HOST and mode == "none"),
            f"{network}: network mode {mode}"
            + (" (no filtering: host network)" if mode == "host" else ""),
        ),
        _check(
            "mounts",
            all(
                (
                    b.destination.startswith("/workspace/")
                    or (b.destination.startswith(HOST_GIT_VIEW + "/") and not b.writable)
                    or _user_setup(b)
                )
                and not any(b.source in (s, s.rsplit("/", 1)[0]) for s in DOCKER_SOCKETS)
                for b in binds
            ),
            ", ".join(f"{b.source}->{b.destination}{'' if b.writable else ':ro'}" for b in binds)
            or "no host directories",
        ),
        _check(
            "managed settings",
            len(managed) == 1 and not managed[0].writable,
            f"{MANAGED_SETTINGS_DIR} read-only from {managed[0].name or managed[0].source}"
            if managed
            else f"{MANAGED_SETTINGS_DIR} is not claude-cage's read-only mount",
        ),
    ]
    if network == Network.FILTERED:
        running = bool(companion and companion.running)
        checks.append(
            _check(
                "egress proxy",
                running,
                "companion proxy running"
                if running
                else "companion proxy is not running: no egress at all",
            )
        )
    runtime = host.runtime or RUNC
    wanted = recorded_runtime or runtime
    if inside is not None and "error" in inside:
        checks.append(_check("runtime", runtime == wanted, f"{runtime} (not probed inside)"))
        checks.append(
            _check("inside", False, f"no probe could run inside the session: {inside['error']}")
        )
    elif inside is not None:
        kernel = inside.get("kernel")
        checks.append(
            _check(
                "runtime",
                runtime == wanted and kernel == ("gvisor" if wanted == RUNSC else "host"),
                f"{runtime}: "
                + ("gVisor's kernel answers inside" if kernel == "gvisor" else "the host's kernel"),
            )
        )
        # gVisor's kernel takes every syscall itself, and does not report no_new_privs
        # or a seccomp mode; the profile guards the host's kernel on runc.
        kernel_facts = runtime == RUNSC or (
            inside.get("NoNewPrivs") == "1" and inside.get("Seccomp") == "2"
        )
        checks.append(
            _check(
                "inside",
                inside.get("uid") not in (None, "0")
                and inside.get("CapEff") == "0000000000000000"
                and kernel_facts
                and inside.get("root") == "read-only",
                " ".join(f"{k}={v}" for k, v in sorted(inside.items()) if k != "login"),
            )
        )
    else:
        checks.append(_check("runtime", runtime == wanted, f"{runtime} (not probed inside)"))
    return {"ok": all(c["ok"] for c in checks), "checks": checks}
