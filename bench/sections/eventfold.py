"""The folded audit: what filing a refused request in the event log costs, per request.

No engine: the audit's own batch path (`audit.ingest`, one transaction per batch of the
follower) files FLOOD squid lines of refused requests into a fresh event log, in batches
of BATCH lines, as the follower does during a flood. Two workloads: a flood of one host
(every request folds into one event per minute) and a new host each time (nothing can
fold: the folded path's worst case, one lookup more per request). The floor is the
audit before folding, one row per refused request, run in the same repetitions. Also the
bytes each request adds to the database (its file and WAL), per workload.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness import Ratio, Row, SectionResult, paired, paired_ratios

from claude_cage import audit
from claude_cage.eventlog.events import EventLog

NAME = "fold"
TITLE = "the folded audit: filing refused requests in the event log"
FLOOD = 10_000
BATCH = 1_000
SQUID_TIME = 1795978111.330


class PerRow:
    """The audit before folding: one event for each refused request."""

    def __init__(self, batch: Any, name: str) -> None:
        self._batch, self._name = batch, name

    def add(self, request: Any) -> None:
        self._batch.record(
            "egress", f"blocked:{self._name}", request.event_value(), session=self._name
        )

    def close(self) -> None:
        pass


@contextlib.contextmanager
def per_row() -> Iterator[None]:
    folds = audit.Folds
    audit.Folds = PerRow  # type: ignore[assignment,misc]
    try:
        yield
    finally:
        audit.Folds = folds  # type: ignore[misc]


def lines(distinct: bool) -> list[list[tuple[str, bytes]]]:
    """FLOOD squid lines of blocked requests (10 ms apart), in batches of BATCH."""
    out = []
    for n in range(FLOOD):
        host = f"h{n}.denied.test" if distinct else "denied.test"
        text = f"{n} {SQUID_TIME + n / 100:.3f} {host} 80 403 - TCP_DENIED ERR_CAGE_HOST GET"
        out.append((f"2026-11-29T18:48:31.{n:09d}Z", text.encode()))
    return [out[i : i + BATCH] for i in range(0, FLOOD, BATCH)]


def file_all(batches: list[list[tuple[str, bytes]]], folded: bool, sizes: list[int]) -> float:
    """Seconds per request to file every batch into a new event log."""
    with tempfile.TemporaryDirectory(prefix="cage-bench-fold-") as tmp:
        log = EventLog(Path(tmp) / "events.sqlite3", background_sync=False)
        audit.ingest(log, "web", "c1", [])  # created and migrated before the clock starts
        before = _bytes(log.db_path)
        began = time.perf_counter()
        with contextlib.nullcontext() if folded else per_row():
            for batch in batches:
                audit.ingest(log, "web", "c1", batch)
        took = time.perf_counter() - began
        sizes.append(_bytes(log.db_path) - before)
    return took / FLOOD


def _bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*") if p.is_file())


def run(ctx: Any) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    for workload, distinct in (("one host", False), ("a new host each time", True)):
        batches = lines(distinct)
        sizes: dict[str, list[int]] = {"folded": [], "per row": []}
        folded, floor = f"folded, {workload}", f"one row each (before), {workload}"
        samples = paired(
            {
                folded: lambda b=batches, s=sizes: file_all(b, True, s["folded"]),
                floor: lambda b=batches, s=sizes: file_all(b, False, s["per row"]),
            },
            ctx.reps,
        )
        for label, values in samples.items():
            result.rows.append(Row(NAME, label, values, unit="us/request", scale=1e6))
        result.ratios.append(
            Ratio(NAME, folded, floor, paired_ratios(samples[folded], samples[floor]))
        )
        for kind, label in (("folded", folded), ("per row", floor)):
            per = [s / FLOOD for s in sizes[kind]]
            result.rows.append(Row(NAME, f"{label}: bytes added", per, unit="B/request", scale=1))
    result.notes.append(
        f"{FLOOD} refused requests filed by audit.ingest in batches of {BATCH} lines (one "
        "transaction each), into a new event log per run; no engine. 'one row each' is the "
        "audit before folding, measured in the same repetitions."
    )
    return result
