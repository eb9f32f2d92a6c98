"""Repeated blocked requests are one event, so a flood adds kilobytes to the event log.

A session's refused requests to one host and port, for one reason (the result, squid's
status and its error page), within FOLD_WINDOW_SECONDS of the first of them, are one
event `blocked:NAME` whose value counts them: `count`, `first` and `last` (squid's times
of the first and the last), `seq` and `last_seq` (squid's numbers of both). A request
past the window starts a new event, so a flood that lasts an hour is some 60 events per
host and reason, and the times of each minute stay readable.

Folding by host alone would not bound a flood of distinct host names (one event each),
and pruning takes the oldest events of every session. So a session's fold keys are
counted in a window of FOLD_WINDOW_SECONDS that starts with its first refusal: past
MAX_KEYS distinct keys in the window, its further refusals to other keys fold into one
overflow event per result and reason, `blocked:NAME` with `overflow: true`, no `host` or
`port`, and `hosts`, the first SAMPLE_HOSTS hosts it counted. One session then adds at most
MAX_KEYS events plus one per reason each window, however many names it asks for. The
window and its keys are kept in the state table (`folds:NAME`) across batches.

Each batch of the audit (one transaction) rewrites a folded event at most once: its row
is replaced by one with the same `id` and a new `seq`. So `events -f`, which follows
`seq`, shows it again with its new count, and the outbox sends it again; the MongoDB
mirror replaces its document (keyed by `id`), and since the newer row always has the
higher `seq`, the mirror ends with the last count. An overflow event is folded and
rewritten the same way.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from claude_cage.egress import Request
    from claude_cage.eventlog.events import Batch

FOLD_WINDOW_SECONDS = 60.0
MAX_KEYS = 50  # distinct keys of one session in a window before its overflow event
SAMPLE_HOSTS = 20  # hosts an overflow event names


def state_key(name: str) -> str:
    return f"folds:{name}"


def fold_key(name: str, request: Request) -> tuple[Any, ...]:
    """What makes two refused requests one event."""
    return (name, request.host, request.port, request.result, request.status, request.reason)


def overflow_key(name: str, request: Request) -> tuple[Any, ...]:
    """What makes two refusals past a session's MAX_KEYS one overflow event."""
    return ("overflow", name, request.result, request.status, request.reason)


def stored_key(key: tuple[Any, ...]) -> str:
    """The `fold` column: a digest of the key (JSON first: no two keys read alike), 16
    bytes however long the host name; the event's value is checked against the request
    too, so even a collision folds nothing that differs."""
    return hashlib.blake2b(json.dumps(key).encode(), digest_size=8).hexdigest()


def _matches(value: dict[str, Any], request: Request, overflow: bool) -> bool:
    if overflow:
        where = value.get("overflow") is True
    else:
        where = (
            value.get("overflow") is None
            and value.get("host") == request.host
            and value.get("port") == request.port
        )
    return (
        where
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
        hosts = self.value.get("hosts")
        if isinstance(hosts, list) and len(hosts) < SAMPLE_HOSTS and request.host not in hosts:
            hosts.append(request.host)
        self.dirty = True


def _overflow_value(request: Request) -> dict[str, Any]:
    value = request.event_value()
    value.update(host=None, port=None, overflow=True, hosts=[request.host])
    return value


class _Window:
    """A session's distinct fold keys since the first refusal of its current window."""

    def __init__(self, saved: str | None) -> None:
        self.start, self.keys = "", set[str]()
        try:
            loaded = json.loads(saved or "{}")
            start, keys = loaded.get("start", ""), loaded.get("keys", [])
            if isinstance(start, str) and isinstance(keys, list):
                self.start, self.keys = start, {str(k) for k in keys[:MAX_KEYS]}
        except (ValueError, AttributeError):
            pass  # damaged: a new window
        self._end = _shifted(self.start, FOLD_WINDOW_SECONDS)

    def admits(self, key: str, time: str) -> bool:
        """Whether `key` folds on its own (else into the overflow event)."""
        if not self.start <= time < self._end:  # a new window (or squid's clock stepped)
            self.start, self.keys = time, set()
            self._end = _shifted(time, FOLD_WINDOW_SECONDS)
        if key in self.keys or len(self.keys) < MAX_KEYS:
            self.keys.add(key)
            return True
        return False

    def saved(self) -> str:
        return json.dumps({"start": self.start, "keys": sorted(self.keys)})


class Folds:
    """The folded events of one session that one batch touches; `close()` writes them."""

    def __init__(self, batch: Batch, name: str) -> None:
        self._batch = batch
        self._name = name
        self._open: dict[tuple[Any, ...], _Fold | None] = {}
        self._window = _Window(batch.get_state(state_key(name)))
        self._moved = False

    def add(self, request: Request) -> None:
        key = fold_key(self._name, request)
        overflow = not self._window.admits(stored_key(key), request.time)
        self._moved = True
        if overflow:
            key = overflow_key(self._name, request)
        if key in self._open:
            fold = self._open[key]
        else:  # the newest event of this key in the log, once per batch
            found = self._batch.open_fold(stored_key(key))
            fold = None
            if found is not None and _matches(found[2], request, overflow):
                fold = _Fold(found[2], seq=found[0], id=found[1])
        if fold is not None and fold.covers(request):
            fold.add(request)
        else:
            if fold is not None and fold.dirty:
                self._write(key, fold)
            value = _overflow_value(request) if overflow else request.event_value()
            fold = _Fold(value, dirty=True)
        self._open[key] = fold

    def close(self) -> None:
        for key, fold in self._open.items():
            if fold is not None and fold.dirty:
                self._write(key, fold)
        self._open.clear()
        if self._moved:
            self._batch.set_state(state_key(self._name), self._window.saved())
            self._moved = False

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
