"""Claude Code's own transcripts, rendered for a person (`claude-cage logs`).

Claude Code writes every conversation as JSON Lines under its config directory,
`projects/<project>/<conversation>.jsonl` (subagents' in files beside it), in the
session's data volume. Each line is one event: a prompt or tool results (`user`), an
answer or tool calls (`assistant`), and bookkeeping. Pure: no I/O here.

Everything in an event is the session's own writing, so every rendered line goes
through `render.sanitize` and is one terminal line, shortened.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Iterator
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
        events = []
        for source in sorted(files):
            content = files[source]
            start = self.done.get(source, 0)
            if start > len(content):
                start = 0
            end = content.rfind(b"\n", start) + 1
            if end <= start:
                continue
            counter = self.counter
            for line in _lines(content[start:end]):
                # Claude Code's own lines are one object each, nothing around it: read
                # by the JSON scanner at once; anything else as parse_line reads it.
                try:
                    parsed, stop = _SCAN(line, 0)
                except (StopIteration, ValueError, TypeError):
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
    without its per-call cost: 10,000 events are read in one go)."""
    if isinstance(line, bytes):
        try:
            data = json.loads(line)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None
    text = line.strip(_JSON_SPACE).removeprefix("\ufeff")
    if not text:
        return None
    try:
        data, end = _DECODER.raw_decode(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) and end == len(text) else None


def shorten(text: str, width: int) -> str:
    """One line: whitespace runs become one space, and at most `width` characters."""
    text = str(text)
    # A prefix's flattened form is a prefix of the whole's: for a long text (a file a
    # tool read) flatten only its start while that is enough to fill the line.
    head = text[: 4 * width + 64]
    flat = " ".join(head.split())
    if len(flat) <= width and len(head) < len(text):
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


def items(event: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """What a person sees of one event: (kind, text) pairs. Kinds: prompt, answer,
    tool, result, error, system."""
    kind = event.get("type")
    message = event.get("message") if isinstance(event.get("message"), dict) else {}
    content = message.get("content") if message else None
    if kind == "user":
        if isinstance(content, str):
            yield "prompt", content
            return
        for block in content if isinstance(content, list) else []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text":
                yield "prompt", str(block.get("text", ""))
            elif block.get("type") == "tool_result":
                text = _result_text(block.get("content"))
                yield ("error" if block.get("is_error") else "result"), text
    elif kind == "assistant":
        for block in content if isinstance(content, list) else []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text":
                yield "answer", str(block.get("text", ""))
            elif block.get("type") == "tool_use":
                yield "tool", f"{block.get('name', '?')}({_tool_input(block.get('input'))})"
    elif kind == "system" and event.get("content"):
        yield "system", str(event.get("content"))


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
            found = _parsed_clock(timestamp)
            if len(_BY_SECOND) >= 4096:
                _BY_SECOND.clear()
            _BY_SECOND[timestamp[:19]] = found
        return found
    return _parsed_clock(timestamp)


_BY_SECOND: dict[str, tuple[str, str]] = {}


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
        plain = self._plain(events)
        while batch := list(itertools.islice(plain, BATCH)):
            yield from sanitize_lines(batch)

    def _plain(self, events: Iterable[Event]) -> Iterator[str]:
        """The lines before `sanitize` (done a batch at a time, by `lines`)."""
        width = self.width
        for event in events:
            data = event.data
            date, clock = _clock(event.timestamp)
            side = "  (subagent)" if data.get("isSidechain") else ""
            for kind, text in items(data):
                if date and date != self.day:
                    self.day = date
                    yield f"{DAY_MARK}{date}"
                head = f"{clock}  {LABELS[kind]:<6}  "
                room = max(width - len(head) - len(side), 10)
                yield head + shorten(text, room) + side


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
    and non-ASCII character, so the line is safe on a terminal and still the same JSON."""
    return json.dumps(event.data)
