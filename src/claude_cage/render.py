"""Output: human text on stdout, versioned JSON for scripts, notes and errors on stderr.

Text a session can influence (its logs, the hosts it asked for, event values, status
fields, error messages that quote the engine) reaches the operator's terminal only
through `sanitize`: control characters are shown escaped (`\\x1b`, `\\r`, `\\u202e`),
so a session cannot set the window title, write the clipboard (OSC 52), clear the
screen, or move the cursor to overwrite a line with a forged PASS. JSON needs no such
step: `json.dumps` escapes every control character itself.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TextIO

JSON_VERSION = 1

# C0 controls, DEL, C1 controls (U+009B is a one-character CSI on some terminals), the
# invisible characters that reorder or hide text (bidi overrides and marks, the Arabic
# letter mark U+061C among them, line separators; the soft hyphen, the Hangul fillers
# and the tag characters U+E0000-U+E007F, which carry text no one sees), and
# lone surrogates (JSON's "\\ud800": no encoding can write them, so printing one raises).
_INVISIBLE = (
    "\x7f-\x9f\xad\u061c\u115f\u1160\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2069"
    "\u3164\ufeff\uffa0\ud800-\udfff\U000e0000-\U000e007f"
)
_UNSAFE_LINE = re.compile(f"[\x00-\x1f{_INVISIBLE}]")
_UNSAFE_TEXT = re.compile(f"[\x00-\x08\x0b-\x1f{_INVISIBLE}]")  # keeps \t and \n
_UNSAFE_IN_LINES = re.compile(f"[\x00-\x09\x0b-\x1f{_INVISIBLE}]")  # all but \n
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if code > 0xFFFF:
        return f"\\U{code:08x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def sanitize(text: Any, multiline: bool = False) -> str:
    """`text` as it is safe to print on a terminal: control characters escaped.

    One line by default (tabs and newlines escaped too, so a value cannot start a
    line of its own); with multiline=True, tabs and newlines are kept.
    """
    pattern = _UNSAFE_TEXT if multiline else _UNSAFE_LINE
    return pattern.sub(_escape, str(text))


def sanitize_lines(lines: Sequence[str]) -> list[str]:
    """`sanitize` of each line, in one pass over them all (one regular-expression call,
    not one a line: 10,000 lines of `logs` are a few milliseconds)."""
    joined = "\n".join(lines)
    if joined.count("\n") != max(len(lines) - 1, 0):  # a line holds a newline of its own
        return [sanitize(line) for line in lines]
    return _UNSAFE_IN_LINES.sub(_escape, joined).split("\n") if lines else []


def sanitize_stream(chunks: Iterable[bytes]) -> Iterator[str]:
    """Sanitized text from a byte stream (a session's logs), chunk by chunk.

    Bytes that are not UTF-8 show as `\\xNN`. CRLF (a terminal's line ending, in the
    logs of a session with a TTY) becomes a newline; a lone CR is escaped.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="backslashreplace")
    held = ""  # a CR at the end of a chunk waits to see whether an LF follows
    for chunk in chunks:
        text = held + decoder.decode(chunk)
        held = "\r" if text.endswith("\r") else ""
        text = text[:-1] if held else text
        if text:
            yield sanitize(text.replace("\r\n", "\n"), multiline=True)
    tail = held + decoder.decode(b"", final=True)
    if tail:
        yield sanitize(tail.replace("\r\n", "\n"), multiline=True)


def print_json(payload: dict[str, Any], compact: bool = False) -> None:
    """`compact` for long lists: indenting takes json's pure-Python encoder, ten times
    slower (seconds for an egress log of 30,000 requests)."""
    data = {"version": JSON_VERSION, **payload}
    text = json.dumps(data, separators=(",", ":")) if compact else json.dumps(data, indent=2)
    sys.stdout.write(text + "\n")


def note(message: str) -> None:
    sys.stderr.write(sanitize(message, multiline=True) + "\n")


def warn(message: str) -> None:
    sys.stderr.write(f"{colour('warning:', YELLOW)} {sanitize(message, multiline=True)}\n")


RED, GREEN, YELLOW = "31", "32", "33"


def colour(text: str, code: str, stream: TextIO | None = None) -> str:
    """`text` in an ANSI colour when `stream` (stderr by default) is a terminal and
    NO_COLOR is not set (https://no-color.org); else `text` as it is."""
    stream = sys.stderr if stream is None else stream
    if os.environ.get("NO_COLOR") or not stream.isatty():
        return text
    return f"\x1b[{code}m{text}\x1b[0m"


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A plain aligned table (no Rich import: `list` is on the hot path). Every cell is
    sanitized: cells often hold what a session wrote or asked for."""
    cells = [[str(h) for h in headers]] + [
        ["" if c is None else sanitize(c) for c in r] for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def checks_table(checks: list[dict[str, Any]]) -> str:
    """PASS/FAIL lines for stdout, the verdicts coloured there on a terminal."""
    rows = [("PASS" if c["ok"] else "FAIL", c["check"], c["detail"]) for c in checks]
    lines = table(rows, ("", "check", "detail")).splitlines()
    marks = {"PASS": colour("PASS", GREEN, sys.stdout), "FAIL": colour("FAIL", RED, sys.stdout)}
    return "\n".join(marks.get(line[:4], line[:4]) + line[4:] for line in lines)
