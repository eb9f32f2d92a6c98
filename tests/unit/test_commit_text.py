"""The check of a session's commit text: every field, any chunking, and the same set of
characters render.sanitize escapes (newline and tab apart)."""

from __future__ import annotations

import pytest

from claude_cage import commit_text, render

HEAD = (
    b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n"
    b"author A U Thor <a@example.invalid> 0 +0000\n"
    b"committer C O Mitter <c@example.invalid> 0 +0000\n"
)


def scan(raw: bytes, size: int = 1 << 16) -> tuple[str, str] | None:
    scanner = commit_text.Scanner()
    for at in range(0, len(raw), size):
        found = scanner.feed(raw[at : at + size], final=at + size >= len(raw))
        if found:
            return found
    return None


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1 << 16])
@pytest.mark.parametrize(
    ("raw", "found"),
    [
        (HEAD + b"\nsubject\n\n\tbody with a tab\n", None),
        (HEAD + b"\nfix\x1b]52;c;aGk=\x07\n", ("message", "\\x1b")),
        (HEAD.replace(b"A U", b"A\x1b[2JU") + b"\nok\n", ("author", "\\x1b")),
        (HEAD.replace(b"C O", b"C\rO") + b"\nok\n", ("committer", "\\x0d")),
        (HEAD + b"\nrtl \xe2\x80\xae override\n", ("message", "\\u202e")),
        (HEAD + b"\nutf-8 csi \xc2\x9b2J\n", ("message", "\\x9b")),
        (HEAD + b"\nraw csi \x9b2J\n", ("message", "\\x9b")),
        (HEAD + b"encoding ISO-8859-1\n\ncaf\xe9\n", None),
        (HEAD + b"gpgsig -----BEGIN\n \x1b[31m\n -----END\n\nok\n", ("gpgsig", "\\x1b")),
    ],
)
def test_the_first_unsafe_character_and_its_field(
    raw: bytes, found: tuple[str, str] | None, size: int
) -> None:
    assert scan(raw, size) == found


def test_the_set_is_what_render_escapes_but_newline_and_tab() -> None:
    for code in [*range(0x10000), *range(0xE0000, 0xE0100)]:
        char = chr(code)
        if 0xD800 <= code <= 0xDFFF:
            continue
        unsafe = bool(commit_text.UNSAFE.match(char))
        assert unsafe == (render.sanitize(char, multiline=True) != char), hex(code)


def test_the_message_names_the_commit() -> None:
    unsafe = commit_text.Unsafe("a" * 40, "message", "\\x1b")
    assert str(unsafe) == "commit aaaaaaaaaaaa has \\x1b in its message"
