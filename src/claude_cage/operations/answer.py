"""A bounded read of what a command in a session prints: the session is untrusted, so
the host reads at most `cap` bytes (stdout and stderr together) for at most `limit`
seconds, and the command itself is killed (`timeout -s KILL`) when it runs longer."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator

from claude_cage.engine.api import EngineAPI
from claude_cage.engine.transport import frames
from claude_cage.errors import CageError


class NoAnswer(CageError):
    """The session's answer was too big, too slow or broke off."""


@contextlib.contextmanager
def _reading(sock: socket.socket, limit: int) -> Iterator[None]:
    """The session's answer read within `limit` seconds of silence: a timeout or a
    broken stream is NoAnswer, and the socket is closed after, whatever happened."""
    try:
        sock.settimeout(limit)
        yield
    except TimeoutError:
        raise NoAnswer(f"the session did not answer within {limit} s") from None
    except OSError as exc:
        raise NoAnswer(f"the session's answer broke off ({exc})") from None
    finally:
        with contextlib.suppress(OSError):
            sock.close()


def ask(
    engine: EngineAPI,
    container: str,
    cmd: list[str],
    *,
    cap: int,
    limit: int,
    env: dict[str, str] | None = None,
) -> tuple[int, bytes, bytes]:
    """Run cmd in the container: its exit code, stdout and stderr, read within the bounds."""
    deadline = time.monotonic() + limit
    limited = ["timeout", "-s", "KILL", str(limit), *cmd]
    exec_id, sock = engine.exec_attach(container, limited, env=env)
    out, err, size = [], [], 0
    with _reading(sock, limit):
        for chunk_out, chunk_err in frames(sock):
            size += len(chunk_out or b"") + len(chunk_err or b"")
            if size > cap:
                raise NoAnswer(f"the session sent more than {cap >> 10} KiB")
            if time.monotonic() > deadline:
                raise NoAnswer(f"the session did not answer within {limit} s")
            out.append(chunk_out or b"")
            err.append(chunk_err or b"")
    return engine.exit_code(exec_id), b"".join(out), b"".join(err)


PROBE_CAP = 64 << 10  # bytes: what a check of `status` prints is a few lines
PROBE_TIME = 10  # seconds


def probe(
    engine: EngineAPI, container: str, cmd: list[str], *, limit: int | None = None
) -> tuple[int, bytes]:
    """A check run inside the session, as `ask` runs it (at most PROBE_CAP bytes, within
    `limit` seconds, PROBE_TIME unless given): its exit code, and its stdout then its
    stderr. A process of the session can write into a probe's output (/proc/PID/fd/1)
    or stop it: unbounded, it could hold `status` up for ever or fill the host's memory."""
    cap, limit = PROBE_CAP, PROBE_TIME if limit is None else limit
    code, out, err = ask(engine, container, cmd, cap=cap, limit=limit)
    return code, out + err


def exchange(
    engine: EngineAPI,
    container: str,
    cmd: list[str],
    reply: Callable[[bytes], bytes | None],
    *,
    cap: int,
    limit: int,
    patience: float,
) -> tuple[int, bytes, bytes]:
    """Run cmd in the container with its stdin open: `reply` sees its stdout as it grows
    and returns None until it has what it needs, then what the command gets on stdin
    (closed after it). That first answer is read as `ask` reads (the caller bounds the
    command itself: `timeout -s KILL`); what follows, up to `cap` bytes in all with
    `patience` seconds of silence at most. Its exit code, stdout and stderr."""
    deadline = time.monotonic() + limit
    exec_id, sock = engine.exec_attach(container, cmd, stdin=True)
    out, err = bytearray(), bytearray()
    answered = False
    with _reading(sock, limit):
        for chunk_out, chunk_err in frames(sock):
            out += chunk_out or b""
            err += chunk_err or b""
            if len(out) + len(err) > cap:
                raise NoAnswer(f"the session sent more than {cap >> 10} KiB")
            if answered:
                continue
            if time.monotonic() > deadline:
                raise NoAnswer(f"the session did not answer within {limit} s")
            given = reply(bytes(out))
            if given is not None:
                answered = True
                sock.sendall(given)
                sock.shutdown(socket.SHUT_WR)
                sock.settimeout(patience)
    return engine.exit_code(exec_id), bytes(out), bytes(err)
