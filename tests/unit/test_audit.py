"""The audit's bookkeeping: each squid line filed once, gaps counted, squid's numbering
starting again after a reload, and the classification of each kind of line."""

from __future__ import annotations

from pathlib import Path

import pytest

from claude_cage import audit, egress
from claude_cage.events import EventLog


def line(seq: int, host: str = "denied.test", status: str = "403") -> bytes:
    page = {"403": "ERR_CAGE_HOST", "200": "-"}.get(status, "ERR_INVALID_REQ")
    squid = "TCP_DENIED" if status == "403" else "NONE_NONE"
    return f"{seq} 1795978111.330 {host} 80 {status} - {squid} {page} GET".encode()


def stamp(second: int, nanos: int = 0) -> str:
    return f"2026-11-29T18:48:{second:02d}.{nanos:09d}Z"


@pytest.fixture
def log(tmp_path: Path) -> EventLog:
    return EventLog(tmp_path / "events.sqlite3", background_sync=False)


def filed(log: EventLog) -> list[int]:
    return [e["value"]["seq"] for e in log.query(type="egress") if e["key"] == "blocked:web"]


def test_each_line_is_filed_once_even_when_read_again(log: EventLog) -> None:
    first = [(stamp(1), line(0)), (stamp(2), line(1)), (stamp(2), line(2))]
    audit.ingest(log, "web", "c1", first)
    # The engine's `since` gives the lines at the last time again, and new ones.
    again = [(stamp(2), line(1)), (stamp(2), line(2)), (stamp(3), line(3))]
    here = audit.ingest(log, "web", "c1", again)
    assert filed(log) == [0, 1, 2, 3]
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
    assert filed(log) == [0, 1, 0, 1] and here.dropped == 0


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
