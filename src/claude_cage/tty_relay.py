"""The user's terminal joined to a command's terminal in a session: the engine's exec
stream of a command run on a terminal of the engine's (`exec_attach` with `tty`), its
output copied through `terminal_filter` on the way to the user's.

The terminal paths (`attach`, `shell`, `exec -t`) talk to the engine's API themselves,
on any engine (the local socket, TCP/TLS or SSH: `engine/dial.py`): no docker CLI to
start, no pseudo-terminal of ours in between. The user's terminal is put in raw mode,
as the docker CLI would put it: every key goes to the command as typed (Ctrl-C, Ctrl-\\
and Ctrl-Z included), unchanged. The window size goes to the engine's terminal at the
start and on every SIGWINCH, from a thread of its own, so no engine call holds up the
screen or the keys.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import socket
import ssl  # http.client, which every engine call uses, imports it anyway
import struct
import termios
import threading
import time
import tty
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from claude_cage.terminal_filter import TerminalFilter

READ = 65536
HELD_INPUT = 1 << 20  # keys the engine has not taken yet: past this, stdin waits
RESIZE_TRIES = 10  # the engine takes a size once the exec's process runs
# What a command on the user's terminal may have switched on and left so, put back at
# its end (filtered runs): mouse reports and focus events (the terminal would then type
# escape sequences into the user's shell), bracketed paste (the shell turns it on again
# at its prompt), a hidden cursor, application cursor keys and keypad, and colours.
# Not the alternate screen or scroll region: putting those back moves the cursor.
MODES_RESET = (
    b"\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1005l\x1b[?1006l\x1b[?1015l\x1b[?1016l"
    b"\x1b[?1004l\x1b[?2004l\x1b[?25h\x1b[?1l\x1b>\x1b[0m"
)
# A stream with nothing to give or take right now: plain sockets and TLS ones alike.
NOT_NOW = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


def window_size(fd: int) -> tuple[int, int] | None:
    """(rows, columns) of the terminal `fd`; None when it is not one, or has no size."""
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return None
    return (rows, cols) if rows and cols else None


def size_source(stdin: int = 0, stdout: int = 1) -> int:
    """The descriptor whose window size the command's terminal follows."""
    return stdout if os.isatty(stdout) else stdin


class Sizer:
    """Gives the window size of `fd` to the engine's terminal, through `resize(rows,
    cols)` (False or an error: not taken yet), each time `changed` is called: in a
    thread, so a slow engine never holds up the relay."""

    def __init__(self, resize: Callable[[int, int], bool], fd: int) -> None:
        self._resize, self._fd = resize, fd
        self._wanted = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def changed(self) -> None:
        self._wanted.set()

    def close(self) -> None:
        self._done = True
        self._wanted.set()

    def _run(self) -> None:
        given: tuple[int, int] | None = None
        while True:
            self._wanted.wait()
            self._wanted.clear()
            size = window_size(self._fd)
            for attempt in range(RESIZE_TRIES):
                if self._done or size is None or size == given:
                    break
                try:
                    taken = self._resize(*size)
                except Exception:  # an engine that went away: the stream's end says so
                    taken = False
                if taken:
                    given = size
                    break
                time.sleep(0.01 * (attempt + 1))
            if self._done:
                return


@contextlib.contextmanager
def _raw(fd: int, wanted: bool) -> Iterator[None]:
    if not (wanted and os.isatty(fd)):
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSANOW)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def run(
    sock: socket.socket,
    resize: Callable[[int, int], bool],
    filtered: bool = True,
    forward_stdin: bool = True,
    stdin: int = 0,
    stdout: int = 1,
    started: Callable[[], None] = lambda: None,
    shown: Callable[[], None] = lambda: None,
) -> None:
    """Copy `stdin` to the stream (when `forward_stdin`) and the stream to `stdout`
    (through a TerminalFilter when `filtered`) until the command's terminal closes, or
    the user's is gone. `started` is called before the copying begins, `shown` once
    the command's first output is on the user's terminal."""
    sizer = Sizer(resize, size_source(stdin, stdout))
    sizer.changed()
    previous = signal.signal(signal.SIGWINCH, lambda _signum, _frame: sizer.changed())
    try:
        started()
        with _raw(stdin, forward_stdin):
            _relay(sock, stdin if forward_stdin else None, stdout, filtered, shown)
    finally:
        signal.signal(signal.SIGWINCH, previous)
        sizer.close()


def _receive(sock: socket.socket) -> bytes | None:
    """What the stream has now (None: nothing yet; b"": its end). A TLS stream's
    decrypted bytes are all taken: select() sees only those still encrypted."""
    chunks = []
    try:
        while chunk := sock.recv(READ):
            chunks.append(chunk)
            if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                return b"".join(chunks)
    except NOT_NOW:
        return b"".join(chunks) or None
    except OSError:  # reset: the engine is gone
        pass
    return b"".join(chunks)  # the end (after what came with it, if anything)


def _relay(
    sock: socket.socket,
    stdin: int | None,
    stdout: int,
    filtered: bool,
    shown: Callable[[], None] | None,
) -> None:
    # start-up: loaded once the command runs, while the engine starts it
    from claude_cage.terminal_filter import TerminalFilter

    screen: TerminalFilter | None = TerminalFilter() if filtered else None
    held = b""  # keys read, not yet taken by the engine
    sock.setblocking(False)
    ended = False
    while not ended:
        readers: list[socket.socket | int] = [sock]
        if stdin is not None and len(held) < HELD_INPUT:
            readers.append(stdin)
        ready, writable, _ = select.select(readers, [sock] if held else [], [])
        if sock in ready:
            data = _receive(sock)
            ended = data == b""
            if data:
                try:
                    _write_all(stdout, screen.feed(data) if screen else data)
                except OSError:  # the user's terminal is gone: the command's goes too
                    return
                if shown is not None:
                    shown()
                    shown = None
        if stdin is not None and stdin in ready:
            try:
                keys = os.read(stdin, READ)
            except OSError:  # the terminal is gone (hung up)
                keys = b""
            if keys:
                held += keys
            else:
                stdin = None
        if held and sock in writable:
            try:
                held = held[sock.send(held) :]
            except NOT_NOW:
                pass
            except OSError:  # the stream broke: its end is read next
                held, stdin = b"", None
    if screen is not None:
        with contextlib.suppress(OSError):
            _write_all(stdout, screen.finish() + MODES_RESET)
