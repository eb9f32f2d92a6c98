"""What a session's output may not do to the operator's terminal, on its way there.

`attach`, `shell` and `exec -t` copy what the session draws to the operator's terminal
through `TerminalFilter` (unless `--raw-terminal`). Whatever the session's tmux is set
to pass on (an agent can turn on its own `set-clipboard` and `allow-passthrough`), these
never reach the terminal:

- OSC strings (`ESC ]`), except the colour ones tmux itself sends: OSC 4, 10, 11, 12 and
  their resets 104, 110, 111, 112. Dropped whole: OSC 52 (clipboard writes, and reads
  where a terminal answers them), titles (0, 1, 2), working directory (7), hyperlinks
  (8), notifications and progress (9, 99, 777), iTerm2's 1337, kitty's 5113 and 5522,
  and every number nobody has thought of yet.
- DCS strings (`ESC P`), tmux's passthrough (`ESC P tmux; ... ESC \\`) among them,
  except tmux's synchronized-update markers (`ESC P = 1 s ESC \\`, `= 2 s`).
- SOS, PM and APC strings (`ESC X`, `ESC ^`, `ESC _`; APC carries kitty's graphics,
  which can make a terminal read the operator's files).

Each is also caught in its 8-bit form: the C1 character as UTF-8 (U+009D is `C2 9D`),
and as a single byte that is not part of a UTF-8 character (what a terminal in 8-bit
mode reads); and after ESC in xterm's mirrored form, the introducer's character with
its high bit set (`ESC Ý` for `ESC ]`, as U+00DD or a stray DD byte). Text, CSI and
every other escape sequence pass byte for byte, except an ESC another ESC follows,
which is dropped as a terminal drops it (emitted, it could meet the text after a
dropped string and begin a string of its own), and C0 controls between ESC and what
follows it, which go before the ESC (a terminal runs them there all the same, and
nothing held can grow). A dropped
string ends where a terminal would end it (BEL for OSC, ST, CAN, SUB, or ESC and
anything but ESC or `\\`); one that never ends is dropped for `LIMIT` characters, then
the output shows again. Sequences may be split across reads: the filter keeps the
little state it needs between chunks.
"""

from __future__ import annotations

import codecs
import re

LIMIT = 64 * 1024  # characters of an unterminated string dropped before output resumes
ALLOWED_OSC = frozenset({"4", "10", "11", "12", "104", "110", "111", "112"})
SYNC = ("=1s\x1b\\", "=2s\x1b\\")  # tmux's DCS synchronized-update markers, whole

ESC, BEL, CAN, SUB = "\x1b", "\x07", "\x18", "\x1a"
ST = "\x1b\\"
# C1 string introducers (DCS, SOS, OSC, PM, APC) and ST: as characters (UTF-8), and as
# stray bytes, which surrogateescape decodes to U+DC80 + the byte.
_INTRODUCERS = "\x90\x98\x9d\x9e\x9f\udc90\udc98\udc9d\udc9e\udc9f"
_C1_ST = "\x9c\udc9c"
_C1 = "\x80-\x9f\udc80-\udc9f"
# After ESC, xterm reads the right half of Latin-1 as the left (its escape table is
# mirrored): ESC Ý (U+00DD, or a stray DD byte) begins an OSC as ESC ] does; likewise
# Ð (DCS), Ø (SOS), Þ (PM) and ß (APC).
_GR_INTRODUCERS = "\xd0\xd8\xdd\xde\xdf\udcd0\udcd8\udcdd\udcde\udcdf"
_GR = "\xd0\xd8\xdd-\xdf\udcd0\udcd8\udcdd-\udcdf"
# Where plain copying stops: ESC followed by something that could start a string (or
# by nothing yet), or an 8-bit introducer. ESC [ and the like go through untouched.
# (Two searches, each of which the regex engine runs fast: a literal first, a range.)
_ESC_STOP = re.compile(f"\x1b[\\]PX^_\x00-\x1f\x7f{_C1}{_GR}]")
_C1_STOP = re.compile("[\x90\x98\x9d-\x9f\udc90\udc98\udc9d-\udc9f]")
_DROP_STOP = re.compile(f"[\x07\x1b\x18\x1a{_C1_ST}]")
_OSC_TEXT = re.compile("[\x20-\x7e]*")
_C1_CHAR = re.compile(f"[{_C1}]")

GROUND, ESCAPE, OSC_NUMBER, OSC_PASS, OSC_PASS_ESC, DCS_HEAD, DROP, DROP_ESC = range(8)


class TerminalFilter:
    """Feed it the session's output chunk by chunk; it returns what may be shown."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        self._state = GROUND
        self._head = ""  # OSC_NUMBER: the digits; DCS_HEAD: the string so far
        self._bel_ends = False  # DROP: an OSC (BEL ends it) or another string (it does not)
        self._count = 0  # DROP, OSC_PASS: characters so far

    def feed(self, data: bytes) -> bytes:
        text = self._decoder.decode(data)
        return self._run(text).encode("utf-8", "surrogateescape") if text else b""

    def finish(self) -> bytes:
        """The end of the stream: what is left, and the terminal back in its ground
        state (an allowed OSC closed; a lone ESC or an unfinished string dropped)."""
        out = self._run(self._decoder.decode(b"", final=True))
        if self._state in (OSC_PASS, OSC_PASS_ESC):
            out += ST
        self._state, self._head = GROUND, ""
        return out.encode("utf-8", "surrogateescape")

    def _run(self, text: str) -> str:
        out: list[str] = []
        i, n = 0, len(text)
        while i < n:
            state = self._state
            if state == GROUND:
                esc = _ESC_STOP.search(text, i)
                end = esc.start() if esc else n - 1 if text.endswith(ESC) else n
                c1 = _C1_STOP.search(text, i, end)
                end = c1.start() if c1 else end
                out.append(text[i:end])
                i = end
                if i == n:
                    break
                c = text[i]
                i += 1
                if c == ESC:
                    self._state = ESCAPE
                else:
                    self._c1_string(c)
                continue
            if state == DROP:
                stop = _DROP_STOP.search(text, i)
                end = n if stop is None else stop.start()
                if self._count + end - i > LIMIT:  # never ends: show the output again
                    i += LIMIT - self._count
                    self._state = GROUND
                    continue
                self._count += end - i
                i = end
                if stop is None:
                    break
            if state == OSC_PASS:
                run = _OSC_TEXT.match(text, i)
                assert run is not None  # `*` matches the empty string too
                if self._count + run.end() - i > LIMIT:
                    out.append(ST)
                    self._state = GROUND
                    continue
                out.append(run.group())
                self._count += run.end() - i
                i = run.end()
                if i == n:
                    break
            c = text[i]
            i += 1
            self._step(c, out)
        return "".join(out)

    def _string(self, kind: str) -> None:
        """After ESC and `kind` (or its C1 form): start reading a string."""
        if kind == "]":
            self._state, self._head = OSC_NUMBER, ""
        elif kind == "P":
            self._state, self._head = DCS_HEAD, ""
        else:
            self._drop(bel_ends=False)

    def _c1_string(self, c: str) -> None:
        """An 8-bit introducer: whatever string it begins is dropped."""
        self._drop(bel_ends=c in "\x9d\udc9d")

    def _drop(self, bel_ends: bool) -> None:
        self._state, self._bel_ends, self._count = DROP, bel_ends, 0

    def _step(self, c: str, out: list[str]) -> None:
        """One character in any state but GROUND (or where a run stopped)."""
        state = self._state
        if state == ESCAPE:
            if c in "]PX^_":  # the ESC goes
                self._string(c)
            elif c == ESC:  # a terminal drops the first ESC too; it must not meet what
                pass  # follows a string the second begins: the second is held instead
            elif c in _INTRODUCERS:  # the ESC must not meet what follows the string
                self._c1_string(c)
            elif c in _GR_INTRODUCERS:  # xterm's ESC Ý: a string, dropped like its C1 form
                self._drop(bel_ends=c in "\xdd\udcdd")
            elif (c < " " and c not in (CAN, SUB)) or c == "\x7f" or _C1_CHAR.match(c):
                # A terminal runs a C0 control (ignores DEL) and stays after ESC; xterm
                # ignores a C1 character (U+0085) there, so ESC U+0085 ] is its OSC. The
                # control can go now, before the ESC (nothing held grows without bound).
                out.append(c)
            else:
                out.append(ESC + c)
                self._state = GROUND
        elif state == OSC_NUMBER:
            if c.isascii() and c.isdigit() and len(self._head) < 6:
                self._head += c
            elif self._head in ALLOWED_OSC and (c == ";" or c in (BEL, ESC, CAN, SUB, *_C1_ST)):
                out.append("\x1b]" + self._head)
                self._state, self._count = OSC_PASS, 0
                if c == ";":
                    out.append(c)
                else:
                    self._step(c, out)
            else:
                self._drop(bel_ends=True)
                self._dropping(c, out)
        elif state == OSC_PASS:  # the run of printable ASCII stopped at c
            if c == ESC:
                self._state = OSC_PASS_ESC
            elif c in (BEL, CAN, SUB):
                out.append(c)
                self._state = GROUND
            else:  # C1 ST becomes ESC \; anything else ends the string first
                out.append(ST)
                self._state = GROUND
                if c not in _C1_ST:
                    self._run_one(c, out)
        elif state == OSC_PASS_ESC:
            out.append(ST)
            if c == "\\":
                self._state = GROUND
            else:
                self._state = ESCAPE
                self._step(c, out)
        elif state == DCS_HEAD:
            head = self._head + c
            if head in SYNC:
                out.append("\x1bP" + head)
                self._state = GROUND
            elif any(s.startswith(head) for s in SYNC):
                self._head = head
            else:
                ended_on_esc = self._head.endswith(ESC)
                self._drop(bel_ends=False)
                if ended_on_esc:
                    self._state = DROP_ESC
                self._dropping(c, out)
        elif state == DROP:  # the search stopped at c
            if c == ESC:
                self._state = DROP_ESC
            elif c != BEL or self._bel_ends:
                self._state = GROUND  # ST, CAN, SUB, or BEL ending an OSC
            else:
                self._count += 1
        elif state == DROP_ESC:
            if c == "\\":
                self._state = GROUND
            elif c == ESC:  # tmux's passthrough doubles every ESC it wraps
                self._state = DROP
            else:  # a terminal would end the string here: ESC c begins anew
                self._state = ESCAPE
                self._step(c, out)
        else:  # GROUND, reached from another state's last character
            self._run_one(c, out)

    def _dropping(self, c: str, out: list[str]) -> None:
        """One character of a string being dropped (DROP or DROP_ESC)."""
        if self._state == DROP_ESC or _DROP_STOP.match(c):
            self._step(c, out)
        else:
            self._count += 1

    def _run_one(self, c: str, out: list[str]) -> None:
        """One character in GROUND."""
        self._state = GROUND
        if c == ESC:
            self._state = ESCAPE
        elif c in _INTRODUCERS:
            self._c1_string(c)
        else:
            out.append(c)
