"""Repeated blocked requests are one event, so a flood adds kilobytes to the event log.

A session's refused requests to one host and port, for one reason (the result, squid's
status and its error page), within FOLD_WINDOW_SECONDS of the first of them, are one
event `blocked:NAME` whose value counts them: `count`, `first` and `last` (squid's times
of the first and the last), `seq` and `last_seq` (squid's numbers of both). A request
past the window starts a new event, so a flood that lasts an hour is some 60 events per
host and reason, and the times of each minute stay readable.

Each batch of the audit (one transaction) rewrites a folded event at most once: its row
is replaced by one with the same `id` and a new `seq`. So `events -f`, which follows
`seq`, shows it again with its new count, and the outbox sends it again; the MongoDB
mirror replaces its document (keyed by `id`), and since the newer row always has the
higher `seq`, the mirror ends with the last count.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from claude_cage.egress import Request
    from claude_cage.events import Batch

FOLD_WINDOW_SECONDS = 60.0


def fold_key(name: str, request: Request) -> tuple[Any, ...]:
    """What makes two refused requests one event."""
    return (name, request.host, request.port, request.result, request.status, request.reason)


def stored_key(key: tuple[Any, ...]) -> str:
    """The `fold` column: a digest of the key (JSON first: no two keys read alike), 16
    bytes however long the host name; the event's value is checked against the request
    too, so even a collision folds nothing that differs."""
    return hashlib.blake2b(json.dumps(key).encode(), digest_size=8).hexdigest()


def _matches(value: dict[str, Any], request: Request) -> bool:
    return (
        value.get("host") == request.host
        and value.get("port") == request.port
        and value.get("status") == request.result
        and value.get("code") == request.status
        and value.get("reason") == request.reason
    )


def _shifted(stamp: str, seconds: float) -> str:
    """Squid's time as egress.py writes it ('2026-11-29T18:48:31.330Z'), moved; such
    times compare as strings. A time that is not one gives one no request is near."""
    try:
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return ""
    return (when + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class _Fold:
    value: dict[str, Any]
    seq: int | None = None  # the row it rewrites, if it is in the log already
    id: str | None = None
    dirty: bool = False

    def __post_init__(self) -> None:
        first = str(self.value.get("first", ""))
        # within the window either side of the first (squid's clock may step back)
        self._after = _shifted(first, -FOLD_WINDOW_SECONDS)
        self._before = _shifted(first, FOLD_WINDOW_SECONDS)

    def covers(self, request: Request) -> bool:
        return self._after < request.time < self._before

    def add(self, request: Request) -> None:
        count = self.value.get("count")
        self.value["count"] = (count if isinstance(count, int) else 1) + 1
        self.value["last"] = request.time
        self.value["last_seq"] = request.seq
        self.dirty = True


class Folds:
    """The folded events of one session that one batch touches; `close()` writes them."""

    def __init__(self, batch: Batch, name: str) -> None:
        self._batch = batch
        self._name = name
        self._open: dict[tuple[Any, ...], _Fold | None] = {}

    def add(self, request: Request) -> None:
        key = fold_key(self._name, request)
        if key in self._open:
            fold = self._open[key]
        else:  # the newest event of this key in the log, once per batch
            found = self._batch.open_fold(stored_key(key))
            fold = None
            if found is not None and _matches(found[2], request):
                fold = _Fold(found[2], seq=found[0], id=found[1])
        if fold is not None and fold.covers(request):
            fold.add(request)
        else:
            if fold is not None and fold.dirty:
                self._write(key, fold)
            fold = _Fold(request.event_value(), dirty=True)
        self._open[key] = fold

    def close(self) -> None:
        for key, fold in self._open.items():
            if fold is not None and fold.dirty:
                self._write(key, fold)
        self._open.clear()

    def _write(self, key: tuple[Any, ...], fold: _Fold) -> None:
        replaces = None if fold.seq is None or fold.id is None else (fold.seq, fold.id)
        self._batch.write_fold(
            stored_key(key),
            "egress",
            f"blocked:{self._name}",
            fold.value,
            session=self._name,
            replaces=replaces,
        )
        fold.dirty = False
