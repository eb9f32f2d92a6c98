"""The pseudo-terminal between the terminal paths' docker CLI and the user's terminal,
with a local command in the docker CLI's place: keys reach it as typed, its output
comes back filtered (or not, raw), the window size follows the terminal, and its exit
code comes back."""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import sys
import termios
from pathlib import Path

from tests.integration.terminal import Terminal

# A command that prints a clipboard write, reads three keys in raw mode, and reports the
# window size once it changes.
COMMAND = (
    "printf 'before\\033]52;c;QQ==\\007after\\n'; stty raw -echo; echo ready; "
    "head -c 3 | od -An -tx1; trap 'stty size; exit 7' WINCH; echo waiting; "
    "while :; do sleep 0.05; done"
)
RELAY = (
    "import os, sys\n"
    "from claude_cage import pty_relay\n"
    "sys.exit(pty_relay.run(['sh', '-c', sys.argv[1]], dict(os.environ), sys.argv[2] == 'f'))\n"
)


def drive(filtered: bool) -> bytes:
    """Run COMMAND through the relay on a terminal of 30x100: type three keys, resize to
    33x91; all it wrote to the terminal."""
    argv = [sys.executable, "-c", RELAY, COMMAND, "f" if filtered else "r"]
    terminal = Terminal(argv, dict(os.environ), rows=30, cols=100)
    try:
        terminal.expect("ready")
        terminal.type(b"\x03\x1c\x1a")  # Ctrl-C, Ctrl-\\ and Ctrl-Z: bytes, not signals
        terminal.expect("03 1c 1a")
        terminal.expect("waiting")
        fcntl.ioctl(terminal.master, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 91, 0, 0))
        terminal.expect("33 91")
        assert terminal.wait() == 7
    finally:
        terminal.close()
    return terminal.output


def test_keys_in_filtered_output_out_size_and_exit_code_passed_on() -> None:
    out = drive(filtered=True)
    assert b"beforeafter" in out and b"\x1b]52" not in out


def test_raw_passes_the_output_as_it_is() -> None:
    assert b"before\x1b]52;c;QQ==\x07after" in drive(filtered=False)


def test_raw_terminal_without_a_terminal_is_refused(tmp_path: Path) -> None:
    env = {**os.environ, "CAGE_DATA_DIR": str(tmp_path / "d"), "CAGE_CONFIG_DIR": str(tmp_path)}
    argv = [sys.executable, "-m", "claude_cage", "exec", "--raw-terminal", "web", "--", "true"]
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("error: --raw-terminal goes with -t")
