"""Claude Code's own transcripts, rendered for a person (`claude-cage logs`).

Claude Code writes every conversation as JSON Lines under its config directory,
`projects/<project>/<conversation>.jsonl` (subagents' in files beside it), in the
session's data volume. Each line is one event: a prompt or tool results (`user`), an
answer or tool calls (`assistant`), and bookkeeping. Pure: no I/O here.

Everything in an event is the session's own writing, so every rendered line goes
through `render.sanitize` and is one terminal line, shortened.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from claude_cage.render import sanitize_lines

WIDTH = 100  # a rendered line's length at most (shortened with an ellipsis)


@dataclass
class Event:
    """One transcript line, parsed; `order` keeps a file's own order for ties."""

    data: dict[str, Any]
    source: str  # the file it came from, inside the data volume
    order: int

    @property
    def timestamp(self) -> str:
        return str(self.data.get("timestamp") or "")


@dataclass
class Reader:
    """Splits growing transcript files into events, remembering how far each was read,
    so a follower gets each event once."""

    done: dict[str, int] = field(default_factory=dict)  # file -> bytes consumed
    counter: int = 0

    def feed(self, files: dict[str, bytes]) -> list[Event]:
        """New complete lines from each file's whole current content, as events, in
        time order. A file that shrank (replaced) is read again from its start."""
        with _trees_only():
            return self._feed(files)

    def _feed(self, files: dict[str, bytes]) -> list[Event]:
        events = []
        room = _Room(files)
        for source in sorted(files):
            content = files[source]
            start = self.done.get(source, 0)
            if start > len(content):
                start = 0
            end = content.rfind(b"\n", start) + 1
            if end <= start:
                continue
            counter = self.counter
            chunk = content[start:end]
            room.take(chunk)
            for line in _lines(chunk):
                if room.by_line and not room.admits(line):
                    continue  # past what one read holds: not parsed, as damaged
                # Claude Code's own lines are one object each, nothing around it: read
                # by the JSON scanner at once; anything else as parse_line reads it.
                try:
                    parsed, stop = _SCAN(line, 0)
                except (StopIteration, ValueError, TypeError, RecursionError):
                    parsed = parse_line(line)
                else:
                    if stop != len(line) or type(parsed) is not dict:
                        parsed = parse_line(line)
                if parsed is not None:
                    counter += 1
                    events.append(Event(parsed, source, counter))
            self.counter = counter
            self.done[source] = end
        return sorted(events, key=_when)


@contextlib.contextmanager
def _trees_only() -> Iterator[None]:
    """No cycle collection while events are read and rendered: JSON makes trees, never
    cycles, and the collector, set off again and again by the containers a parse
    makes, would walk every live object each time (a third of the parse's time)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


# The JSON objects and arrays one read of the transcripts may make, in all: under 1 GB
# of Python objects. The session writes the transcripts, and `{}` is two bytes of them
# but some 70 bytes of this process's memory; a line that would pass it is left out,
# as a damaged line is. A real transcript of a gigabyte holds a few million.
MAX_CONTAINERS = 10_000_000


class _Room:
    """What is left of MAX_CONTAINERS in one read of `files`. Files too small to hold
    that many (an object or array takes two bytes at least) are never counted; else
    each file is taken whole when it fits, and its lines one by one when it does not."""

    def __init__(self, files: Mapping[str, bytes]) -> None:
        self.left = MAX_CONTAINERS
        self.counting = sum(len(content) for content in files.values()) // 2 > MAX_CONTAINERS
        self.by_line = False  # this file's lines are counted one by one

    def take(self, chunk: bytes) -> None:
        """Before a file's lines."""
        self.by_line = False
        if self.counting:
            whole = _containers(chunk)
            self.by_line = whole > self.left
            if not self.by_line:
                self.left -= whole

    def admits(self, line: str | bytes) -> bool:
        """With `by_line`: whether the line fits in what is left (then taken off)."""
        cost = _containers(line)
        if cost > self.left:
            return False
        self.left -= cost
        return True


def _containers(line: str | bytes) -> int:
    """At most how many objects and arrays parsing the line makes (brackets inside
    strings counted too)."""
    if isinstance(line, str):
        return line.count("{") + line.count("[")
    return line.count(b"{") + line.count(b"[")


def _when(event: Event) -> tuple[str, int]:
    return str(event.data.get("timestamp") or ""), event.order


def _lines(chunk: bytes) -> list[str] | list[bytes]:
    """The chunk's lines, split where bytes.splitlines splits (LF, CR, CRLF): as text
    when the chunk is UTF-8 (decoded once, not once a line), else as bytes, each then
    read alone, so one damaged line costs only itself."""
    try:
        text = chunk.decode()
    except UnicodeDecodeError:
        return chunk.splitlines()
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


_DECODER = json.JSONDecoder()
# json.loads without its per-call checks: (value, end); typeshed does not list it.
_SCAN: Callable[[str | bytes, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]
_JSON_SPACE = " \t\n\r"


def parse_line(line: str | bytes) -> dict[str, Any] | None:
    """One JSON object, or None for a blank or damaged line (what json.loads takes,
    without its per-call cost: 10,000 events are read in one go). A line nested past
    the interpreter's recursion limit is damaged too: the session wrote it."""
    if isinstance(line, bytes):
        try:
            data = json.loads(line)
        except (ValueError, RecursionError):
            return None
        return data if isinstance(data, dict) else None
    text = line.strip(_JSON_SPACE).removeprefix("\ufeff")
    if not text:
        return None
    try:
        data, end = _DECODER.raw_decode(text)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) and end == len(text) else None


def shorten(text: str, width: int) -> str:
    """One line: whitespace runs become one space, and at most `width` characters."""
    text = str(text)
    # A prefix's flattened form is a prefix of the whole's: for a long text (a file a
    # tool read) flatten only its start while that is enough to fill the line.
    cut = 4 * width + 64
    if len(text) <= cut:
        flat = " ".join(text.split())
    else:
        flat = " ".join(text[:cut].split())
        if len(flat) <= width:
            flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: max(width - 1, 1)] + "…"


def _tool_input(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{key}={_tool_input(item)}" for key, item in value.items())
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, dict) and block.get("type") == "text":
                parts.append(str(block.get("text", "")))
            elif isinstance(block, dict):
                parts.append(f"[{block.get('type', '?')}]")
        return " ".join(parts)
    return "" if content is None else json.dumps(content, ensure_ascii=False)


def items(event: dict[str, Any]) -> list[tuple[str, str]]:
    """What a person sees of one event: (kind, text) pairs. Kinds: prompt, answer,
    tool, result, error, system. An event nested too deep to be shown (the parser
    took it, but writing it out recurses further) shows nothing."""
    try:
        return _items(event)
    except RecursionError:
        return []


def _items(event: dict[str, Any]) -> list[tuple[str, str]]:
    kind = event.get("type")
    if kind == "user" or kind == "assistant":
        message = event.get("message")
        content = message.get("content") if isinstance(message, dict) and message else None
        if kind == "user" and isinstance(content, str):
            return [("prompt", content)]
        if not isinstance(content, list):
            return []
        shown = []
        for block in content:
            if not isinstance(block, dict):
                continue
            part = block.get("type")
            if part == "text":
                shown.append(("prompt" if kind == "user" else "answer", str(block.get("text", ""))))
            elif kind == "user" and part == "tool_result":
                text = _result_text(block.get("content"))
                shown.append(("error" if block.get("is_error") else "result", text))
            elif kind == "assistant" and part == "tool_use":
                call = f"{block.get('name', '?')}({_tool_input(block.get('input'))})"
                shown.append(("tool", call))
        return shown
    if kind == "system" and event.get("content"):
        return [("system", str(event.get("content")))]
    return []


LABELS = {
    "prompt": "you",
    "answer": "claude",
    "tool": "tool",
    "result": "result",
    "error": "error",
    "system": "system",
}


NO_CLOCK = ("", " " * 8)
_CLOCKS: dict[datetime, tuple[str, str]] = {}  # by the second: local time is costly


def _clock(timestamp: str) -> tuple[str, str]:
    """(date, time) in local time, from an ISO timestamp; blanks if there is none."""
    # Claude Code writes UTC to the millisecond ("2026-11-29T10:00:01.123Z"): such a
    # timestamp is looked up by its second, not parsed again.
    if len(timestamp) == 24 and timestamp[19] == "." and timestamp[23] == "Z":
        found = _BY_SECOND.get(timestamp[:19])
        if found is None:
            found = _minutes_clock(timestamp) or _parsed_clock(timestamp)
            if len(_BY_SECOND) >= 4096:
                _BY_SECOND.clear()
            _BY_SECOND[timestamp[:19]] = found
        return found
    return _parsed_clock(timestamp)


_BY_SECOND: dict[str, tuple[str, str]] = {}
_BY_MINUTE: dict[str, tuple[str, str] | None] = {}  # "2026-11-29T10:00" -> its clock


def _minutes_clock(timestamp: str) -> tuple[str, str] | None:
    """The clock of a "YYYY-MM-DDTHH:MM:SS.fffZ" timestamp from its minute's, local
    time worked out once a minute, not once a second (2,500 seconds took 40 ms); None
    when that cannot be (seconds or milliseconds not plain digits, a local offset
    that is not whole minutes): then it is parsed whole."""
    second, millis = timestamp[17:19], timestamp[20:23]
    digits = second + millis
    if timestamp[16] != ":" or not (digits.isascii() and digits.isdigit()) or second > "59":
        return None
    minute = timestamp[:16]
    if minute not in _BY_MINUTE:
        if len(_BY_MINUTE) >= 4096:
            _BY_MINUTE.clear()
        date, clock = _parsed_clock(minute + ":00.000Z")
        if not date:  # no time in this minute: none in any of its seconds
            _BY_MINUTE[minute] = NO_CLOCK
        else:
            _BY_MINUTE[minute] = (date, clock[:6]) if clock.endswith(":00") else None
    found = _BY_MINUTE[minute]
    if found is None or found is NO_CLOCK:
        return found
    return found[0], found[1] + second


def _parsed_clock(timestamp: str) -> tuple[str, str]:
    try:
        moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return NO_CLOCK
    second = moment.replace(microsecond=0)
    found = _CLOCKS.get(second)
    if found is None:
        if len(_CLOCKS) >= 4096:
            _CLOCKS.clear()
        try:
            local = _local(second)
        except (ValueError, OverflowError):
            return NO_CLOCK
        found = _CLOCKS[second] = (
            f"{local.year:04}-{local.month:02}-{local.day:02}",
            f"{local.hour:02}:{local.minute:02}:{local.second:02}",
        )
    return found


_OFFSETS: dict[datetime, timedelta | None] = {}  # the local zone's offset, by quarter hour


def _local(moment: datetime) -> datetime:
    """`moment.astimezone()`, the local zone's offset looked up once a quarter hour (the
    C library reads the zone file again for each lookup: 2,500 of them took 20 ms).
    A zone's offset changes at quarter hours only."""
    if moment.tzinfo is None:
        return moment.astimezone()
    utc = moment.astimezone(UTC)
    quarter = utc.replace(minute=utc.minute - utc.minute % 15, second=0, microsecond=0)
    if quarter not in _OFFSETS:
        if len(_OFFSETS) >= 4096:
            _OFFSETS.clear()
        _OFFSETS[quarter] = quarter.astimezone().utcoffset()
    offset = _OFFSETS[quarter]
    return utc.astimezone() if offset is None else (utc + offset).replace(tzinfo=None)


DAY_MARK = "--- "  # the line that starts each day


class Renderer:
    """Lines for a person: a date line when the day changes, then `time  kind  text`,
    each one terminal line of at most `width` characters."""

    def __init__(self, width: int = WIDTH) -> None:
        self.width = width
        self.day = ""

    def lines(self, events: Iterable[Event]) -> Iterator[str]:
        plain = self._plain((event.timestamp, event.data) for event in events)
        while batch := list(itertools.islice(plain, BATCH)):
            yield from sanitize_lines(batch)

    def _plain(self, stamped: Iterable[tuple[str, dict[str, Any]]]) -> Iterator[str]:
        """The lines of (timestamp, event) pairs before `sanitize` (done a batch at a
        time, by `lines`)."""
        width = self.width - HEAD_WIDTH
        for timestamp, data in stamped:
            shown = items(data)
            if not shown:
                continue
            date, clock = _clock(timestamp)
            if date and date != self.day:  # above the event's first line
                self.day = date
                yield DAY_MARK + date
            side = "  (subagent)" if data.get("isSidechain") else ""
            room = max(width - len(clock) - len(side), 10)
            for kind, text in shown:
                yield clock + _HEADS[kind] + shorten(text, room) + side


HEAD_WIDTH = 10  # the kind between the time and the text: two spaces, six, two
_HEADS = {kind: f"  {label:<6}  " for kind, label in LABELS.items()}  # after the time


def render(files: Mapping[str, bytes], width: int = WIDTH, tail: int | None = None) -> list[str]:
    """The lines of these transcript files as they are now: what
    `Renderer(width).lines(Reader().feed(files))` gives, or `last_lines` of it with
    `tail`. One pass, with no Event for each line, and with `tail`, only the events
    of the last lines are rendered (the rest are read for their time, to order them)."""
    with _trees_only():
        return _render(_stamped(files), width, tail)


def _render(stamped: list[tuple[str, dict[str, Any]]], width: int, tail: int | None) -> list[str]:
    renderer = Renderer(width)
    if tail is None:
        return sanitize_lines(list(renderer._plain(stamped)))
    if tail <= 0:
        return []
    first, count = len(stamped), 0
    while first and count < tail:  # the events that hold the last `tail` lines
        first -= 1
        count += len(items(stamped[first][1]))
    for timestamp, data in reversed(stamped[:first]):  # the day line above them
        date = _clock(timestamp)[0] if items(data) else ""
        if date:
            renderer.day = date
            break
    above = [f"{DAY_MARK}{renderer.day}"] if renderer.day else []
    return last_lines(sanitize_lines(above + list(renderer._plain(stamped[first:]))), tail)


def _stamped(files: Mapping[str, bytes]) -> list[tuple[str, dict[str, Any]]]:
    """Every event of the files, as (timestamp, event), in the order Reader.feed gives."""
    keyed: list[tuple[str, int, dict[str, Any]]] = []
    order = 0
    room = _Room(files)
    for source in sorted(files):
        content = files[source]
        end = content.rfind(b"\n") + 1
        if not end:
            continue
        room.take(content[:end])
        for line in _lines(content[:end]):
            if type(line) is str and not _may_show(line):
                continue  # shows nothing, wherever it stands: not even read
            if room.by_line and not room.admits(line):
                continue  # past what one read holds (MAX_CONTAINERS)
            try:
                parsed, stop = _SCAN(line, 0)
            except (StopIteration, ValueError, TypeError, RecursionError):
                parsed = parse_line(line)
            else:
                if stop != len(line) or type(parsed) is not dict:
                    parsed = parse_line(line)
            if parsed is not None:
                order += 1
                keyed.append((str(parsed.get("timestamp") or ""), order, parsed))
    keyed.sort()  # by time, then order: no two orders are equal, so no event is compared
    return [(timestamp, data) for timestamp, _, data in keyed]


def _may_show(line: str) -> bool:
    """False for a line that cannot be an event `items` shows: none of its strings can
    read "user", "assistant" or "system", since a letter in a JSON string is written
    as itself or as a \\u escape (snapshots and progress, often most of a transcript)."""
    return '"user"' in line or '"assistant"' in line or '"system"' in line or "\\u" in line


BATCH = 1000  # lines sanitized in one go


def last_lines(lines: Iterable[str], count: int) -> list[str]:
    """The last `count` lines a person sees (events with nothing to show, and the date
    lines, do not count), after the date line that stands above the first of them."""
    shown: list[tuple[str, str]] = []  # (the date line above it, the line)
    day = ""
    for line in lines:
        if line.startswith(DAY_MARK):
            day = line
        else:
            shown.append((day, line))
    shown = shown[len(shown) - count :] if count > 0 else []
    if not shown:
        return []
    first_day = [shown[0][0]] if shown[0][0] else []
    out = first_day
    for i, (line_day, line) in enumerate(shown):
        if i and line_day != shown[i - 1][0]:
            out.append(line_day)
        out.append(line)
    return out


def as_json(event: Event) -> str:
    """The event as Claude Code wrote it, re-encoded: json.dumps escapes every control
    and non-ASCII character, so the line is safe on a terminal and still the same JSON.
    An event nested too deep to encode (the session writes the transcript) is a line
    that says so, and the events after it still come."""
    try:
        return json.dumps(event.data)
    except RecursionError:
        return json.dumps({"unshown": "an event nested too deep to write as JSON"})
