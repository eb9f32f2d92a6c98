"""The event log's bounds: past its size limit (`events_max_size`) or its age limit
(`events_max_age`, in days) the oldest events are deleted, in the transaction of the
write that went past. What was pruned, and when, is counted in the state table and shown
by `events --status`.

The size is what the database's pages hold (pages less the free list): SQLite reuses
freed pages, so the file itself stays near the limit, never far past it. A write that
finds the log over its limit prunes it to PRUNE_TO of the limit, so pruning happens once
in a while, not at every write, and at most MAX_CHUNKS chunks at a time, so no write
waits long; the next one goes on. A batch (the audit's) checks every EVERY events, so
the log is never more than that many events past its limit.

With a MongoDB mirror, the oldest events are the ones the outbox sent first, so pruning
takes events MongoDB already has; only when the mirror has been away for so long that
unsent events fill the log are those pruned too (the bound holds whatever the mirror
does), and they are counted apart (`pruned_unsent`).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from claude_cage.eventlog import schema

DEFAULT_MAX_SIZE = 64 * 1024**2
DEFAULT_MAX_AGE_DAYS = 90
PRUNE_TO = 0.9
EVERY = 200  # a batch checks the bounds every EVERY events, and once more at its end
CHUNK = 500
MAX_CHUNKS = 20


@dataclass(frozen=True)
class Limits:
    max_size: int = DEFAULT_MAX_SIZE  # bytes
    max_age_days: int = DEFAULT_MAX_AGE_DAYS


@dataclass(frozen=True)
class Pruned:
    events: int = 0
    unsent: int = 0  # of them, not yet in MongoDB


def used_bytes(db: sqlite3.Connection) -> int:
    """What the database's pages hold (the file, less its free pages)."""
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    free = db.execute("PRAGMA freelist_count").fetchone()[0]
    return int((pages - free) * page_size)


def over(db: sqlite3.Connection, limits: Limits) -> bool:
    """Cheap: three pragmas and one index lookup."""
    if used_bytes(db) > limits.max_size:
        return True
    oldest = db.execute("SELECT MIN(ts) FROM events").fetchone()[0]
    return oldest is not None and str(oldest) < _cutoff(limits)


def _cutoff(limits: Limits) -> str:
    return schema.iso_ns(time.time_ns() - limits.max_age_days * 86_400 * 10**9)


def prune(db: sqlite3.Connection, limits: Limits, *, mirrored: bool) -> Pruned:
    """Delete the events past `limits`, oldest first, and count them in the state
    table; the caller holds the write transaction. `mirrored`: count the unsent ones."""
    events = unsent = 0
    cutoff = _cutoff(limits)
    if mirrored:
        unsent += db.execute(
            "SELECT COUNT(*) FROM events WHERE ts < ? AND synced = 0", (cutoff,)
        ).fetchone()[0]
    events += db.execute("DELETE FROM events WHERE ts < ?", (cutoff,)).rowcount
    chunks = MAX_CHUNKS if used_bytes(db) > limits.max_size else 0
    for _ in range(chunks):
        used, target = used_bytes(db), limits.max_size * PRUNE_TO
        if used <= target:
            break
        # as many of the oldest as hold the excess, as far as rows tell (at most CHUNK)
        total = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        take = min(CHUNK, int(total * (used - target) / used) + 1)
        top, waiting = db.execute(
            "SELECT MAX(seq), SUM(synced = 0) FROM"
            " (SELECT seq, synced FROM events ORDER BY seq LIMIT ?)",
            (take,),
        ).fetchone()
        if top is None:
            break
        unsent += int(waiting or 0) if mirrored else 0
        events += db.execute("DELETE FROM events WHERE seq <= ?", (top,)).rowcount
    if events:
        state = schema.get_state(db)
        schema.set_state(
            db,
            pruned=str(state_int(state, "pruned") + events),
            pruned_unsent=str(state_int(state, "pruned_unsent") + unsent),
            pruned_last=str(events),
            pruned_at=schema.now(),
        )
    return Pruned(events, unsent)


def state_int(state: dict[str, str | None], key: str) -> int:
    """A count kept in the state table; 0 when missing or damaged."""
    try:
        return int(state.get(key) or 0)
    except ValueError:
        return 0
