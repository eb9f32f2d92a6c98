"""Container runtimes for sessions: runc (the host's kernel) or runsc (gVisor, a kernel of
its own between the agent and the host's).

Pure helpers, no I/O: how gVisor is registered, and which combinations make sense.
"""

from __future__ import annotations

import json

RUNC, RUNSC = "runc", "runsc"
RUNTIMES = (RUNC, RUNSC)

# How to register gVisor with Docker (scripts/ensure-docker writes exactly this).
# --network=none: Debian 12's runsc (a 2022 build) refuses Docker's "none" network
# without it; sessions on runsc never have a network of their own anyway.
# --host-uds=all: a session reaches its companion through unix sockets on a shared
# volume, in both directions (connect to the companion's, create its own).
# No --oci-seccomp: see docs/SECURITY.md (gVisor's own kernel takes the syscalls, and
# its own seccomp filter guards the host's; Debian's runsc mis-applies OCI profiles).
RUNSC_ARGS = ["--network=none", "--host-uds=all"]
DAEMON_JSON = "/etc/docker/daemon.json"

# Process limits on gVisor. The engine's pids limit counts host tasks, and gVisor (ptrace
# platform) spends about 11.6 host tasks per process inside (measured: 200 processes
# took 2,329), keeps them pooled after the processes exit, and dies whole when the host
# limit is hit. gVisor's kernel enforces RLIMIT_NPROC itself (fork gets EAGAIN), so
# inside the limit is `nproc = pids`, and the host limit only caps gVisor's own tasks.
RUNSC_HOST_TASKS_PER_PROCESS = 12
RUNSC_HOST_TASKS_BASE = 256  # gVisor's own threads, idle (36 measured) with headroom


def limits(runtime: str, pids: int, nproc: int) -> tuple[int, int]:
    """(the engine's pids limit, the nproc ulimit) for a session of `pids` processes."""
    if runtime == RUNSC:
        return pids * RUNSC_HOST_TASKS_PER_PROCESS + RUNSC_HOST_TASKS_BASE, min(nproc, pids)
    return pids, nproc


def daemon_json_entry(path: str = "/usr/bin/runsc") -> str:
    """The `runtimes` entry for /etc/docker/daemon.json, as one line of JSON."""
    return json.dumps({"runtimes": {RUNSC: {"path": path, "runtimeArgs": RUNSC_ARGS}}})


ENABLE_HINT = (
    f"install gVisor (Debian: apt-get install runsc), add {daemon_json_entry()} to "
    f"{DAEMON_JSON} (merged with what is there), then reload dockerd without stopping "
    "anything: kill -HUP $(pidof dockerd); scripts/ensure-docker does all of this"
)


def refusal(runtime: str, network: str, mode: str = "cli") -> tuple[str, str] | None:
    """(error, hint) when a session of `mode` on `network` cannot run on `runtime`.

    `host` on gVisor: the session would share the host's network with no filtering, so a
    second kernel protects nothing that matters there, and runsc is registered with
    --network=none, which would silently leave it with no network at all.
    `desktop` on gVisor: the desktop's terminal, xterm, cannot open its pseudo-terminal
    on Debian 12's gVisor ("open ttydev: Input/output error", where `script` and
    `docker exec -t` work), so the desktop would show no terminal at all.
    """
    if runtime != RUNSC:
        return None
    if network == "host":
        return (
            "--network host cannot run on gVisor (runsc)",
            "use --network filtered (or none) on runsc, or --runtime runc for --network host",
        )
    if mode == "desktop":
        return (
            "desktop sessions cannot run on gVisor (runsc) here: the desktop's terminal "
            "(xterm) cannot open its pseudo-terminal on it",
            "use --runtime runc for --mode desktop (cli sessions run on runsc)",
        )
    return None
