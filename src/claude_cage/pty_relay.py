"""A command on a pseudo-terminal of claude-cage's own, between it and the user's
terminal, so that what it prints reaches the terminal through `terminal_filter`.

The terminal paths (`attach`, `shell`, `exec -t`) run the docker CLI's `exec -t` here.
The user's terminal is put in raw mode, as the docker CLI would put it: every key goes
to the command as typed (Ctrl-C, Ctrl-\\ and Ctrl-Z included), unchanged. The window
size is copied to the pseudo-terminal at the start and on every SIGWINCH, which is
then passed on to the command. The command's exit code is returned as `subprocess`
gives it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import signal
import subprocess
import termios
import tty
from collections.abc import Callable, Iterator

from claude_cage.terminal_filter import TerminalFilter

READ = 65536
HELD_INPUT = 1 << 20  # keys not yet taken by the command: past this, stdin waits


def _copy_size(source: int, target: int) -> None:
    with contextlib.suppress(OSError):  # not a terminal (output to a pipe): no size
        size = fcntl.ioctl(source, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(target, termios.TIOCSWINSZ, size)


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
    argv: list[str],
    env: dict[str, str],
    filtered: bool = True,
    forward_stdin: bool = True,
    stdin: int = 0,
    stdout: int = 1,
    started: Callable[[], None] = lambda: None,
) -> int:
    """Run `argv` on a new pseudo-terminal; copy `stdin` to it (when `forward_stdin`)
    and its output to `stdout` (through a TerminalFilter when `filtered`). `started`
    is called once the command runs, before the copying begins."""
    master, slave = os.openpty()
    size_from = stdout if os.isatty(stdout) else stdin
    _copy_size(size_from, master)
    try:
        # A session of its own, but no controlling terminal: that would take a
        # preexec_fn, and with it a full fork (7 ms here, against 1 for posix_spawn).
        # So the relay passes SIGWINCH on itself, and ends the command if it stops early.
        proc = subprocess.Popen(argv, stdin=slave, stdout=slave, env=env, start_new_session=True)
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)

    def resized(_signum: int, _frame: object) -> None:
        _copy_size(size_from, master)
        if proc.poll() is None:
            proc.send_signal(signal.SIGWINCH)

    previous = signal.signal(signal.SIGWINCH, resized)
    try:
        started()
        with _raw(stdin, forward_stdin):
            _relay(master, stdin if forward_stdin else None, stdout, filtered)
    finally:
        signal.signal(signal.SIGWINCH, previous)
        os.close(master)
        if proc.poll() is None:  # the relay stopped first (interrupted, terminal gone)
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return proc.returncode


def _relay(master: int, stdin: int | None, stdout: int, filtered: bool) -> None:
    """Copy until the command's side of the pseudo-terminal is closed, or the user's
    terminal is gone."""
    screen = TerminalFilter() if filtered else None
    held = b""  # keys read, not yet written to the pseudo-terminal
    os.set_blocking(master, False)
    while True:
        readers = [master]
        if stdin is not None and len(held) < HELD_INPUT:
            readers.append(stdin)
        ready, writable, _ = select.select(readers, [master] if held else [], [])
        if master in ready:
            try:
                data = os.read(master, READ)
            except BlockingIOError:
                data = None
            except OSError as exc:  # EIO: every holder of the other side is gone
                if exc.errno != errno.EIO:
                    raise
                data = b""
            if data == b"":
                break
            if data:
                try:
                    _write_all(stdout, screen.feed(data) if screen else data)
                except OSError:  # the user's terminal is gone: the command's goes too
                    return
        if stdin is not None and stdin in ready:
            try:
                keys = os.read(stdin, READ)
            except OSError:  # the terminal is gone (hung up)
                keys = b""
            if keys:
                held += keys
            else:
                stdin = None
        if held and master in writable:
            with contextlib.suppress(BlockingIOError):
                held = held[os.write(master, held) :]
    if screen is not None:
        with contextlib.suppress(OSError):
            _write_all(stdout, screen.finish())
