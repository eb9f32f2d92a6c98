"""A session's resource use, read from one one-shot stats sample (engine/answers.py's
`Stats`, from the engine or from the session's cgroup). Pure functions.

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

from claude_cage.engine.answers import Stats

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


def cpu_total_ns(stats: Stats) -> int:
    """CPU time the container has used since it started, in nanoseconds."""
    return stats.cpu_ns or 0


def cpu_percent(stats: Stats, started: float | None, now: float) -> tuple[float | None, str]:
    """(percent of one CPU, basis); percent is None when there is nothing to go on."""
    used, used_before = cpu_total_ns(stats), stats.previous_cpu_ns
    system, system_before = stats.system_cpu_ns, stats.previous_system_cpu_ns
    if used_before and system_before and system > system_before:
        share = (used - used_before) / (system - system_before)
        return round(share * stats.online_cpus * 100, 2), SAMPLED
    if started is not None and now > started:
        return round(used / 1e9 / (now - started) * 100, 2), SINCE_START
    return None, SINCE_START


def memory_used(stats: Stats) -> tuple[int, int]:
    """(bytes used, limit in bytes), as `docker stats` counts them."""
    usage, inactive = stats.memory_usage, stats.memory_inactive
    return (usage - inactive if inactive < usage else usage), stats.memory_limit


def memory_percent(stats: Stats) -> float | None:
    used, limit = memory_used(stats)
    return round(used / limit * 100, 2) if limit else None


def network_io(stats: Stats | None) -> tuple[int, int] | None:
    """(bytes received, bytes sent) over every interface; None with no network at all."""
    return None if stats is None else stats.network


def stats_from_cgroup(facts: dict[str, str], settings: Settings) -> Stats:
    """A sample from a session's cgroup counters (see cgroups.py), with the limits from
    `docker inspect`."""

    def number(key: str) -> int:
        value = facts.get(key, "")
        return int(value) if value.isdigit() else 0

    return Stats(
        cpu_ns=number("cpu_ns"),
        memory_usage=number("mem_usage"),
        memory_inactive=number("mem_inactive"),
        memory_limit=settings.memory,
        pids=number("pids"),
        pids_limit=settings.pids_limit,
    )


def usage(
    stats: Stats,
    started: float | None,
    now: float,
    companion_stats: Stats | None = None,
) -> dict[str, Any]:
    """Everything `status` shows about resource use, from the session's stats sample
    (and its companion's: a session with no network of its own reaches the outside
    only through its companion, so the companion's traffic is the session's)."""
    percent, basis = cpu_percent(stats, started, now)
    used, limit = memory_used(stats)
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
        "pids": stats.pids,
        "pids_limit": stats.pids_limit,
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
