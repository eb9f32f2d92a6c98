"""Claude Code's transcripts as `logs` renders them, and the model probe's verdicts."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from claude_cage import transcript
from claude_cage.operations.model import interpret, unreachable
from claude_cage.transcript import (
    Event,
    Reader,
    Renderer,
    _clock,
    _lines,
    _local,
    _parsed_clock,
    _result_text,
    _tool_input,
    as_json,
    items,
    last_lines,
    parse_line,
    render,
    shorten,
)


def line(**event: object) -> bytes:
    return json.dumps(event).encode() + b"\n"


def conversation() -> bytes:
    ts = "2026-11-29T10:00:0{}Z"
    return b"".join(
        [
            line(type="summary", summary="x"),
            line(
                type="user", timestamp=ts.format(1), message={"role": "user", "content": "Fix it"}
            ),
            line(
                type="assistant",
                timestamp=ts.format(2),
                message={
                    "content": [
                        {"type": "thinking", "thinking": "secret plans"},
                        {"type": "text", "text": "On it.\x1b]0;owned\x07"},
                        {"type": "tool_use", "name": "Bash", "input": {"command": "ls\n-la"}},
                    ]
                },
            ),
            line(
                type="user",
                timestamp=ts.format(3),
                message={
                    "content": [
                        {"type": "tool_result", "content": "a\nb\n" * 100, "is_error": True}
                    ]
                },
            ),
            b"{not json\n",
        ]
    )


def test_rendered_lines_are_one_line_each_escaped_and_short() -> None:
    events = Reader().feed({"p/s.jsonl": conversation()})
    lines = list(Renderer(width=60).lines(events))
    assert lines[0] == "--- 2026-11-29" or lines[0].startswith("--- ")
    kinds = [entry.split()[1] for entry in lines[1:]]
    assert kinds == ["you", "claude", "tool", "error"]
    assert "Fix it" in lines[1]
    assert "On it.\\x1b]0;owned\\x07" in lines[2]  # escaped, never raw
    assert "Bash(command=ls -la)" in lines[3]  # one line
    assert all(len(entry) <= 60 and "\x1b" not in entry for entry in lines)
    assert lines[4].endswith("…")
    assert not any("secret plans" in entry for entry in lines)


def test_a_follower_reads_each_event_once_and_only_complete_lines() -> None:
    reader = Reader()
    first = conversation()
    assert len(reader.feed({"s.jsonl": first + b'{"type": "user"'})) == 4  # summary too
    more = line(type="user", timestamp="2026-11-29T10:00:09Z", message={"content": "again"})
    assert len(reader.feed({"s.jsonl": first + more})) == 1
    assert reader.feed({"s.jsonl": first + more}) == []


def test_every_kind_takes_the_same_room() -> None:
    assert {len(head) for head in transcript._HEADS.values()} == {transcript.HEAD_WIDTH}


def test_tail_and_order_across_files() -> None:
    a = line(type="user", timestamp="2026-11-29T10:00:05Z", message={"content": "late"})
    b = line(type="user", timestamp="2026-11-29T10:00:01Z", message={"content": "early"})
    events = Reader().feed({"a.jsonl": a, "b.jsonl": b})
    assert [e.data["message"]["content"] for e in events] == ["early", "late"]


def test_tail_counts_the_lines_shown_not_the_hidden_events() -> None:
    hidden = line(type="system", timestamp="2026-11-30T09:00:00Z", subtype="hook")
    events = Reader().feed({"s.jsonl": conversation() + hidden * 5})
    shown = list(Renderer(width=60).lines(events))
    assert last_lines(shown, 1) == ["--- 2026-11-29", shown[-1]]  # the answer's day above it
    assert last_lines(shown, 2) == ["--- 2026-11-29", *shown[-2:]]
    assert last_lines(shown, 99) == shown
    assert last_lines(shown, 0) == []
    other_day = line(type="user", timestamp="2026-12-01T08:00:00Z", message={"content": "hi"})
    more = list(Renderer(width=60).lines(Reader().feed({"s": conversation() + other_day})))
    assert last_lines(more, 2) == ["--- 2026-11-29", more[-3], more[-2], more[-1]]


def test_the_model_probe_verdicts() -> None:
    upstream = "https://api.anthropic.com"
    ok = interpret("http://127.0.0.1:8082\n404 0.012\n", upstream)
    assert ok.ok and ok.http_status == 404 and ok.upstream == upstream
    assert "answers (HTTP 404 in 12 ms)" in ok.detail
    gateway = interpret("http://127.0.0.1:8082\n502 0.003\n", upstream)
    assert not gateway.ok and f"no answer from {upstream}" in gateway.detail
    offline = interpret(
        "https://api.anthropic.com\ncurl: (6) Could not resolve host: api.anthropic.com\n000 0\n",
        None,
    )
    assert not offline.ok and "no network" in offline.detail
    refused = interpret(
        "https://api.anthropic.com\ncurl: (56) CONNECT tunnel failed, response 403\n000 0\n", None
    )
    assert not refused.ok and "egress proxy refused" in refused.detail
    assert "claude-cage allow" in refused.detail
    literal = interpret(
        "https://203.0.113.7\ncurl: (56) CONNECT tunnel failed, response 403\n000 0\n", None
    )
    assert "203.0.113.7 is an IP address" in literal.detail
    assert "claude-cage allow" not in literal.detail  # allow refuses an address
    cannot = interpret(
        "https://api.anthropic.com\ncurl: (56) CONNECT tunnel failed, response 503\n000 0\n", None
    )
    assert not cannot.ok and "api.anthropic.com is allowed" in cannot.detail
    assert "refused" not in cannot.detail and "claude-cage allow" not in cannot.detail
    forward = interpret(cannot.url + "\ncurl: (56) CONNECT tunnel failed, response 500\n", None)
    assert "is allowed, but the egress proxy could not reach it" in forward.detail


def test_start_warns_when_no_model_can_be_reached() -> None:
    assert unreachable("none", {}) is not None
    assert "ANTHROPIC_BASE_URL" in (unreachable("none", {}) or "")
    assert unreachable("none", {"ANTHROPIC_BASE_URL": "http://127.0.0.1:8000"}) is None
    assert unreachable("filtered", {}) is None


# The fast paths of `logs` read and show exactly what the plain ones did.
@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab \n\t\r\u2028\x85x…", max_size=1500), st.integers(1, 150))
def test_shorten_of_a_long_text_is_the_whole_texts(text: str, width: int) -> None:
    flat = " ".join(text.split())
    assert shorten(text, width) == (flat if len(flat) <= width else flat[: max(width - 1, 1)] + "…")


JSONISH = st.one_of(
    st.sampled_from(['{"a": 1}', ' {"a": 1} ', '{"a": 1} x', "[1]", "1", "", "  ", "\ufeff{}",
                     '{"a": "\u2028"}', '{"a": NaN}', '{"a": 1}{"b": 2}', "{", '"s"', "\x0c{}"]),
    st.text(max_size=30),
    st.dictionaries(st.text(max_size=5), st.integers()).map(json.dumps),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(JSONISH)
def test_a_line_is_read_as_json_loads_reads_it(line: str) -> None:
    try:
        expected = json.loads(line.encode())
    except ValueError:
        expected = None
    expected = expected if isinstance(expected, dict) else None
    assert parse_line(line) == expected
    assert parse_line(line.encode()) == expected


def test_lines_split_as_bytes_do_and_a_damaged_one_costs_only_itself() -> None:
    chunk = b'{"a": 1}\r\n{"b": "\xe2\x80\xa8"}\r{"c": 3}\n'
    parsed = [parse_line(line) for line in _lines(chunk)]
    assert [p for p in parsed if p] == [json.loads(x) for x in chunk.splitlines()]
    damaged = b'{"a": 1}\n{"b": "\xff"}\n{"c": 3}\n'
    assert [p for p in map(parse_line, _lines(damaged)) if p] == [{"a": 1}, {"c": 3}]


def test_the_clock_is_local_time_by_the_second() -> None:
    one, two = _clock("2026-11-29T10:00:05.001Z"), _clock("2026-11-29T10:00:05.999Z")
    local = datetime.fromisoformat("2026-11-29T10:00:05+00:00").astimezone()
    assert one == two == (local.strftime("%Y-%m-%d"), local.strftime("%H:%M:%S"))
    assert _clock("yesterday") == _clock("") == ("", " " * 8)


@given(st.datetimes(timezones=st.just(UTC)), st.integers(0, 999))
def test_the_clock_by_the_second_is_the_parsed_clock(moment: datetime, millis: int) -> None:
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{millis:03}Z"
    assert _clock(stamp) == _parsed_clock(stamp)
    assert _clock(stamp) == _parsed_clock(stamp[:19] + "+00:00")


@settings(max_examples=200, deadline=None)
@given(st.lists(JSONISH, max_size=6))
def test_the_reader_takes_a_line_as_parse_line_does(lines: list[str]) -> None:
    """The reader's shortcut (the JSON scanner on the whole line) keeps parse_line's
    verdict on every line, damaged or padded."""
    text = "".join(line.replace("\n", " ").replace("\r", " ") + "\n" for line in lines)
    events = Reader().feed({"t.jsonl": text.encode()})
    expected = [parse_line(line) for line in _lines(text.encode()) if line]
    assert [e.data for e in events] == [p for p in expected if p is not None]


@pytest.mark.parametrize("zone", ["Europe/Paris", "America/St_Johns", "Australia/Lord_Howe"])
def test_local_time_across_the_zones_changes(zone: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The offset looked up once a quarter hour is the system's, on both sides of a
    daylight-saving change (Lord Howe's moves by half an hour)."""
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        start = datetime(2026, 3, 1, tzinfo=UTC)
        for step in range(0, 300 * 24 * 3600, 7 * 60 + 13):  # every 433 s for 300 days
            moment = start + timedelta(seconds=step)
            assert _local(moment) == moment.astimezone().replace(tzinfo=None), moment
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


# `logs` of what is there now (transcript.render) against the follower's path (Reader,
# Renderer, last_lines): the same lines for any transcript.
STAMPS = st.sampled_from([
    "2026-11-29T10:00:01.123Z", "2026-11-29T10:00:01.500Z", "2026-11-29T23:59:59.999Z",
    "2026-11-30T00:00:00Z", "2026-11-30T08:15:00+02:00", "2026-12-01T10:00:00.000Z",
    "", "yesterday", "2026-13-01T00:00:00Z",
])  # fmt: skip
TEXT = st.text(alphabet="ab \n\t\r\x1b\u202e\x85é…", max_size=40) | st.sampled_from(
    ["", "ok\n" * 200, "x" * 500]
)
VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)
BLOCK = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": TEXT | VALUE}),
    st.fixed_dictionaries(
        {"type": st.just("tool_use"), "input": VALUE},
        optional={"name": TEXT | VALUE},
    ),
    st.fixed_dictionaries(
        {"type": st.just("tool_result")},
        optional={
            "content": VALUE
            | st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": TEXT})),
            "is_error": st.booleans(),
        },
    ),
    st.fixed_dictionaries({"type": st.sampled_from(["thinking", "image", "?"])}),
    VALUE,
)
MESSAGE = st.one_of(
    st.fixed_dictionaries({"content": st.lists(BLOCK, min_size=1, max_size=4)}),
    st.fixed_dictionaries({}, optional={"content": TEXT | VALUE}),
    VALUE,
)
EVENT = st.fixed_dictionaries(
    {"type": st.sampled_from(["user", "assistant", "user", "assistant", "system", "summary"])},
    optional={
        "timestamp": STAMPS | st.integers(),
        "message": MESSAGE,
        "content": TEXT | VALUE,
        "isSidechain": st.booleans(),
    },
)
LINE = st.one_of(
    EVENT.map(lambda event: json.dumps(event, ensure_ascii=False).encode()),
    st.sampled_from(
        [
            b"",
            b"{not json",
            b'{"type": "user"',
            b"[1]",
            b'{"a": "\xff"}',
            b'{"\\u0074ype": "\\u0075ser", "message": {"content": "escaped"}}',
            b'{"type": "progress", "data": "\\\\u"}',
        ]
    ),
)
ENDS = st.sampled_from([b"\n", b"\r\n", b"\r"])
FILE = st.tuples(st.lists(LINE, max_size=12), ENDS, st.booleans())  # lines, ending, last ended


def _event(stamp: str, shown: bool) -> bytes:
    content = [{"type": "text", "text": "hi"}] if shown else []
    event = {"type": "user", "timestamp": stamp, "message": {"content": content}}
    return json.dumps(event).encode()


@settings(max_examples=600, deadline=None)
@example(  # the day line above the last line: the last shown event's day, not a hidden one's
    {"a": ([_event("2026-11-29T10:00:00Z", True), _event("2026-11-30T10:00:00Z", False),
            _event("2026-13-01T00:00:00Z", True)], b"\n", True)}, 100, 1)  # fmt: skip
@given(
    st.dictionaries(st.sampled_from(["p/a.jsonl", "p/b.jsonl", "q/a.jsonl"]), FILE, max_size=3),
    st.integers(1, 120),
    st.none() | st.integers(0, 30),
)
def test_logs_at_once_shows_what_the_followers_path_shows(
    layout: dict[str, tuple[list[bytes], bytes, bool]], width: int, tail: int | None
) -> None:
    files = {
        source: end.join(lines) + (end if complete else b"")
        for source, (lines, end, complete) in layout.items()
    }
    shown = list(Renderer(width).lines(Reader().feed(files)))
    assert render(files, width, tail) == (shown if tail is None else last_lines(shown, tail))


def test_logs_at_once_of_10000_events() -> None:
    ts = "2026-11-{:02}T{:02}:00:00.000Z"
    lines = [
        line(type="user", timestamp=ts.format(29 + i // 4000, i % 24), message={"content": f"s{i}"})
        + line(type="system", subtype="hook", timestamp=ts.format(29, 1))
        for i in range(5000)
    ]
    files = {"a.jsonl": b"".join(lines[::2]), "b.jsonl": b"".join(lines[1::2])}
    shown = list(Renderer(100).lines(Reader().feed(files)))
    assert render(files, 100) == shown
    for tail in (0, 1, 2, 20, 4999, 5000, 6000):
        assert render(files, 100, tail) == last_lines(shown, tail)


def _items_as_before(event: dict[str, object]) -> Iterator[tuple[str, str]]:
    """`items` as a generator, the way it read before it returned a list."""
    kind = event.get("type")
    message = event.get("message") if isinstance(event.get("message"), dict) else {}
    content = message.get("content") if message else None  # type: ignore[union-attr]
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


@settings(max_examples=500, deadline=None)
@example({"type": "assistant", "message": {"content": [{"type": "tool_result", "content": "x"}]}})
@example({"type": "user", "message": {"content": [{"type": "tool_use", "name": "x"}]}})
@given(EVENT)
def test_what_an_event_shows(event: dict[str, object]) -> None:
    assert items(event) == list(_items_as_before(event))


ZONES = ["UTC", "Europe/Paris", "Asia/Kathmandu", "Africa/Monrovia", "America/St_Johns"]


@settings(max_examples=500, deadline=None)
@given(
    moment=st.datetimes(timezones=st.just(UTC)),
    second=st.text(alphabet="0123456789x\u0663", min_size=2, max_size=2),
    millis=st.text(alphabet="0123456789x", min_size=3, max_size=3),
    sep=st.sampled_from(["T", " ", "x", ":"]),
    zone=st.sampled_from(ZONES),
)
def test_the_clock_by_the_minute_is_the_parsed_clock(
    moment: datetime, second: str, millis: str, sep: str, zone: str
) -> None:
    """The clock worked out once a minute (then its seconds added) is the timestamp's
    own, parsed whole: damaged seconds and milliseconds, and zones whose offset was
    not whole minutes (Monrovia's -0:44:30 until 1972), included."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    caches = (transcript._BY_MINUTE, transcript._CLOCKS, transcript._OFFSETS)
    for cache in caches:
        cache.clear()
    try:
        stamp = moment.strftime(f"%Y-%m-%d{sep}%H:%M:") + f"{second}.{millis}Z"
        assert (transcript._minutes_clock(stamp) or _parsed_clock(stamp)) == _parsed_clock(stamp)
    finally:
        if before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = before
        time.tzset()
        for cache in caches:
            cache.clear()


def _nested(depth: int, leaf: str = "1", opener: str = '{"a":', closer: str = "}") -> str:
    return opener * depth + leaf + closer * depth


HOSTILE = {  # lines a session can write into its transcripts, each to break `logs`
    "nested past the parser's limit": '{"type":"user","x":' + _nested(100_000, "", "[", "]") + "}",
    "a tool input nested just within it": (
        '{"type":"assistant","message":{"content":[{"type":"tool_use","name":"x","input":'
        + _nested(950)
        + "}]}}"
    ),
    "a tool name nested": (
        '{"type":"assistant","message":{"content":[{"type":"tool_use","name":'
        + _nested(950)
        + "}]}}"
    ),
    "a system content nested": '{"type":"system","content":' + _nested(950, "", "[", "]") + "}",
    "a result nested": (
        '{"type":"user","message":{"content":[{"type":"tool_result","content":'
        + _nested(950)
        + "}]}}"
    ),
    "a lone surrogate": (
        '{"type":"user","message":{"content":"\\ud800 \\udfff\\u001b]52;c;x\\u0007"}}'
    ),
}


@pytest.mark.parametrize("hostile", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_transcript_line_costs_only_itself(hostile: str) -> None:
    """Nesting as deep as the JSON parser takes (or deeper), or a lone surrogate that
    no encoding can write: never an exception, and every line printable as UTF-8 with
    no control character in it."""
    ok = line(type="user", timestamp="2026-11-29T10:00:00.000Z", message={"content": "kept"})
    files = {"p/a.jsonl": ok + hostile.encode() + b"\n" + ok}
    for tail in (None, 1, 50):
        shown = render(files, 100, tail)
        assert shown[-1].endswith("kept"), shown
        for text in shown:
            text.encode("utf-8")  # strict, as a UTF-8 terminal's stdout writes it
            assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in text), text
    followed = list(Renderer(100).lines(Reader().feed(files)))
    assert followed == render(files, 100)
    if "surrogate" in hostile:
        assert any("\\ud800 \\udfff\\x1b]52" in text for text in followed), followed


@pytest.mark.parametrize("hostile", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_transcript_line_costs_only_itself_in_json(hostile: str) -> None:
    """`logs --json` writes one JSON line for every event the hostile line holds (a
    line that says it could not be written, when nested too deep), and the events
    after it still come."""
    ok = line(type="user", timestamp="2026-11-29T10:00:00.000Z", message={"content": "kept"})
    files = {"p/a.jsonl": ok + hostile.encode() + b"\n" + ok}
    written = [as_json(event) for event in Reader().feed(files)]
    assert [json.loads(text).get("message") for text in written][-1] == {"content": "kept"}
    for text in written:
        assert text.isascii() and not any(ord(c) < 32 for c in text), text


def test_an_event_nested_deeper_than_json_can_write_is_one_line_saying_so() -> None:
    """A line the parser took when the stack was shallow can be too deep to encode
    later (the reader and the writer run at different depths)."""
    nested: list[Any] = []
    for _ in range(sys.getrecursionlimit() + 10):
        nested = [nested]
    said = json.loads(as_json(Event({"type": "user", "timestamp": nested}, "p/a.jsonl", 1)))
    assert said == {"unshown": "an event nested too deep to write as JSON"}


def test_lines_past_the_objects_one_read_may_make_are_left_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`{}` is two bytes of a transcript and some 70 bytes once parsed: a read makes at
    most MAX_CONTAINERS objects and arrays, and a line that would make more than are
    left is not parsed (a damaged line), while the lines that fit still show."""
    monkeypatch.setattr(transcript, "MAX_CONTAINERS", 100)
    ok = line(type="user", timestamp="2026-11-29T10:00:00.000Z", message={"content": "kept"})
    blocks = ",".join(['{"type":"text","text":"boom"}'] * 200)
    bomb = '{"type":"user","message":{"content":[' + blocks + "]}}\n"
    files = {"p/a.jsonl": ok + bomb.encode() + ok}
    shown = [text for text in render(files, 100) if not text.startswith(transcript.DAY_MARK)]
    assert [text.endswith("kept") for text in shown] == [True, True]
    events = Reader().feed(files)
    assert [e.data["message"]["content"] for e in events] == ["kept", "kept"]
    monkeypatch.setattr(transcript, "MAX_CONTAINERS", 1000)  # room for it: it shows
    assert sum("boom" in text for text in render(files, 100)) == 200
    assert len(Reader().feed(files)) == 3
    assert transcript._containers(bomb) == 203 and transcript._containers(bomb.encode()) == 203


def test_a_file_that_fits_is_counted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file whose objects fit in what is left is taken whole, its count taken off once:
    none of its lines is left out, however much of the room it fills."""
    monkeypatch.setattr(transcript, "MAX_CONTAINERS", 100)
    stamp = "2026-11-29T10:00:{:02}.000Z"
    turns = [line(type="user", timestamp=stamp.format(i), message={"content": f"turn {i} "})
             for i in range(30)]  # fmt: skip
    # 60 objects (each line and its message), over 200 bytes: counted, and it fits
    files = {"p/a.jsonl": b"".join(turns)}
    assert transcript._containers(files["p/a.jsonl"]) == 60
    assert len(Reader().feed(files)) == 30
    assert sum("turn" in text for text in render(files, 100)) == 30
