"""The relay between the user's terminal and a command's terminal in a session, with a
local command on a pseudo-terminal and a socket pair in the engine's place: keys reach
it as typed, its output comes back filtered (or not, raw), the window size follows the
terminal (through the engine's resize call, retried until the engine takes it), and
the relay ends with the command's terminal."""

from __future__ import annotations

import fcntl
import os
import socket
import ssl
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest

from claude_cage import tty_relay
from tests.integration.terminal import Terminal

# A command that prints a clipboard write, reads three keys in raw mode, and reports the
# window size once it changes; then it leaves mouse reports on and the cursor hidden.
COMMAND = (
    "printf 'before\\033]52;c;QQ==\\007after\\n'; stty raw -echo; echo ready; "
    "head -c 3 | od -An -tx1; trap 'stty size; printf \"$MODES\"; exit 7' WINCH; "
    "echo waiting; "
    "while :; do sleep 0.05; done"
)
# The engine's part: the command on a terminal of its own, copied to and from one end
# of a socket pair; a resize is refused twice (the exec has not started), then taken.
# The relay gets the other end. Exits with the command's exit code.
RELAY = """
import fcntl, os, pty, socket, struct, subprocess, sys, termios, threading
from claude_cage import tty_relay

master, slave = pty.openpty()
def own_terminal():
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
proc = subprocess.Popen(["sh", "-c", sys.argv[1]], stdin=slave, stdout=slave, stderr=slave,
                        preexec_fn=own_terminal)
os.close(slave)
ours, engine = socket.socketpair()

def output():
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            data = b""
        if not data:
            engine.shutdown(socket.SHUT_RDWR)
            return
        engine.sendall(data)

def keys():
    while data := engine.recv(65536):
        os.write(master, data)

threading.Thread(target=output, daemon=True).start()
threading.Thread(target=keys, daemon=True).start()
refused = []

def resize(rows, cols):
    if len(refused) < 2:
        refused.append((rows, cols))
        return False
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    return True

tty_relay.run(ours, resize, sys.argv[2] == "f")
sys.exit(proc.wait())
"""


def drive(filtered: bool) -> bytes:
    """Run COMMAND through the relay on a terminal of 30x100: type three keys, resize to
    33x91; all it wrote to the terminal."""
    argv = [sys.executable, "-c", RELAY, COMMAND, "f" if filtered else "r"]
    env = {**os.environ, "MODES": "\\033[?1003h\\033[?25l"}
    terminal = Terminal(argv, env, rows=30, cols=100)
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


def test_keys_in_filtered_output_out_size_and_end_passed_on() -> None:
    out = drive(filtered=True)
    assert b"beforeafter" in out and b"\x1b]52" not in out
    # what the command left on is put back at its end
    assert out.rindex(b"\x1b[?1003l") > out.rindex(b"\x1b[?1003h")
    assert out.rindex(b"\x1b[?25h") > out.rindex(b"\x1b[?25l")


def test_raw_passes_the_output_as_it_is() -> None:
    out = drive(filtered=False)
    assert b"before\x1b]52;c;QQ==\x07after" in out
    assert out.endswith(b"\x1b[?1003h\x1b[?25l"), out[-40:]


def test_raw_terminal_without_a_terminal_is_refused(tmp_path: Path) -> None:
    env = {**os.environ, "CAGE_DATA_DIR": str(tmp_path / "d"), "CAGE_CONFIG_DIR": str(tmp_path)}
    argv = [sys.executable, "-m", "claude_cage", "exec", "--raw-terminal", "web", "--", "true"]
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("error: --raw-terminal goes with -t")


def test_a_tls_stream_is_relayed_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A far engine over TCP with TLS (engine/dial.py): the relay reads a TLS socket
    without blocking, and takes every byte already decrypted (select() sees only the
    socket's), so nothing waits in the TLS layer for more to arrive."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-subj", "/CN=engine.test", "-addext", "subjectAltName=DNS:engine.test",
         "-days", "1", "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
        capture_output=True, check=True,
    )  # fmt: skip
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    client = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    monkeypatch.setattr(tty_relay, "READ", 1000)  # less than a record: the rest is held
    ours, theirs = socket.socketpair()
    payload = os.urandom(100_000).hex().encode()
    complete = threading.Event()  # everything reached the user's terminal
    waited: list[bool] = []

    def engine() -> None:
        with server.wrap_socket(theirs, server_side=True) as stream:
            for i in range(0, len(payload), 7_000):
                stream.sendall(payload[i : i + 7_000])
            waited.append(complete.wait(10))  # the stream stays open meanwhile
            stream.shutdown(socket.SHUT_RDWR)  # as an engine goes: no close_notify

    read, write = os.pipe()
    received = bytearray()

    def terminal() -> None:
        while chunk := os.read(read, 65536):
            received.extend(chunk)
            if len(received) >= len(payload):
                complete.set()

    threads = [threading.Thread(target=engine), threading.Thread(target=terminal)]
    for thread in threads:
        thread.start()
    stream = client.wrap_socket(ours, server_hostname="engine.test")
    tty_relay.run(stream, lambda rows, cols: True, filtered=False, forward_stdin=False,
                  stdin=write, stdout=write)  # fmt: skip
    os.close(write)
    for thread in threads:
        thread.join(30)
    os.close(read)
    stream.close()
    assert waited == [True] and bytes(received) == payload
