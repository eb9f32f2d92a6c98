"""Open a byte stream to an engine's API: a unix socket, TCP (with TLS), or SSH.

Every kind gives back a real socket, so the HTTP client and the hijacked exec streams
above it work the same on all of them.

SSH is Docker's own way: `ssh HOST docker system dial-stdio` on the far side, with the
engine's API on its stdin and stdout, which here are one end of a socket pair. OpenSSH
multiplexes every dial over one connection (`ControlMaster`, kept for a short while
after the last use), so a command that makes many requests pays for one handshake, and
the user's own ssh config (keys, ports, jump hosts) applies unchanged.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import ssl  # http.client, which every request uses, imports it anyway
import tempfile
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

from claude_cage.engine.endpoints import Endpoint
from claude_cage.errors import EngineStalled, EngineUnavailable

if TYPE_CHECKING:
    import subprocess

CONTROL_PERSIST_S = 30
_children: list[subprocess.Popen[bytes]] = []


def connect(
    endpoint: Endpoint, timeout: float | None, setting: str = "engine_call_timeout"
) -> socket.socket:
    """A connected stream to the engine's API, or EngineUnavailable (EngineStalled
    when it took no connection within `timeout`, which config `setting` sets)."""
    try:
        if endpoint.scheme == "unix":
            return _unix(endpoint.socket_path or "", timeout)
        if endpoint.scheme == "tcp":
            return _tcp(endpoint, timeout)
        return _ssh(endpoint, timeout)
    except (FileNotFoundError, ConnectionRefusedError, PermissionError) as exc:
        why = exc.strerror
    except TimeoutError:
        raise EngineStalled(endpoint.described, timeout or 0, setting) from None
    except OSError as exc:  # ssl.SSLError is one too, and so are ssh's failures
        why = str(exc)
    raise EngineUnavailable(f"cannot reach {endpoint.described} ({why})", endpoint.unreachable_hint)


def _unix(path: str, timeout: float | None) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return sock


def _tcp(endpoint: Endpoint, timeout: float | None) -> socket.socket:
    endpoint.require_tls()
    url = urllib.parse.urlsplit(endpoint.host)
    sock = socket.create_connection((url.hostname or "", url.port or 2375), timeout=timeout)
    if not endpoint.tls_dir:
        return sock
    tls = Path(endpoint.tls_dir)
    context = ssl.create_default_context(
        cafile=str(tls / "ca.pem") if endpoint.tls_verify else None
    )
    if not endpoint.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if (tls / "cert.pem").is_file():
        context.load_cert_chain(tls / "cert.pem", tls / "key.pem")
    return context.wrap_socket(sock, server_hostname=url.hostname)


def ssh_command(endpoint: Endpoint, timeout: float, *remote: str) -> list[str]:
    """The ssh command line that runs `remote` on the engine's host."""
    url = urllib.parse.urlsplit(endpoint.host)
    cmd = [
        "ssh",
        "-o", "BatchMode=yes",
        "-o", f"ConnectTimeout={max(1, round(timeout))}",
        "-o", "ControlMaster=auto",
        "-o", f"ControlPath={_control_dir()}/%C",
        "-o", f"ControlPersist={CONTROL_PERSIST_S}",
        "-T",
    ]  # fmt: skip
    if url.port:
        cmd += ["-p", str(url.port)]
    if url.username:
        cmd += ["-l", urllib.parse.unquote(url.username)]
    return [*cmd, "--", url.hostname or "", *remote]


def _ssh(endpoint: Endpoint, timeout: float | None) -> socket.socket:
    if shutil.which("ssh") is None:
        raise EngineUnavailable(
            f"{endpoint.described} is reached over SSH, and there is no ssh client",
            "install OpenSSH's client (Debian: apt-get install openssh-client)",
        )
    # start-up: subprocess (~4 ms) only for SSH, not on every local command's path
    import subprocess

    ours, theirs = socket.socketpair()
    try:
        child = subprocess.Popen(
            ssh_command(endpoint, timeout or 30, "docker", "system", "dial-stdio"),
            stdin=theirs.fileno(),
            stdout=theirs.fileno(),
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C meant for claude-cage does not cut the link
        )
    finally:
        theirs.close()
    _children.append(child)
    ours.settimeout(timeout)
    return ours


def _control_dir() -> str:
    """A private directory for ssh's multiplexing sockets (their paths must be short)."""
    path = Path(tempfile.gettempdir()) / f"claude-cage-ssh-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    if path.stat().st_uid != os.getuid() or path.stat().st_mode & 0o077:
        raise EngineUnavailable(
            f"{path} is not a private directory of this user", f"remove it: rm -rf {path}"
        )
    return str(path)


@atexit.register
def _reap() -> None:
    """ssh exits once its socket closes; collect it so no zombie stays behind."""
    if not _children:
        return
    import subprocess  # start-up: as in _ssh, which started them

    for child in _children:
        try:
            child.wait(timeout=2)
        except subprocess.TimeoutExpired:
            child.kill()
