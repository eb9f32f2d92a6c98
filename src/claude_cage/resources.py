"""A session's resource use, read from one one-shot stats sample. Pure functions.

One-shot stats (`stream=false, one-shot=true`) answer without the second sample that
`docker stats` waits for, so `precpu_stats` comes back empty. CPU % is then the
average since the container started: CPU time used / time since StartedAt. Where the
engine does send a previous sample, it is the usual `docker stats` figure over that
interval. Either way 100 means one full CPU, and `cpu_basis` says which it is.

Memory "used" is what `docker stats` shows: usage minus the inactive page cache
(`total_inactive_file` on cgroup v1, `inactive_file` on v2), against the limit.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from claude_cage.engine.answers import Settings

SAMPLED = "sampled"
SINCE_START = "average since start"


def parse_time(text: str | None) -> float | None:
    """An engine or metadata timestamp (ISO 8601, any fraction) -> epoch seconds.

    None for empty text and for the engine's zero time (0001-01-01...).
    """
    if not text or text.startswith("0001-"):
        return None
    text = text.strip().replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:  # Python wants at most 6 fraction digits; the engine sends 9
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def format_time(epoch: float) -> str:
    """Epoch seconds -> ISO 8601 UTC with milliseconds, as kept in the metadata."""
    text = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def cpu_total_ns(stats: dict[str, Any]) -> int:
    """CPU time the container has used since it started, in nanoseconds."""
    return int(((stats.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage") or 0)


def cpu_percent(
    stats: dict[str, Any], started: float | None, now: float
) -> tuple[float | None, str]:
    """(percent of one CPU, basis); percent is None when there is nothing to go on."""
    cpu, pre = stats.get("cpu_stats") or {}, stats.get("precpu_stats") or {}
    used = cpu_total_ns(stats)
    used_before = int((pre.get("cpu_usage") or {}).get("total_usage") or 0)
    system, system_before = cpu.get("system_cpu_usage") or 0, pre.get("system_cpu_usage") or 0
    if used_before and system_before and system > system_before:
        online = cpu.get("online_cpus") or len(
            (cpu.get("cpu_usage") or {}).get("percpu_usage") or [1]
        )
        share = (used - used_before) / (system - system_before)
        return round(share * online * 100, 2), SAMPLED
    if started is not None and now > started:
        return round(used / 1e9 / (now - started) * 100, 2), SINCE_START
    return None, SINCE_START


def memory_used(stats: dict[str, Any]) -> tuple[int, int]:
    """(bytes used, limit in bytes), as `docker stats` counts them."""
    mem = stats.get("memory_stats") or {}
    usage, detail = int(mem.get("usage") or 0), mem.get("stats") or {}
    for key in ("total_inactive_file", "inactive_file"):
        if key in detail and detail[key] < usage:
            usage -= int(detail[key])
            break
    return usage, int(mem.get("limit") or 0)


def memory_percent(stats: dict[str, Any]) -> float | None:
    used, limit = memory_used(stats)
    return round(used / limit * 100, 2) if limit else None


def network_io(stats: dict[str, Any] | None) -> tuple[int, int] | None:
    """(bytes received, bytes sent) over every interface; None with no network at all."""
    networks = (stats or {}).get("networks")
    if not networks:
        return None
    rx = sum(int(n.get("rx_bytes") or 0) for n in networks.values())
    tx = sum(int(n.get("tx_bytes") or 0) for n in networks.values())
    return rx, tx


def stats_from_cgroup(facts: dict[str, str], settings: Settings) -> dict[str, Any]:
    """A stats-shaped sample from a session's cgroup counters (see cgroups.py), with
    the limits from `docker inspect`."""

    def number(key: str) -> int:
        value = facts.get(key, "")
        return int(value) if value.isdigit() else 0

    return {
        "cpu_stats": {"cpu_usage": {"total_usage": number("cpu_ns")}},
        "memory_stats": {
            "usage": number("mem_usage"),
            "limit": settings.memory,
            "stats": {"total_inactive_file": number("mem_inactive")},
        },
        "pids_stats": {"current": number("pids"), "limit": settings.pids_limit},
    }


def usage(
    stats: dict[str, Any],
    started: float | None,
    now: float,
    companion_stats: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything `status` shows about resource use, from the session's stats sample
    (and its companion's: a session with no network of its own reaches the outside
    only through its companion, so the companion's traffic is the session's)."""
    percent, basis = cpu_percent(stats, started, now)
    used, limit = memory_used(stats)
    pids = stats.get("pids_stats") or {}
    own, via = network_io(stats), "session"
    if own is None:
        own, via = network_io(companion_stats), "companion"
    if own is None:
        own, via = (0, 0), "none"
    return {
        "cpu_percent": percent,
        "cpu_basis": basis,
        "cpu_seconds": round(cpu_total_ns(stats) / 1e9, 3),
        "memory_used": used,
        "memory_limit": limit,
        "memory_percent": round(used / limit * 100, 2) if limit else None,
        "pids": pids.get("current"),
        "pids_limit": pids.get("limit"),
        "net_rx": own[0],
        "net_tx": own[1],
        "net_via": via,
    }


def human_bytes(count: float | None) -> str:
    if count is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"
