"""A person at a terminal, for the tests: a command on a pseudo-terminal of its own,
with keys typed while it runs and its screen output read as it comes."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time

ESCAPES = re.compile(
    r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[()][0-9A-Za-z]|[78=>])"
)
DETACH = b"\x1c"  # Ctrl-\


def plain(raw: bytes) -> str:
    """What the screen output says, without escape sequences and with spaces collapsed."""
    return " ".join(ESCAPES.sub(" ", raw.decode(errors="replace")).split())


def _own_terminal() -> None:
    """In the child: a session of its own, with the pseudo-terminal as its controlling
    terminal (as a login shell has), so job control and SIGHUP work as for a person."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    def __init__(
        self, args: list[str], env: dict[str, str], rows: int = 40, cols: int = 120
    ) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.proc = subprocess.Popen(
            args, stdin=slave, stdout=slave, stderr=slave, env=env, preexec_fn=_own_terminal
        )
        os.close(slave)
        self.output = b""
        self.began = time.monotonic()

    def _read(self, wait: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], wait)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: every writer of the terminal is gone
            return False
        self.output += chunk
        return bool(chunk)

    def expect(self, text: str, timeout: float = 60, since: int = 0) -> str:
        """Read until `text` shows (escape sequences aside) in the output after byte
        `since`; return that output."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in plain(self.output[since:]):
                return plain(self.output[since:])
            if not self._read(0.1) and self.proc.poll() is not None:
                break
        raise AssertionError(f"{text!r} never showed; the screen said: {plain(self.output)!r}")

    def type(self, keys: bytes) -> int:
        """Type keys; returns the output position before them (for `expect(since=...)`)."""
        mark = len(self.output)
        os.write(self.master, keys)
        return mark

    def wait(self, timeout: float = 30) -> int:
        """Read until the command exits, then what it wrote last; its exit code."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.1)
        code = self.proc.wait(timeout=max(deadline - time.monotonic(), 1))
        self.drain()
        return code

    def drain(self) -> None:
        """Read what the command wrote and nobody read yet, once it is gone: until no
        writer is left, or 0.2 s without output."""
        for _ in range(1000):
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if not ready or not self._read(0):
                return

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
