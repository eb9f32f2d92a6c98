"""The egress audit: every refused request of a session, filed in the event log.

Squid logs each request to its companion's standard output (egress.py has the format),
which the engine keeps in the companion's json-file log, rotated at `egress_log_size`.
A follower, one per data directory (`python -m claude_cage.audit DATA_DIR`), streams
that output from the engine for every companion of the data directory and files each
refused request (blocked-host, blocked-port, blocked-address, refused) in the event log
within a fraction of a second, whether or not any claude-cage command runs; repeated
ones are folded into one event that counts them (eventlog/folds.py). `start` and every
command that reads the audit start it when it is not running; it ends once no companion
runs.

Why a follower on the host: the event log is SQLite in the data directory (mirrored to
MongoDB). A writer inside the companion would need the host's data directory mounted in
the one container that faces the agent's traffic.

Each session's place in its companion's log (`egress:<name>` in the event log's state
table: the engine's timestamp of the last line read) moves in the same transaction as
the events it covers, so a line is filed once, whoever files it: the follower, or
`destroy` draining what is left. Squid numbers its lines (from 0 again when it reloads
the allowlist); a gap is what the log's rotation dropped before anyone read it, counted
in the state and filed as a `dropped:<name>` event.
"""

from __future__ import annotations

import calendar
import contextlib
import functools
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from claude_cage import detach, egress, labels, paths
from claude_cage.context import Context
from claude_cage.errors import CageError
from claude_cage.eventlog.folds import Folds
from claude_cage.kinds import Network

if TYPE_CHECKING:
    from claude_cage.engine.api import EngineAPI
    from claude_cage.eventlog.events import EventLog
    from claude_cage.metadata import SessionStore
    from claude_cage.record import SessionRecord

BATCH_SECONDS = 0.2  # how long the follower gathers lines before one commit
BATCH_LINES = 5000
DISCOVER_SECONDS = 1.0  # how often it looks for companions that started
IDLE_EXIT_SECONDS = 3.0  # it ends after this long with no companion running


@dataclass
class Place:
    """A session's place in its current companion's log, and what was counted there."""

    container: str = ""
    since: str = "0"  # the engine's timestamp of the last line read, as seconds.nanos
    seq: int = -1  # squid's number of the last line read
    seen: list[int] = field(default_factory=list)  # squid's numbers read at `since`
    requests: int = 0
    refused: int = 0
    failed: int = 0
    dropped: int = 0
    done: bool = False  # the companion stopped and its log was read to the end

    @staticmethod
    def load(text: str | None) -> Place:
        try:
            return Place(**json.loads(text or "{}"))
        except (TypeError, ValueError):
            return Place()


def state_key(name: str) -> str:
    return f"egress:{name}"


def place(log: EventLog, name: str) -> Place:
    return Place.load(log.get_state(state_key(name)))


def engine_seconds(stamp: str) -> str:
    """'2026-11-29T18:48:31.330123456Z' -> '1795978111.330123456' (the logs API's since)."""
    head, _, fraction = stamp.rstrip("Z").partition(".")
    seconds = _epoch_seconds(head)
    if seconds is None:
        return "0"
    return f"{seconds}.{(fraction or '0')[:9].ljust(9, '0')}"


@functools.lru_cache(maxsize=256)
def _epoch_seconds(head: str) -> int | None:
    """Cached: a flood's lines share their second (strptime is most of a line's cost)."""
    try:
        return calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None


def _time(seconds: str) -> tuple[int, int]:
    whole, _, nanos = seconds.partition(".")
    return int(whole or 0), int(nanos or 0)


Numbering = Callable[[egress.Request], egress.Request]


def session_numbering(meta: SessionRecord | None) -> Numbering:
    """What gives a request the session layer's allowlist decided its rule's number
    (squid's log says only `session`; egress.session_rule), from the session's record."""
    if meta is None:
        return lambda request: request
    from claude_cage.netpolicy import rules  # start-up: only where requests are numbered

    hosts, first = meta.allowed_hosts, rules.first_host(meta.allowed_presets)
    return lambda request: egress.session_rule(request, hosts, first)


def record_numbering(store: SessionStore, name: str) -> Numbering:
    """session_numbering of the record as the store holds it, read on first need (a
    damaged or missing record leaves `session` unnumbered)."""
    found: list[Numbering] = []

    def number(request: egress.Request) -> egress.Request:
        if request.rule != "session":
            return request
        if not found:
            try:
                found.append(session_numbering(store.load(name)))
            except CageError:
                found.append(session_numbering(None))
        return found[0](request)

    return number


def ingest(
    log: EventLog,
    name: str,
    container: str,
    lines: list[tuple[str, bytes]],
    final: bool = False,
    numbering: Numbering | None = None,
) -> Place:
    """File the refused requests among `lines` not filed before; one transaction.
    Repeated ones are folded into one event that counts them (eventlog/folds.py).
    `numbering` gives a request its session rule's number (record_numbering)."""
    with log.batch() as batch:
        folds = Folds(batch, name)
        here = Place.load(batch.get_state(state_key(name)))
        if here.container != container:  # a new companion: its squid counts from 0
            here = Place(container=container)
        for stamp, raw in lines:
            text = raw.decode(errors="replace")
            seq = egress.line_seq(text)
            when = engine_seconds(stamp)
            if seq is None or _time(when) < _time(here.since):
                continue  # not squid's, or before our place
            if when == here.since:
                if seq in here.seen:
                    continue  # read before: `since` gives the lines at that time again
            else:
                here.seen = []
            here.seen.append(seq)
            # Squid numbers from 0 when it starts and when it reloads its allowlist.
            gap = seq - here.seq - 1 if seq > here.seq else seq
            if gap > 0:
                here.dropped += gap
                batch.record(
                    "egress",
                    f"dropped:{name}",
                    {"status": "dropped", "count": gap, "reason": "the proxy log rotated"},
                    session=name,
                )
            here.seq, here.since = seq, when
            request = egress.parse_line(text)
            if request is None:
                continue
            here.requests += 1
            if request.refused:
                here.refused += 1
                folds.add(numbering(request) if numbering else request)
            elif request.result == egress.FAILED:
                here.failed += 1
        folds.close()
        here.done = here.done or final
        batch.set_state(state_key(name), json.dumps(asdict(here)))
    return here


def drain(
    log: EventLog,
    engine: Any,
    name: str,
    container: str,
    wait: float = 1.0,
    numbering: Numbering | None = None,
) -> None:
    """Before a companion is removed: file what its log holds that is not filed yet.
    The follower usually has; give it `wait` seconds, then read the rest here."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        here = place(log, name)
        if here.container == container and here.done:
            return
        time.sleep(0.05)
    here = place(log, name)
    since = here.since if here.container == container else "0"
    with contextlib.suppress(CageError):
        lines = list(engine.output_lines(container, since))
        ingest(log, name, container, lines, final=True, numbering=numbering)


# --- the follower ----------------------------------------------------------------------


def _lock_path(data_dir: Path) -> Path:
    return data_dir / "locks" / "egress-audit.lock"


def _try_lock(data_dir: Path) -> int | None:
    return detach.try_lock(_lock_path(data_dir))


def ensure_follower() -> bool:
    """Start this data directory's follower unless it runs; True if one was started.
    Never raises and never waits: the follower is a process in its own session."""
    data_dir = paths.data_dir()
    try:
        fd = _try_lock(data_dir)
        if fd is None:
            return False
        os.close(fd)  # the follower takes the lock itself (a second one exits at once)
        detach.spawn("claude_cage.audit", [str(data_dir)], {"CAGE_DATA_DIR": str(data_dir)})
        return True
    except OSError:
        return False


def _read(engine: Any, name: str, container: str, since: str, out: queue.Queue[Any]) -> None:
    """Stream one companion's log into `out`; (name, container, None) at its end."""
    try:
        for stamp, text in engine.output_lines(container, since, follow=True):
            out.put((name, container, (stamp, text)))
    except CageError:
        pass
    finally:
        out.put((name, container, None))


def follow(
    data_dir: Path, engine: EngineAPI, log: EventLog, store: SessionStore | None = None
) -> None:
    """The follower's loop: one reader thread per companion, one writer (this thread),
    filing into `log` what `engine`'s companions refused (numbered by the records in
    `store`)."""
    companions_here = [
        *labels.owner_filters(role=labels.Role.COMPANION),
        f"{labels.NETWORK}={Network.FILTERED}",
    ]
    lines: queue.Queue[Any] = queue.Queue()
    readers: dict[str, threading.Thread] = {}
    ended: set[str] = set()
    pending: dict[tuple[str, str], list[tuple[str, bytes]]] = {}
    last_discovery = 0.0
    idle_since: float | None = None
    while data_dir.is_dir():
        now = time.monotonic()
        if now - last_discovery >= DISCOVER_SECONDS:
            last_discovery = now
            try:
                companions = engine.list_containers(companions_here)
            except CageError:
                companions = []
            running = False
            for info in companions:
                cid, name = info.id, labels.session_of(info.labels) or ""
                running = running or info.running
                if not name or cid in readers or cid in ended:
                    continue
                here = place(log, name)
                if here.container == cid and here.done:
                    continue
                since = here.since if here.container == cid else "0"
                readers[cid] = threading.Thread(
                    target=_read, args=(engine, name, cid, since, lines), daemon=True
                )
                readers[cid].start()
            if running or readers:
                idle_since = None
            elif idle_since is None:
                idle_since = now
            elif now - idle_since > IDLE_EXIT_SECONDS:
                return
        deadline = time.monotonic() + BATCH_SECONDS
        finished: list[tuple[str, str]] = []
        count = 0
        while count < BATCH_LINES and (left := deadline - time.monotonic()) > 0:
            try:
                name, cid, item = lines.get(timeout=left)
            except queue.Empty:
                break
            if item is None:
                finished.append((name, cid))
            else:
                pending.setdefault((name, cid), []).append(item)
                count += 1
        for (name, cid), batch in list(pending.items()):
            numbering = record_numbering(store, name) if store is not None else None
            with contextlib.suppress(CageError):
                ingest(log, name, cid, batch, numbering=numbering)
            del pending[(name, cid)]
        for name, cid in finished:
            readers.pop(cid, None)
            try:
                state = engine.inspect(cid)
            except CageError:
                continue  # the engine is away: look again at the next discovery
            if state is None or not state.running:
                ended.add(cid)
                with contextlib.suppress(CageError):
                    ingest(log, name, cid, [], final=True)


def main(argv: list[str]) -> int:
    data_dir = Path(argv[0]) if argv else paths.data_dir()
    os.environ["CAGE_DATA_DIR"] = str(data_dir)
    fd = _try_lock(data_dir)
    if fd is None:
        return 0  # another follower has this data directory
    ctx = Context()
    try:
        follow(data_dir, ctx.local_engine(), ctx.events, ctx.store)
    except KeyboardInterrupt:
        pass
    finally:
        os.close(fd)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
