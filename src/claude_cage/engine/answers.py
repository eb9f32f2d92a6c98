"""What an engine answers about its objects and itself, as typed values the operations read.

`EngineAPI` returns these, never an engine's own JSON, so a second kind of engine
(Podman's native API, Kubernetes) implements the same methods by filling the same
fields. Only what the operations read is here. The `from_docker_*` functions read
Docker's answers (Podman's compatible ones, once `podman.inspect` has put them in
Docker's words); each tolerates a missing or mistyped key, since a damaged or older
engine's answer must read as "unknown", never raise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

LIVE = ("created", "running", "restarting")  # a container that holds its name in use


@dataclass(frozen=True)
class State:
    """Where a container is in its life."""

    status: str = ""  # created, running, paused, restarting, exited, dead ("" unknown)
    running: bool = False
    paused: bool = False
    exit_code: int | None = None
    oom_killed: bool = False
    pid: int = 0  # its first process on the engine's host (0: not running)
    started_at: str | None = None  # RFC 3339, as the engine says it
    health: str | None = None  # its health check's verdict, if it has one


@dataclass(frozen=True)
class Mount:
    """One mount of a container: a bind of a host path, a volume, or a tmpfs."""

    type: str  # bind, volume, tmpfs
    source: str  # the host path (a bind) or the volume's location
    destination: str
    writable: bool = True
    name: str = ""  # a volume's name


@dataclass(frozen=True)
class Settings:
    """How a container was made: its sandbox and its limits (Docker's HostConfig)."""

    read_only_root: bool = False
    privileged: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    security_opt: tuple[str, ...] = field(default=(), repr=False)  # a profile is long
    runtime: str = ""
    network_mode: str = ""
    pid_mode: str = ""
    ipc_mode: str = ""
    memory: int = 0  # bytes (0: no limit)
    nano_cpus: int = 0
    pids_limit: int | None = None
    ulimits: tuple[str, ...] = ()  # the names of the limits set (nofile, nproc, ...)
    published: dict[int, int] = field(default_factory=dict)  # container -> host port


@dataclass(frozen=True)
class Container:
    """A container, from an inspect (every field) or from a list (id, name, image,
    state's status, labels, public ports: the rest keeps its default)."""

    id: str
    name: str  # without Docker's leading "/"
    image: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    state: State = State()
    user: str = ""
    env: dict[str, str] = field(default_factory=dict, repr=False)
    created: str = ""
    restart_count: int = 0
    settings: Settings = Settings()
    mounts: tuple[Mount, ...] = ()
    exec_ids: tuple[str, ...] = ()  # the execs started in it (inspect only)
    public_ports: tuple[int, ...] = ()  # host ports published (list only)

    @property
    def running(self) -> bool:
        return self.state.running

    @property
    def live(self) -> bool:
        """Created, running or restarting: it holds a session's place."""
        return self.state.status in LIVE


@dataclass(frozen=True)
class Exec:
    """A command started in a container."""

    running: bool = False
    exit_code: int | None = None
    argv: tuple[str, ...] = ()


@dataclass(frozen=True)
class Volume:
    name: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Network:
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    containers: tuple[str, ...] = ()  # ids of the containers attached (inspect only)


@dataclass(frozen=True)
class EngineVersion:
    """What the engine says it is (`GET /version`)."""

    version: str = ""  # its release, as it says it ("": unknown)
    api_version: str = ""
    components: tuple[str, ...] = ()  # the names of its parts (Podman names itself here)


@dataclass(frozen=True)
class EngineInfo:
    """The engine's host and set-up (`docker info`), as sessions and `doctor` need them."""

    driver: str = ""  # its storage driver ("": unknown)
    root_dir: str = ""  # where it keeps its data, on its own host
    cpus: int = 0  # cores of its host (0: unknown)
    memory: int = 0  # bytes of memory of its host (0: unknown)
    security_options: tuple[str, ...] = ()  # name=seccomp,profile=default, name=apparmor, ...
    runtimes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # name -> its arguments


@dataclass(frozen=True)
class Stats:
    """One sample of a container's resource use (`docker stats`, one-shot)."""

    cpu_ns: int | None = None  # CPU time used since it started (None: the answer has none)
    system_cpu_ns: int = 0  # the host's CPU time at this sample (0: not said)
    online_cpus: int = 1
    previous_cpu_ns: int = 0  # the engine's sample before this one (0: none, as one-shot)
    previous_system_cpu_ns: int = 0
    memory_usage: int = 0  # bytes, page cache included
    memory_inactive: int = 0  # bytes of inactive page cache, which `docker stats` leaves out
    memory_limit: int = 0  # bytes (0: unknown)
    pids: int | None = None
    pids_limit: int | None = None
    network: tuple[int, int] | None = None  # bytes (received, sent); None: no network at all


# --- Docker's answers -------------------------------------------------------------------


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(item) for item in _list(value))


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _count(value: Any) -> int | None:
    """A number the answer may leave out: None when it does, or when it is no number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _labels(value: Any) -> dict[str, str]:
    return {str(key): str(item) for key, item in _dict(value).items()}


def _env(value: Any) -> dict[str, str]:
    pairs = (str(item).partition("=") for item in _list(value))
    return {key: item for key, _sep, item in pairs}


def _published(bindings: Any) -> dict[int, int]:
    """PortBindings: container port -> the first host port it is published on."""
    found = {}
    for key, hosts in _dict(bindings).items():
        with contextlib.suppress(ValueError, IndexError, KeyError, TypeError):
            found[int(str(key).split("/")[0])] = int(hosts[0]["HostPort"])
    return found


def from_docker_state(state: Any) -> State:
    if isinstance(state, str):  # a list entry names its state only
        return State(status=state, running=state == "running", paused=state == "paused")
    state = _dict(state)
    code = state.get("ExitCode")
    return State(
        status=str(state.get("Status") or ""),
        running=bool(state.get("Running")),
        paused=bool(state.get("Paused")),
        exit_code=code if isinstance(code, int) else None,
        oom_killed=bool(state.get("OOMKilled")),
        pid=_int(state.get("Pid")),
        started_at=state.get("StartedAt") if isinstance(state.get("StartedAt"), str) else None,
        health=_dict(state.get("Health")).get("Status"),
    )


def from_docker_settings(host: Any) -> Settings:
    host = _dict(host)
    pids = host.get("PidsLimit")
    return Settings(
        read_only_root=bool(host.get("ReadonlyRootfs")),
        privileged=bool(host.get("Privileged")),
        cap_add=_strings(host.get("CapAdd")),
        cap_drop=_strings(host.get("CapDrop")),
        security_opt=_strings(host.get("SecurityOpt")),
        runtime=str(host.get("Runtime") or ""),
        network_mode=str(host.get("NetworkMode") or ""),
        pid_mode=str(host.get("PidMode") or ""),
        ipc_mode=str(host.get("IpcMode") or ""),
        memory=_int(host.get("Memory")),
        nano_cpus=_int(host.get("NanoCpus")),
        pids_limit=pids if isinstance(pids, int) else None,
        ulimits=tuple(str(_dict(u).get("Name", "")) for u in _list(host.get("Ulimits"))),
        published=_published(host.get("PortBindings")),
    )


def from_docker_mount(mount: Any) -> Mount:
    mount = _dict(mount)
    return Mount(
        type=str(mount.get("Type") or ""),
        source=str(mount.get("Source") or ""),
        destination=str(mount.get("Destination") or ""),
        writable=bool(mount.get("RW", True)),
        name=str(mount.get("Name") or ""),
    )


def from_docker_inspect(info: Mapping[str, Any]) -> Container:
    """`docker inspect` of a container."""
    config = _dict(info.get("Config"))
    return Container(
        id=str(info.get("Id") or ""),
        name=str(info.get("Name") or "").lstrip("/"),
        image=str(config.get("Image") or ""),
        labels=_labels(config.get("Labels")),
        state=from_docker_state(info.get("State")),
        user=str(config.get("User") or ""),
        env=_env(config.get("Env")),
        created=str(info.get("Created") or ""),
        restart_count=_int(info.get("RestartCount")),
        settings=from_docker_settings(info.get("HostConfig")),
        mounts=tuple(from_docker_mount(m) for m in _list(info.get("Mounts"))),
        exec_ids=_strings(info.get("ExecIDs")),
    )


def from_docker_list(entry: Mapping[str, Any]) -> Container:
    """One entry of the engine's container list (`docker ps -a`)."""
    cid = str(entry.get("Id") or "")
    names = _strings(entry.get("Names"))
    ports = (_int(_dict(p).get("PublicPort")) for p in _list(entry.get("Ports")))
    return Container(
        id=cid,
        name=(names[0] if names else cid).lstrip("/"),
        image=str(entry.get("Image") or ""),
        labels=_labels(entry.get("Labels")),
        state=from_docker_state(str(entry.get("State") or "")),
        public_ports=tuple(port for port in ports if port),
    )


def from_docker_exec(detail: Mapping[str, Any]) -> Exec:
    """`GET /exec/ID/json`."""
    process = _dict(detail.get("ProcessConfig"))
    code = detail.get("ExitCode")
    return Exec(
        running=bool(detail.get("Running")),
        exit_code=code if isinstance(code, int) else None,
        argv=(str(process.get("entrypoint") or ""), *_strings(process.get("arguments"))),
    )


def from_docker_volume(volume: Mapping[str, Any]) -> Volume:
    return Volume(name=str(volume.get("Name") or ""), labels=_labels(volume.get("Labels")))


def from_docker_network(network: Mapping[str, Any]) -> Network:
    return Network(
        name=str(network.get("Name") or ""),
        labels=_labels(network.get("Labels")),
        containers=tuple(str(key) for key in _dict(network.get("Containers"))),
    )


def from_docker_version(version: Any) -> EngineVersion:
    """`GET /version`."""
    version = _dict(version)
    return EngineVersion(
        version=_text(version.get("Version")),
        api_version=_text(version.get("ApiVersion")),
        components=tuple(_text(_dict(c).get("Name")) for c in _list(version.get("Components"))),
    )


def from_docker_info(info: Any) -> EngineInfo:
    """`GET /info`. A runtime whose entry is not an object is no registration."""
    info = _dict(info)
    found = _dict(info.get("Runtimes"))
    return EngineInfo(
        driver=_text(info.get("Driver")),
        root_dir=_text(info.get("DockerRootDir")),
        cpus=_int(info.get("NCPU")),
        memory=_int(info.get("MemTotal")),
        security_options=_strings(info.get("SecurityOptions")),
        runtimes={
            str(name): _strings(entry.get("runtimeArgs"))
            for name, entry in found.items()
            if isinstance(entry, dict)
        },
    )


def from_docker_stats(sample: Any) -> Stats:
    """One-shot `GET /containers/ID/stats`. The inactive page cache is cgroup v1's
    `total_inactive_file` or v2's `inactive_file`: the first one below the usage."""
    sample = _dict(sample)
    cpu, before = _dict(sample.get("cpu_stats")), _dict(sample.get("precpu_stats"))
    usage = _dict(cpu.get("cpu_usage"))
    memory, pids = _dict(sample.get("memory_stats")), _dict(sample.get("pids_stats"))
    used, detail = _int(memory.get("usage")), _dict(memory.get("stats"))
    cache = (_int(detail[key]) for key in ("total_inactive_file", "inactive_file") if key in detail)
    networks = [_dict(n) for n in _dict(sample.get("networks")).values()]
    received = sum(_int(n.get("rx_bytes")) for n in networks)
    sent = sum(_int(n.get("tx_bytes")) for n in networks)
    return Stats(
        cpu_ns=_count(usage.get("total_usage")),
        system_cpu_ns=_int(cpu.get("system_cpu_usage")),
        online_cpus=_int(cpu.get("online_cpus")) or len(_list(usage.get("percpu_usage"))) or 1,
        previous_cpu_ns=_int(_dict(before.get("cpu_usage")).get("total_usage")),
        previous_system_cpu_ns=_int(before.get("system_cpu_usage")),
        memory_usage=used,
        memory_inactive=next((size for size in cache if size < used), 0),
        memory_limit=_int(memory.get("limit")),
        pids=_count(pids.get("current")),
        pids_limit=_count(pids.get("limit")),
        network=(received, sent) if networks else None,
    )
