"""A session's resource counters, read on the host from its cgroup (v1 or v2).

Read from outside, they stay right when the session is full: a fork bomb at its pids
limit leaves no room to start a probe inside, but its cgroup files answer as ever.
The cgroup is found through /proc/<pid>/cgroup of the container's first process, and
only used when that path names the container's id (so a recycled pid, a remote engine
or a host whose /proc we cannot see give None, and the caller asks the engine).

The counters are those `docker stats` reads: memory usage and inactive file cache,
CPU time, pids, and the kernel's count of OOM kills in the memory cgroup.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from claude_cage.engine.answers import Container

ROOT = Path("/sys/fs/cgroup")
PROC = Path("/proc")


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _field(text: str | None, name: str) -> str | None:
    """The value of `name` in a flat keyed file (memory.stat, cpu.stat, memory.events)."""
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        if key == name:
            return value.strip()
    return None


def cgroup_paths(pid: int, container_id: str, proc: Path = PROC) -> dict[str, str] | None:
    """controller -> cgroup path ("" -> the v2 path), or None when this is not the
    container's process."""
    text = _read(proc / str(pid) / "cgroup")
    if not text or not container_id or container_id not in text:
        return None
    paths: dict[str, str] = {}
    for line in text.splitlines():
        _id, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def _v1(paths: dict[str, str], root: Path) -> dict[str, str]:
    def file(controller: str, name: str) -> str | None:
        if controller not in paths:
            return None
        for directory in (controller, "cpu,cpuacct", "cpuacct,cpu"):  # how distros mount it
            text = _read(root / directory / paths[controller].lstrip("/") / name)
            if text is not None:
                return text
        return None

    return {
        "mem_usage": (file("memory", "memory.usage_in_bytes") or "").strip(),
        "mem_inactive": _field(file("memory", "memory.stat"), "total_inactive_file") or "",
        "cpu_ns": (file("cpuacct", "cpuacct.usage") or "").strip(),
        "pids": (file("pids", "pids.current") or "").strip(),
        "oom_kill": _field(file("memory", "memory.oom_control"), "oom_kill") or "",
    }


def _v2(path: str, root: Path) -> dict[str, str]:
    base = root / path.lstrip("/")
    usec = _field(_read(base / "cpu.stat"), "usage_usec")
    return {
        "mem_usage": (_read(base / "memory.current") or "").strip(),
        "mem_inactive": _field(_read(base / "memory.stat"), "inactive_file") or "",
        "cpu_ns": str(int(usec) * 1000) if usec and usec.isdigit() else "",
        "pids": (_read(base / "pids.current") or "").strip(),
        "oom_kill": _field(_read(base / "memory.events"), "oom_kill") or "",
    }


def read(
    info: Container, root: Path | None = None, proc: Path | None = None
) -> dict[str, str] | None:
    """The counters of a running container, from its `docker inspect`; None when its
    cgroup cannot be read from here."""
    root, proc = root or ROOT, proc or PROC
    pid = info.state.pid
    paths = cgroup_paths(pid, info.id, proc) if pid else None
    if paths is None:
        return None
    # A v1 host (or a hybrid one, whose unified hierarchy holds no controllers) names
    # its controllers; a v2 host has only the "0::" line.
    facts = _v1(paths, root) if "memory" in paths else _v2(paths.get("", ""), root)
    if not facts["mem_usage"].isdigit():
        return None
    return facts
