"""Where Podman's Docker-compatible API differs from Docker's, and how a create request
is written for it. The operations never see the difference: the engine client calls
`create_body` when the engine it speaks to is Podman.

Differences handled here:
* `seccomp=<profile>` in `SecurityOpt` is a path on the engine's host for Podman, never
  the profile's text (Docker takes the text). The profile is written once, by content,
  to a file the local engine reads; a remote Podman would need the file on its own host,
  so it is refused with a line saying so.
* The runtime: Podman 4.3's compatible create ignores `HostConfig.Runtime` (the
  container runs on Podman's default, and `status` would say so), so a session that
  asks for gVisor is refused on Podman rather than started on runc.
* A tmpfs's `uid=`/`gid=` options are unknown to Podman; its `U` option chowns the
  tmpfs to the container's user, which is what they say here (checked). And Podman
  copies the image's files into a tmpfs (`tmpcopyup`) where Docker mounts it empty:
  every tmpfs says `notmpcopyup`, so the session sees what it sees on Docker.
* Under a read-only root Podman mounts writable tmpfs of no size where the request has
  none (`/var/tmp` here: its `read_only_tmpfs`). Each such place is given a read-only
  tmpfs of one page, so it is read-only as on Docker.
* Rootless Podman (`Host.rootless`, from libpod's `/info`) runs every container in a
  user namespace: container uid 0 is the user, the others are subordinate ids. A session
  that runs as the user (a read-write mount of theirs, bindmounts.py) is created with
  `UsernsMode: keep-id`, so the user's uid is the same inside and on the host and what
  the session writes in the mount belongs to the user. A read-write mount of anyone
  else's is refused: Podman would give the session a subordinate id, which the host
  counts as nobody's. And an unprivileged user gets cgroup controllers only where the
  host delegates them (cgroup v2, systemd's `user@.service`); elsewhere Podman ignores
  memory, CPU and process limits with a warning, so such a start is refused unless the
  user accepts it (`rootless_without_limits: true`; `status` then fails "limits").
* A limit the request leaves out (`nproc` for the companion) is set by Podman to its
  own default, which can exceed the host's hard limit and fail the start; every create
  names both `nofile` and `nproc`.

* An image's health check runs from a systemd timer Podman adds for each container; on a
  host whose service cannot reach systemd (a container host, a minimal VM) none runs and
  the health stays `starting` for ever. A running container whose last check (or start)
  is two intervals old is checked when it is inspected (`health_unchecked`, libpod's
  `healthcheck` call), so `status` reads the image's verdict as it does on Docker.

* A stopped container's archive (`logs` and the history of a stopped session) is served
  without its volumes: Podman mounts a volume with mount options (claude-cage's bounded
  ones) only while a container using it runs. It is read through a reader (`reader_body`)
  that mounts the stopped container's volumes read-only and only sleeps until removed.

And what its inspect answers says differently (`inspect`, below), in Docker's words, before
`answers.py` reads it:
the capabilities dropped (Podman lists its own default set, not `ALL`: the libpod
answer's empty bounding set is the fact), the runtime (`oci`; libpod names it), the
limits (`RLIMIT_NOFILE`), and the namespaces (`private`/`shareable` for Docker's
`""`/`private`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from claude_cage import paths
from claude_cage.engine.endpoints import Endpoint
from claude_cage.errors import BadInput
from claude_cage.labels import ROLE, Role

ROOTFUL_SOCKET = "/run/podman/podman.sock"
START_HINT = (
    f"start its service: podman system service --time=0 unix://{ROOTFUL_SOCKET} & "
    "(or systemctl enable --now podman.socket; rootless: systemctl --user enable --now "
    "podman.socket), then use --engine unix://SOCKET"
)


def local_sockets(environ: Mapping[str, str]) -> list[str]:
    """Where a Podman on this machine serves its compatible API: the rootful socket and
    the user's own (rootless) one, as engine URLs, present or not."""
    found = [f"unix://{ROOTFUL_SOCKET}"]
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime:
        found.append(f"unix://{runtime}/podman/podman.sock")
    return found


def installed() -> bool:
    return shutil.which("podman") is not None


def profile_path(profile: str) -> Path:
    """The file holding `profile`, written once by content (0644: the engine reads it)."""
    import hashlib  # start-up: ~4 ms, only for a Podman seccomp profile

    digest = hashlib.sha256(profile.encode()).hexdigest()[:32]
    path = paths.data_dir() / "seccomp" / f"{digest}.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(profile)
        tmp.chmod(0o644)
        tmp.replace(path)
    return path


LIMIT_CONTROLLERS = ("memory", "pids", "cpu")


@dataclass(frozen=True)
class Host:
    """What a Podman service says of itself (libpod's `/info`) that a create depends on."""

    rootless: bool = False
    uid: int = 0  # the host uid that container uid 0 is: the service's user
    controllers: tuple[str, ...] = LIMIT_CONTROLLERS  # the cgroup controllers it may use
    cgroup_version: str = "v2"

    @property
    def missing_controllers(self) -> tuple[str, ...]:
        return tuple(c for c in LIMIT_CONTROLLERS if c not in self.controllers)


def host_from_info(info: Any) -> Host:
    """libpod's `/info` answer, read without raising on a damaged one (rootful then)."""
    host = info.get("host") if isinstance(info, dict) else None
    if not isinstance(host, dict):
        return Host()
    security = _mapping(host.get("security"))
    rootless = security.get("rootless") is True
    uid = 0
    uidmap = _mapping(host.get("idMappings")).get("uidmap")
    for entry in uidmap if isinstance(uidmap, list) else []:
        if isinstance(entry, dict) and entry.get("container_id") == 0:
            found = entry.get("host_id")
            uid = found if isinstance(found, int) else 0
    controllers = host.get("cgroupControllers")
    return Host(
        rootless=rootless,
        uid=uid if rootless else 0,
        controllers=(
            tuple(str(c) for c in controllers)
            if isinstance(controllers, list)
            else ()
            if rootless
            else LIMIT_CONTROLLERS
        ),
        cgroup_version=str(host.get("cgroupVersion") or "v2"),
    )


def check_pause(service: Host) -> None:
    """A rootless Podman on cgroup v1 has no freezer for its containers: pausing one
    is refused here, in one line, before the engine says it its own way."""
    if service.rootless and service.cgroup_version == "v1":
        raise BadInput(
            "rootless Podman on cgroup v1 cannot pause a container, so a running session "
            "cannot be frozen for a copy of its state",
            "stop the session first (claude-cage stop NAME), then snapshot or fork it",
        )


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def create_body(
    body: dict[str, Any],
    endpoint: Endpoint,
    service: Host | None = None,
    unenforced_limits: Callable[[], bool] = lambda: False,
) -> dict[str, Any]:
    """Docker's create request, as Podman's compatible API needs it (`service`: what
    the Podman service said of itself; rootful when not given)."""
    host = dict(body["HostConfig"])
    if service is not None and service.rootless:
        host.update(_rootless(body, service, unenforced_limits))
    if host.get("Runtime") not in (None, "", "runc"):
        raise BadInput(
            f"runtime '{host['Runtime']}' on Podman: its Docker-compatible API starts every "
            "container on Podman's default runtime",
            "use --runtime runc on Podman, or a Docker engine with runsc registered",
        )
    options = []
    for option in host.get("SecurityOpt") or []:
        if option.startswith("seccomp=") and option != "seccomp=unconfined":
            if endpoint.scheme != "unix":
                raise BadInput(
                    f"engine {endpoint.name!r} is Podman on another host, which reads a "
                    "seccomp profile only from a file on that host",
                    "use a local Podman socket, or a Docker engine on that host",
                )
            option = f"seccomp={profile_path(option.removeprefix('seccomp='))}"
        options.append(option)
    host["SecurityOpt"] = options
    host["Tmpfs"] = {
        target: _tmpfs_options(opts, str(body.get("User") or ""))
        for target, opts in (host.get("Tmpfs") or {}).items()
    }
    if host.get("ReadonlyRootfs"):
        for target in READ_ONLY_TMPFS:
            host["Tmpfs"].setdefault(target, "ro,nosuid,nodev,noexec,size=4k,notmpcopyup")
    named = {limit["Name"] for limit in host.get("Ulimits") or []}
    host["Ulimits"] = [*(host.get("Ulimits") or [])] + [
        {"Name": name, "Soft": value, "Hard": value}
        for name, value in DEFAULT_LIMITS.items()
        if name not in named
    ]
    return {**body, "HostConfig": host}


DEFAULT_LIMITS = {"nofile": 4096, "nproc": 4096}
# Where Podman mounts a writable tmpfs under a read-only root (with /tmp and /run, which
# every session already has as tmpfs of its own size).
READ_ONLY_TMPFS = ("/tmp", "/run", "/var/tmp")


def _rootless(
    body: dict[str, Any], service: Host, unenforced_limits: Callable[[], bool]
) -> dict[str, Any]:
    """What a create on a rootless Podman adds to HostConfig, or why it is refused."""
    host = body["HostConfig"]
    limited = any(host.get(k) for k in ("Memory", "NanoCpus", "PidsLimit"))
    if limited and service.missing_controllers and not unenforced_limits():
        raise BadInput(
            f"rootless Podman here cannot limit memory, CPUs or processes: its user has "
            f"no {'/'.join(service.missing_controllers)} cgroup controller (cgroup "
            f"{service.cgroup_version}), and Podman ignores the limits",
            "delegate them (cgroup v2, systemd's user@.service Delegate=), use a rootful "
            "Podman or Docker, or accept it: rootless_without_limits: true",
        )
    user = str(body.get("User") or "").split(":")[0]
    writable = [
        m["Source"]
        for m in host.get("Mounts") or []
        if m.get("Type") == "bind" and not m.get("ReadOnly")
    ]
    if writable and user != str(service.uid):
        raise BadInput(
            f"{', '.join(writable)} on rootless Podman: a session writes there as uid "
            f"{user}, which the host would see as a subordinate id, not as that owner",
            f"mount directories owned by uid {service.uid} (the Podman service's user), "
            "or mount them read-only (PATH:ro)",
        )
    return {"UsernsMode": "keep-id"} if user == str(service.uid) else {}


def _tmpfs_options(options: str, user: str) -> str:
    """`uid=U,gid=G` as Podman's `U` (owned by the container's user), when U:G is it."""
    kept, owner = [], {}
    for option in options.split(","):
        key, _, value = option.partition("=")
        if key in ("uid", "gid"):
            owner[key] = value
        else:
            kept.append(option)
    if not owner:
        return ",".join([*kept, "notmpcopyup"])
    if f"{owner.get('uid')}:{owner.get('gid')}" != user:
        raise BadInput(
            f"a tmpfs owned by {owner} for a container running as {user!r} cannot be "
            "made on Podman",
            "run the session with its default user, or on a Docker engine",
        )
    return ",".join([*kept, "U", "notmpcopyup"])


def inspect(compat: dict[str, Any], libpod: dict[str, Any] | None) -> dict[str, Any]:
    """A container's compatible inspect answer, with what Podman says in its own words
    there put in Docker's (`libpod` is the native answer for the same container)."""
    host = dict(compat.get("HostConfig") or {})
    if libpod is not None:
        if "BoundingCaps" in libpod and not libpod["BoundingCaps"] and not host.get("CapAdd"):
            host["CapDrop"] = ["ALL"]  # nothing is left in the bounding set
        host["Runtime"] = libpod.get("OCIRuntime") or host.get("Runtime")
    host["Ulimits"] = [
        {**limit, "Name": str(limit.get("Name", "")).removeprefix("RLIMIT_").lower()}
        for limit in host.get("Ulimits") or []
    ]
    if host.get("PidMode") == "private":
        host["PidMode"] = ""
    if host.get("IpcMode") == "shareable":  # its own namespace, as Docker's "private"
        host["IpcMode"] = "private"
    return {**compat, "HostConfig": host}


DEFAULT_HEALTH_INTERVAL = 30.0  # seconds: Docker's and Podman's, when the image names none


def health_unchecked(compat: dict[str, Any], now: float) -> bool:
    """Whether a running container with a health check has gone two of its intervals
    without one (Podman's timer never ran it), by its compatible inspect answer."""
    state = _mapping(compat.get("State"))
    check = _mapping(_mapping(compat.get("Config")).get("Healthcheck"))
    test, interval = check.get("Test"), check.get("Interval")
    if state.get("Running") is not True or not isinstance(state.get("Health"), dict):
        return False
    if not isinstance(test, list) or not test or test[0] == "NONE":
        return False
    seconds = interval / 1e9 if isinstance(interval, int) and interval > 0 else None
    log = state["Health"].get("Log")
    last = _mapping(log[-1]).get("End") if isinstance(log, list) and log else None
    times = [t for t in (_epoch(state.get("StartedAt")), _epoch(last)) if t is not None]
    return bool(times) and now - max(times) > 2 * (seconds or DEFAULT_HEALTH_INTERVAL)


def with_health(compat: dict[str, Any], checked: Any) -> dict[str, Any]:
    """The inspect answer with the health a check just run gave (libpod's answer)."""
    if not isinstance(checked, dict) or not isinstance(checked.get("Status"), str):
        return compat
    state = _mapping(compat.get("State"))
    health = {**_mapping(state.get("Health")), "Status": checked["Status"]}
    if isinstance(checked.get("FailingStreak"), int):
        health["FailingStreak"] = checked["FailingStreak"]
    return {**compat, "State": {**state, "Health": health}}


def _epoch(text: Any) -> float | None:
    """An engine's timestamp (RFC 3339, nanoseconds) in epoch seconds; None if it is not one."""
    if not isinstance(text, str) or not text or text.startswith("0001-"):
        return None
    head, dot, rest = text.replace("Z", "+00:00").partition(".")
    digits = rest[: len(rest) - len(rest.lstrip("0123456789"))]
    if dot:  # Python reads at most six fraction digits
        text = f"{head}.{digits[:6]}{rest[len(digits) :]}"
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        return None
    return stamp.timestamp() if stamp.tzinfo is not None else None


def reader_body(stopped: dict[str, Any]) -> dict[str, Any]:
    """A container that mounts `stopped`'s volumes and binds read-only (its raw inspect
    answer), with no network, no capability and the same user, and only sleeps: its
    archive of a path in a volume is the stopped container's. Labelled as an export of
    the same session, so what finds a session's leftovers finds it."""
    config = _mapping(stopped.get("Config"))
    labels = {**_mapping(config.get("Labels")), ROLE: Role.EXPORT.value}
    return {
        "Image": stopped.get("Image"),
        "User": config.get("User") or "",
        "Entrypoint": ["/bin/sleep"],
        "Cmd": ["600"],
        "Labels": labels,
        "HostConfig": {
            "VolumesFrom": [f"{stopped.get('Id')}:ro"],
            "NetworkMode": "none",
            "CapDrop": ["ALL"],
            "ReadonlyRootfs": True,
            "SecurityOpt": ["no-new-privileges"],
            "Memory": 64 * 1024**2,
            "PidsLimit": 16,
            "Ulimits": [{"Name": n, "Soft": v, "Hard": v} for n, v in DEFAULT_LIMITS.items()],
        },
    }
