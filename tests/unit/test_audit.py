"""The audit's bookkeeping: each squid line filed once, gaps counted, squid's numbering
starting again after a reload, repeated refusals folded into one event that counts them,
and the classification of each kind of line."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from claude_cage import audit, egress
from claude_cage.eventlog import folds
from claude_cage.eventlog.events import EventLog
from claude_cage.eventlog.prune import Limits

SQUID_TIME = 1795978111.330


def line(
    seq: int, host: str = "denied.test", status: str = "403", at: float = SQUID_TIME, port: int = 80
) -> bytes:
    page = {"403": "ERR_CAGE_HOST", "200": "-"}.get(status, "ERR_INVALID_REQ")
    squid = "TCP_DENIED" if status == "403" else "NONE_NONE"
    return f"{seq} {at:.3f} {host} {port} {status} - {squid} {page} GET".encode()


def stamp(second: int, nanos: int = 0) -> str:
    return f"2026-11-29T18:48:{second:02d}.{nanos:09d}Z"


@pytest.fixture
def log(tmp_path: Path) -> EventLog:
    return EventLog(tmp_path / "events.sqlite3", background_sync=False)


def filed(log: EventLog) -> list[tuple[int, int, int]]:
    """(squid's first number, its last, the count) of each blocked:web event."""
    return [
        (e["value"]["seq"], e["value"]["last_seq"], e["value"]["count"])
        for e in log.query(type="egress")
        if e["key"] == "blocked:web"
    ]


def test_each_line_is_filed_once_even_when_read_again(log: EventLog) -> None:
    first = [(stamp(1), line(0)), (stamp(2), line(1)), (stamp(2), line(2))]
    audit.ingest(log, "web", "c1", first)
    # The engine's `since` gives the lines at the last time again, and new ones.
    again = [(stamp(2), line(1)), (stamp(2), line(2)), (stamp(3), line(3))]
    here = audit.ingest(log, "web", "c1", again)
    assert filed(log) == [(0, 3, 4)]
    assert here.requests == 4 and here.refused == 4 and here.dropped == 0


def test_a_gap_is_counted_as_dropped_and_filed(log: EventLog) -> None:
    audit.ingest(log, "web", "c1", [(stamp(1), line(0))])
    here = audit.ingest(log, "web", "c1", [(stamp(5), line(40)), (stamp(5, 1), line(41))])
    assert here.dropped == 39
    dropped = [e["value"] for e in log.query(type="egress") if e["key"] == "dropped:web"]
    assert dropped == [{"status": "dropped", "count": 39, "reason": "the proxy log rotated"}]


def test_numbering_from_zero_after_a_reload_is_not_a_duplicate(log: EventLog) -> None:
    audit.ingest(log, "web", "c1", [(stamp(1), line(0)), (stamp(1, 5), line(1))])
    here = audit.ingest(log, "web", "c1", [(stamp(2), line(0)), (stamp(3), line(1))])
    assert filed(log) == [(0, 1, 4)] and here.dropped == 0


def test_a_new_companion_starts_a_new_place(log: EventLog) -> None:
    audit.ingest(log, "web", "c1", [(stamp(9), line(0))], final=True)
    here = audit.ingest(log, "web", "c2", [(stamp(1), line(0))])
    assert here.container == "c2" and not here.done and here.requests == 1


def test_allowed_and_probe_lines_are_counted_not_filed(log: EventLog) -> None:
    probe = b"0 1795978111.330 - - 0 - NONE_NONE - -"
    here = audit.ingest(log, "web", "c1", [(stamp(1), probe), (stamp(2), line(1, status="200"))])
    assert filed(log) == [] and here.requests == 1 and here.refused == 0


@pytest.mark.parametrize(
    ("fields", "result"),
    [
        ("80 403 - TCP_DENIED ERR_CAGE_HOST GET", egress.BLOCKED_HOST),
        ("8080 403 - TCP_DENIED ERR_CAGE_PORT GET", egress.BLOCKED_PORT),
        ("80 403 - TCP_DENIED ERR_CAGE_ADDRESS GET", egress.BLOCKED_ADDRESS),
        ("443 403 - TCP_DENIED ERR_CAGE_ADDRESS CONNECT", egress.BLOCKED_ADDRESS),
        ("80 403 - TCP_DENIED ERR_CAGE_SCHEME GET", egress.REFUSED),
        ("443 403 - TCP_DENIED ERR_CAGE_INTERNAL GET", egress.REFUSED),
        ("80 200 200 TCP_MISS - GET", egress.ALLOWED),
        ("443 200 - TCP_TUNNEL - CONNECT", egress.ALLOWED),
        ("80 502 502 TCP_MISS - GET", egress.FAILED),
        ("443 503 - NONE_NONE ERR_CONNECT_FAIL CONNECT", egress.FAILED),
        ("80 501 - NONE_NONE ERR_UNSUP_REQ POST", egress.REFUSED),
        ("80 411 - NONE_NONE ERR_INVALID_REQ GET", egress.REFUSED),
        ("80 417 - NONE_NONE ERR_INVALID_REQ POST", egress.REFUSED),
        ("- 400 - NONE_NONE - garbage", egress.REFUSED),
    ],
)
def test_each_kind_of_line(fields: str, result: str) -> None:
    request = egress.parse_line(f"7 1795978111.330 host.test {fields}")
    assert request is not None and request.result == result
    assert request.refused == (result in egress.NOT_SENT)


def test_engine_seconds() -> None:
    assert audit.engine_seconds("2026-11-29T18:48:31.33012345Z") == "1795978111.330123450"
    assert audit.engine_seconds("2026-11-29T18:48:31Z") == "1795978111.000000000"


# --- folding ---------------------------------------------------------------------------


def blocked(log: EventLog) -> list[dict]:
    return [e for e in log.query(type="egress") if e["key"] == "blocked:web"]


def test_repeated_refusals_are_one_event_with_a_count_and_first_and_last(log: EventLog) -> None:
    lines = [(stamp(1), line(n, at=SQUID_TIME + n)) for n in range(5)]
    audit.ingest(log, "web", "c1", lines)
    [event] = blocked(log)
    value = event["value"]
    assert value["count"] == 5 and value["seq"] == 0 and value["last_seq"] == 4
    assert value["first"] == "2026-11-29T18:48:31.330Z"
    assert value["last"] == "2026-11-29T18:48:35.330Z"
    assert value["host"] == "denied.test" and value["status"] == "blocked-host"


def test_another_host_port_or_reason_is_another_event(log: EventLog) -> None:
    lines = [
        (stamp(1), line(0)),
        (stamp(1, 1), line(1, host="other.test")),
        (stamp(1, 2), line(2, port=8080)),
        (stamp(1, 3), line(3, status="417")),
        (stamp(1, 4), line(4)),
    ]
    audit.ingest(log, "web", "c1", lines)
    assert sorted(filed(log)) == [(0, 4, 2), (1, 1, 1), (2, 2, 1), (3, 3, 1)]
    # and another session's refusals are its own
    audit.ingest(log, "api", "c9", [(stamp(1), line(0))])
    assert len(blocked(log)) == 4


def test_a_fold_goes_on_across_batches_keeping_its_id(log: EventLog) -> None:
    audit.ingest(log, "web", "c1", [(stamp(1), line(0))])
    [before] = blocked(log)
    audit.ingest(log, "web", "c1", [(stamp(2), line(1, at=SQUID_TIME + 1))])
    [after] = blocked(log)
    assert after["id"] == before["id"] and after["value"]["count"] == 2
    # rewritten as a new row: `events -f` (which follows seq) sees it again
    seen = list(log.follow(backlog=None, stop=_set()))
    assert [e["value"]["count"] for e in seen if e["key"] == "blocked:web"] == [2]


def _set() -> threading.Event:
    stop = threading.Event()
    stop.set()
    return stop


def test_past_the_window_a_new_event_begins(log: EventLog) -> None:
    window = folds.FOLD_WINDOW_SECONDS
    lines = [
        (stamp(1), line(0)),
        (stamp(2), line(1, at=SQUID_TIME + window - 1)),
        (stamp(3), line(2, at=SQUID_TIME + window + 1)),
    ]
    audit.ingest(log, "web", "c1", lines[:2])
    audit.ingest(log, "web", "c1", lines[2:])
    assert filed(log) == [(0, 1, 2), (2, 2, 1)]


def test_a_flood_adds_kilobytes_not_megabytes(log: EventLog) -> None:
    audit.ingest(log, "web", "c1", [(stamp(0), line(0, host="warm.test"))])
    before = _size(log.db_path)
    seq = 1
    for _batch in range(4):  # four batches of the follower, 2,500 lines each
        lines = [(stamp(1, seq + n), line(seq + n)) for n in range(2500)]
        audit.ingest(log, "web", "c1", lines)
        seq += 2500
    assert _size(log.db_path) - before < 64 * 1024
    assert [(f, last, count) for f, last, count in filed(log) if f > 0] == [(1, 10_000, 10_000)]


def _size(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))


def test_a_fold_key_collision_folds_nothing_that_differs(
    log: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(folds, "stored_key", lambda key: "same")
    audit.ingest(log, "web", "c1", [(stamp(1), line(0))])
    audit.ingest(log, "web", "c1", [(stamp(2), line(1, host="other.test"))])
    assert sorted(e["value"]["host"] for e in blocked(log)) == ["denied.test", "other.test"]


# --- a flood of distinct host names ----------------------------------------------------


def _distinct(count: int, start: int = 0) -> list[tuple[str, bytes]]:
    return [
        (stamp(1, start + n), line(start + n, host=f"h{start + n}.flood.test", at=SQUID_TIME))
        for n in range(count)
    ]


def test_a_flood_of_distinct_hosts_is_a_bounded_number_of_events(log: EventLog) -> None:
    for start in range(0, 5000, 1000):  # five batches of the follower
        audit.ingest(log, "web", "c1", _distinct(1000, start))
    events = blocked(log)
    cap = folds.MAX_KEYS
    assert len(events) == cap + 1
    assert sum(e["value"]["count"] for e in events) == 5000
    [over] = [e for e in events if e["value"].get("overflow")]
    value = over["value"]
    assert value["count"] == 5000 - cap and value["host"] is None
    assert value["hosts"] == [f"h{n}.flood.test" for n in range(cap, cap + 20)]
    assert value["seq"] == cap and value["last_seq"] == 4999
    # a known host still folds into its own event
    audit.ingest(log, "web", "c1", [(stamp(2), line(5000, host="h0.flood.test"))])
    [h0] = [e for e in blocked(log) if e["value"]["host"] == "h0.flood.test"]
    assert h0["value"]["count"] == 2 and len(blocked(log)) == cap + 1


def test_the_next_window_counts_its_hosts_afresh(log: EventLog) -> None:
    window = folds.FOLD_WINDOW_SECONDS
    audit.ingest(log, "web", "c1", _distinct(200))
    later = [
        (stamp(3, n), line(200 + n, host=f"n{n}.flood.test", at=SQUID_TIME + window + 1))
        for n in range(200)
    ]
    audit.ingest(log, "web", "c1", later)
    events = blocked(log)
    assert len(events) == 2 * (folds.MAX_KEYS + 1)
    assert sum(e["value"]["count"] for e in events) == 400


def test_one_sessions_flood_does_not_prune_another_sessions_event(tmp_path: Path) -> None:
    log = EventLog(
        tmp_path / "events.sqlite3", background_sync=False, limits=Limits(max_size=256 * 1024)
    )
    audit.ingest(log, "api", "c9", [(stamp(0), line(0, host="victim.test"))])
    for start in range(0, 5000, 500):
        audit.ingest(log, "web", "c1", _distinct(500, start))
    assert [e["value"]["host"] for e in log.query(session="api", type="egress")] == ["victim.test"]
