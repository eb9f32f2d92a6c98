"""The text of a session's commits, checked for characters that act on a terminal.

`git log`, `git show`, tig, and every prompt that shows a branch's last commit print a
commit's author, committer and message as they are, so an escape sequence there would
reach the operator's terminal long after `fetch`. `fetch` and `merge` refuse a commit
whose headers or message hold a control character other than newline and tab (C0, DEL,
C1, also as raw bytes 0x80-0x9f that are not UTF-8) or an invisible character that
reorders text: the set `render.sanitize` escapes (tests/unit/test_commit_text.py holds
the two together). A commit is read in chunks, never whole: its size is the session's
choice.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

# What render.sanitize(multiline=True) escapes, plus the raw bytes 0x80-0x9f that are
# not UTF-8 (decoded with surrogateescape as U+DC80-U+DC9F): C1 controls in Latin-1.
UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\xad\u061c\u115f\u1160\u180e\u200b-\u200f\u2028-\u202e"
    "\u2060-\u2069\u3164\ufeff\uffa0\udc80-\udc9f\U000e0000-\U000e007f]"
)


@dataclass(frozen=True)
class Unsafe:
    commit: str
    field: str  # "message", "author", "committer" or the name of another header
    char: str  # the character, escaped: "\\x1b", "\\u202e"

    def __str__(self) -> str:
        return f"commit {self.commit[:12]} has {self.char} in its {self.field}"


def escaped(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


class Scanner:
    """Feed one raw commit object (`git cat-file --batch`) in chunks; `feed` returns
    (field, escaped character) for the first unsafe character, else None."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        self._in_message = False
        self._at_line_start = True
        self._line = ""  # the start of the current header line, for its name
        self._field = "header"

    def feed(self, data: bytes, final: bool = False) -> tuple[str, str] | None:
        text = self._decoder.decode(data, final)
        while text and not self._in_message:
            line, newline, rest = text.partition("\n")
            if self._at_line_start and not line and newline:
                self._in_message = True  # the empty line: the message follows
                text = rest
                break
            if len(self._line) < 64:
                self._line += line[: 64 - len(self._line)]
            if self._line and not self._line.startswith(" "):  # not a continuation line
                self._field = self._line.split(" ", 1)[0] or "header"
            bad = UNSAFE.search(line)
            if bad:
                return self._field, escaped(bad.group())
            self._at_line_start = bool(newline)
            if newline:
                self._line = ""
            text = rest
        if self._in_message and text:
            bad = UNSAFE.search(text)
            if bad:
                return "message", escaped(bad.group())
        return None
