"""How requests reach a Docker engine, and how its answers become our errors.

Container lifecycle, exec and queries are plain requests to the engine's HTTP API with
`http.client`: importing the Docker SDK alone costs more than a whole `list` and a third
of a `start`, and these calls are simple: one JSON body, one answer. Builds, pulls,
imports and log streams go through the Docker SDK's client (`Transport.client`, made on
first use), which knows the streaming formats and the build context.

Both reach any engine: the local socket, or a far one over SSH or TCP (`endpoints.py`
names them, `dial.py` opens the stream, so the raw requests and hijacked exec streams
are the same on all of them). Every failure becomes a claude-cage error with a hint
(errors.py): `error_for` is the one place that reads a failed answer, and the error
keeps its HTTP status. No request body (which may hold settings) is ever quoted in one.

Every request has a deadline: an answer that does not come within the engine's bound
(config `engine_call_timeout`; `engine_timeout` for `list`) is EngineStalled, and the
engine is then taken as stalled for the rest of the command, so its later calls fail
at once instead of each waiting out the bound again. After Ctrl-C, the calls left share
one second (interrupt.py).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import struct
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from claude_cage import interrupt
from claude_cage.engine import dial
from claude_cage.engine.endpoints import Endpoint
from claude_cage.errors import (
    CageError,
    EngineConflict,
    EngineError,
    EngineNotFound,
    EngineRefusedSetting,
    EngineStalled,
    EngineUnavailable,
    ImageMissing,
    PortAllocated,
)

# Engines that did not answer in time, by address: asked again within the same command,
# they fail at once (a command that carries on after one failed call must not wait out
# the bound again for each of the others).
_stalled: dict[str, EngineStalled] = {}


class Connection(http.client.HTTPConnection):
    """HTTP over whatever stream reaches the engine (dial.py)."""

    def __init__(
        self, endpoint: Endpoint, timeout: float | None, setting: str = "engine_call_timeout"
    ) -> None:
        super().__init__("localhost", timeout=interrupt.bound(timeout))
        self._endpoint = endpoint
        self._setting = setting

    def connect(self) -> None:
        self.sock = dial.connect(self._endpoint, self.timeout, self._setting)


def stalled(endpoint: Endpoint, timeout: float | None, setting: str) -> EngineUnavailable:
    """The error for an engine that did not answer in time; it is remembered (unless
    the time that ran out was what an interrupt left: the engine may be fine)."""
    if interrupt.bound(None) is not None:
        return EngineUnavailable(f"interrupted while asking {endpoint.described}")
    error = EngineStalled(endpoint.described, timeout or 0, setting)
    _stalled[endpoint.host] = error
    return error


def check_not_stalled(endpoint: Endpoint) -> None:
    if endpoint.host in _stalled:
        raise _stalled[endpoint.host]


def sdk_error(exc: Exception) -> CageError:
    """Map an SDK error to ours. The message never includes request bodies."""
    import docker.errors  # start-up: the SDK costs ~80 ms; only SDK calls get here

    if isinstance(exc, docker.errors.ImageNotFound):
        return ImageMissing(str(getattr(exc, "explanation", "") or exc))
    if isinstance(exc, docker.errors.APIError):
        return error_for(exc.status_code or 500, str(exc.explanation or exc))
    if isinstance(exc, docker.errors.DockerException):
        return EngineUnavailable(f"cannot reach the Docker engine ({short(exc)})")
    return EngineError(str(exc))


# Podman's causes for an object that is not there. Not "no such file or directory": a
# file on the host (a seccomp profile, a bind mount's source) that a create or a start
# could not open, which is a refusal, not an absent object.
REMOVED = frozenset(
    {"no such container", "no such volume", "no such exec session", "no such pod", "no such image"}
)


def api_error(status: int, data: bytes) -> EngineError:
    """Map an API error answer to ours."""
    try:
        answer = json.loads(data)
        message = str(answer.get("message", "")) or f"HTTP {status}"
        cause = str(answer.get("cause", ""))
    except (ValueError, AttributeError):
        message = data.decode(errors="replace").strip()[:200] or f"HTTP {status}"
        cause = ""
    if cause in REMOVED:  # Podman: a 500 for an object removed as it answered
        status = 404
    return error_for(status, message)


def error_for(status: int, message: str) -> EngineError:
    """The one place that reads a failed answer: the error keeps its HTTP status, with a
    class where a caller needs one, so no caller matches a message text."""
    if status == 400:
        return EngineRefusedSetting(f"the engine refused a setting: {message}")
    if "No such image" in message:
        return ImageMissing(message.split(":", 1)[-1].strip())
    if status == 404:
        return EngineNotFound(message)
    if status == 409:
        return EngineConflict(f"the engine refused: {message}")
    # A host port taken: Docker's words, and Podman's (its listener binds at start).
    if "port is already allocated" in message or "address already in use" in message:
        return PortAllocated(f"the engine refused: {message}", status=status)
    return EngineError(f"the engine refused: {message}", status=status)


def short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) < 160 else text[:157] + "..."


class Transport:
    """Requests to one engine: raw and JSON answers, hijacked streams, the SDK's client."""

    def __init__(
        self, endpoint: Endpoint, timeout: float, setting: str = "engine_call_timeout"
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.setting = setting  # the config key that sets `timeout`, for the hint
        self._client: Any = None
        # A far engine's connection is kept and reused (one SSH dial for many requests);
        # a local socket is cheaper to open than to share between threads.
        self._kept = threading.local()
        # The Server header of the engine's last answer ("Docker/20.10.24 (linux)",
        # "Libpod/4.3.1 (linux)"): which engine it is, without asking it.
        self.server = ""

    def connection(self, timeout: float | None = None) -> Connection:
        """A connection whose reads wait `timeout` (default: the engine's bound)."""
        check_not_stalled(self.endpoint)
        timeout = interrupt.bound(timeout or self.timeout)
        if self.endpoint.is_local:
            return Connection(self.endpoint, timeout, self.setting)
        conn = getattr(self._kept, "conn", None)
        if conn is None:
            conn = self._kept.conn = Connection(self.endpoint, timeout, self.setting)
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def lost(self, exc: OSError, timeout: float | None = None) -> EngineUnavailable:
        """The error for a stream to the engine that broke, or did not answer in time."""
        if isinstance(exc, TimeoutError):
            return stalled(self.endpoint, timeout or self.timeout, self.setting)
        return EngineUnavailable(
            f"lost {self.endpoint.described} ({exc})", self.endpoint.unreachable_hint
        )

    def request(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        raw: Any = None,
        headers: dict[str, str] | None = None,
        retried: bool = False,
        timeout: float | None = None,
        slow_is_stalled: bool = True,
    ) -> tuple[int, bytes]:
        """One API request: (HTTP status, raw answer). `raw` is a body sent as it is;
        `timeout` replaces the engine's bound for a call the engine answers late on
        purpose (a stop waits for the container). `slow_is_stalled=False`: a call
        whose lateness says nothing of the engine (it waits on a session) is
        EngineStalled when late, but the engine is not remembered as stalled."""
        url = path + ("?" + urllib.parse.urlencode(query) if query else "")
        payload = json.dumps(body).encode() if body is not None else raw
        headers = dict(headers or {})
        if body is not None:
            headers["Content-Type"] = "application/json"
        conn = self.connection(timeout)
        try:
            conn.request(method, url, body=payload, headers=headers)
            response = conn.getresponse()
            self.server = response.getheader("Server") or self.server
            return response.status, response.read()
        except CageError:
            conn.close()
            raise
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            idle_closed = not isinstance(exc, TimeoutError)  # not one that never answers
            if method == "GET" and not self.endpoint.is_local and not retried and idle_closed:
                # A kept connection the far side closed while idle: dial again, once.
                return self.request(
                    method, path, query, body, raw, headers, True, timeout, slow_is_stalled
                )
            if isinstance(exc, TimeoutError) and not slow_is_stalled and not interrupt.bound(None):
                raise EngineStalled(
                    self.endpoint.described, conn.timeout or 0, self.setting
                ) from None
            if isinstance(exc, TimeoutError):
                raise stalled(self.endpoint, conn.timeout, self.setting) from None
            raise EngineUnavailable(
                f"lost {self.endpoint.described} ({exc or type(exc).__name__})",
                self.endpoint.unreachable_hint,
            ) from None
        finally:
            if self.endpoint.is_local:
                conn.close()

    def call(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        timeout: float | None = None,
        slow_is_stalled: bool = True,
    ) -> Any:
        """A request whose answer is JSON (or empty): the parsed answer, None for 404."""
        status, data = self.request(
            method, path, query, body, timeout=timeout, slow_is_stalled=slow_is_stalled
        )
        if status == 404:
            return None
        if status >= 400:
            error = api_error(status, data)
            if isinstance(error, EngineNotFound):
                return None
            raise error
        return json.loads(data) if data.strip() else None

    def hijack(
        self, path: str, body: dict[str, Any], stream_timeout: float | None
    ) -> socket.socket:
        """POST that turns the connection into a raw stream (how exec attaches). The
        engine's bound holds until the stream is there; then reads wait
        `stream_timeout` (None: as long as the command runs)."""
        payload = json.dumps(body).encode()
        check_not_stalled(self.endpoint)
        timeout = interrupt.bound(self.timeout)
        sock = dial.connect(self.endpoint, timeout, self.setting)
        try:
            request = (
                f"POST {path} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
            )
            sock.sendall(request.encode() + payload)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(1)  # byte by byte: what follows the headers is the stream
                if not chunk:
                    break
                head += chunk
        except OSError as exc:
            sock.close()
            raise self.lost(exc, timeout) from None
        status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
        if status not in (101, 200):
            sock.close()
            raise api_error(status or 500, head.partition(b"\r\n\r\n")[2])
        sock.settimeout(stream_timeout)
        return sock

    # --- what goes through the Docker SDK ----------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            import docker  # start-up: the SDK costs ~110 ms; builds, pulls and logs need it

            try:
                if not self.endpoint.name:  # the local engine: DOCKER_HOST and its TLS vars
                    self._client = docker.from_env(timeout=120)
                else:
                    self._client = docker.DockerClient(
                        base_url=self.endpoint.host,
                        timeout=120,
                        tls=tls_config(self.endpoint),
                        use_ssh_client=True,  # the system's ssh, with the user's ssh config
                    )
            except docker.errors.DockerException as exc:
                raise EngineUnavailable(
                    f"cannot reach {self.endpoint.described} ({short(exc)})",
                    self.endpoint.unreachable_hint,
                ) from None
        return self._client

    @contextlib.contextmanager
    def sdk_errors(self) -> Iterator[None]:
        """Turn the SDK's exceptions (and its HTTP library's) into ours."""
        try:
            yield
        except CageError:
            raise
        except Exception as exc:
            # start-up: the SDK and requests cost ~80 ms; only a failed SDK call gets here
            import docker.errors
            import requests.exceptions  # start-up: as above (it comes with the SDK)

            if isinstance(
                exc, docker.errors.DockerException | requests.exceptions.RequestException
            ):
                raise sdk_error(exc) from None
            raise


def tls_config(endpoint: Endpoint) -> Any:
    endpoint.require_tls()
    if endpoint.scheme != "tcp" or not endpoint.tls_dir:
        return False
    import docker.tls  # start-up: the SDK costs ~80 ms; only the SDK's client needs it

    tls = endpoint.tls_dir
    return docker.tls.TLSConfig(
        client_cert=(f"{tls}/cert.pem", f"{tls}/key.pem"),
        ca_cert=f"{tls}/ca.pem" if endpoint.tls_verify else None,
        verify=endpoint.tls_verify,
    )


def frames(sock: socket.socket) -> Iterator[tuple[bytes | None, bytes | None]]:
    """Split an exec's multiplexed stream into (stdout, stderr) pairs, as data arrives."""
    return demux(sock.recv)


def demux(read: Callable[[int], bytes]) -> Iterator[tuple[bytes | None, bytes | None]]:
    """Split a multiplexed stream (exec, or the logs of a container without a TTY) into
    (stdout, stderr) pairs, as data arrives.

    Each frame is an 8-byte header (stream type, three zero bytes, big-endian size)
    followed by its payload.
    """
    buffer = b""
    while chunk := read(65536):
        buffer += chunk
        while len(buffer) >= 8:
            size = struct.unpack(">I", buffer[4:8])[0]
            if len(buffer) < 8 + size:
                break
            kind, payload, buffer = buffer[0], buffer[8 : 8 + size], buffer[8 + size :]
            yield (None, payload) if kind == 2 else (payload, None)


def lines(chunks: Iterable[bytes]) -> Iterator[tuple[str, bytes]]:
    """'<timestamp> <text>' lines from a stream of chunks, as (timestamp, text)."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        for line in complete:
            stamp, _, text = line.partition(b" ")
            yield stamp.decode(errors="replace"), text
