"""The one module that talks to Docker.

Two ways in, each where it fits:

- Container lifecycle, exec and queries (everything `start`, `stop`, `list`, `status`
  and `exec` need) are plain requests to the engine's HTTP API with `http.client`.
  Importing the Docker SDK alone costs more than a whole `list`
  and a third of a `start`, and these calls are simple: one JSON body, one answer.
- Builds, pulls, imports and log streams go through the Docker SDK for Python
  (imported lazily), which knows the streaming formats and the build context.

Both reach any engine: the local socket, or a far one over SSH or TCP (`endpoints.py`
names them, `dial.py` opens the stream, so the raw requests and hijacked exec streams
are the same on all of them). Every failure becomes a claude-cage error with a hint
(errors.py); no request body (which may hold settings) is ever quoted in one.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import struct
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from claude_cage import dial, endpoints, labels
from claude_cage.endpoints import Endpoint
from claude_cage.errors import (
    CageError,
    EngineConflict,
    EngineError,
    EngineNotFound,
    EngineRefusedSetting,
    EngineUnavailable,
    ImageMissing,
    PortAllocated,
)

if TYPE_CHECKING:
    from claude_cage.policy import ContainerSpec

MANAGED = labels.MANAGED_FILTER


class _EngineConnection(http.client.HTTPConnection):
    """HTTP over whatever stream reaches the engine (dial.py)."""

    def __init__(self, endpoint: Endpoint, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._endpoint = endpoint

    def connect(self) -> None:
        self.sock = dial.connect(self._endpoint, self.timeout)


def _translate(exc: Exception) -> CageError:
    """Map an SDK error to ours. The message never includes request bodies."""
    import docker.errors

    if isinstance(exc, docker.errors.ImageNotFound):
        return ImageMissing(str(getattr(exc, "explanation", "") or exc))
    if isinstance(exc, docker.errors.APIError):
        return _error_for(exc.status_code or 500, str(exc.explanation or exc))
    if isinstance(exc, docker.errors.DockerException):
        return EngineUnavailable(f"cannot reach the Docker engine ({_short(exc)})")
    return EngineError(str(exc))


def _api_error(status: int, data: bytes) -> EngineError:
    """Map an API error answer to ours."""
    try:
        message = str(json.loads(data).get("message", "")) or f"HTTP {status}"
    except (ValueError, AttributeError):
        message = data.decode(errors="replace").strip()[:200] or f"HTTP {status}"
    return _error_for(status, message)


def _error_for(status: int, message: str) -> EngineError:
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
    if "port is already allocated" in message:  # the engine's word for a taken host port
        return PortAllocated(f"the engine refused: {message}", status=status)
    return EngineError(f"the engine refused: {message}", status=status)


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) < 160 else text[:157] + "..."


class Engine:
    """One Docker engine: the local one by default, or any Endpoint (endpoints.py)."""

    def __init__(self, endpoint: Endpoint | None = None, timeout: float = 300) -> None:
        self.endpoint = endpoint if endpoint is not None else endpoints.local()
        self.timeout = timeout
        self._client: Any = None
        # A far engine's connection is kept and reused (one SSH dial for many requests);
        # a local socket is cheaper to open than to share between threads.
        self._kept = threading.local()

    # --- the engine API ----------------------------------------------------------------

    def _connection(self) -> _EngineConnection:
        if self.endpoint.is_local:
            return _EngineConnection(self.endpoint, self.timeout)
        conn = getattr(self._kept, "conn", None)
        if conn is None:
            conn = self._kept.conn = _EngineConnection(self.endpoint, self.timeout)
        return conn

    def _request(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        raw: Any = None,
        headers: dict[str, str] | None = None,
        retried: bool = False,
    ) -> tuple[int, bytes]:
        """One API request: (HTTP status, raw answer). `raw` is a body sent as it is."""
        url = path + ("?" + urllib.parse.urlencode(query) if query else "")
        payload = json.dumps(body).encode() if body is not None else raw
        headers = dict(headers or {})
        if body is not None:
            headers["Content-Type"] = "application/json"
        conn = self._connection()
        try:
            conn.request(method, url, body=payload, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        except CageError:
            conn.close()
            raise
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            if method == "GET" and not self.endpoint.is_local and not retried:
                # A kept connection the far side closed while idle: dial again, once.
                return self._request(method, path, query, body, raw, headers, retried=True)
            raise EngineUnavailable(
                f"lost {self.endpoint.described} ({exc or type(exc).__name__})",
                self.endpoint.unreachable_hint,
            ) from None
        finally:
            if self.endpoint.is_local:
                conn.close()

    def _call(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Any:
        """A request whose answer is JSON (or empty): the parsed answer, None for 404."""
        status, data = self._request(method, path, query, body)
        if status == 404:
            return None
        if status >= 400:
            raise _api_error(status, data)
        return json.loads(data) if data.strip() else None

    def _get(self, path: str, query: dict[str, str] | None = None) -> Any:
        return self._call("GET", path, query)

    def list_containers(self, labels: list[str] | None = None) -> list[dict[str, Any]]:
        """All claude-cage containers (running or not) in one engine call."""
        filters = {"label": [MANAGED, *(labels or [])]}
        return self._get("/containers/json", {"all": "1", "filters": json.dumps(filters)}) or []

    def inspect(self, name: str) -> dict[str, Any] | None:
        return self._get(f"/containers/{urllib.parse.quote(name)}/json")  # type: ignore[no-any-return]

    def ping(self) -> dict[str, Any]:
        return self._get("/version")  # type: ignore[no-any-return]

    def info(self) -> dict[str, Any]:
        """`docker info`: security options, data root, driver, counts."""
        return self._get("/info")  # type: ignore[no-any-return]

    def exec_inspect(self, exec_id: str) -> dict[str, Any] | None:
        return self._get(f"/exec/{urllib.parse.quote(exec_id)}/json")  # type: ignore[no-any-return]

    def stats_many(self, names: list[str]) -> dict[str, dict[str, Any] | None]:
        """One-shot stats of several containers at once (None for one that is gone).

        The engine samples on a one-second tick, so a single call can wait up to a
        second; asking for all of them together costs that wait once, not per container.
        """
        from concurrent.futures import ThreadPoolExecutor

        def one(name: str) -> dict[str, Any] | None:
            path = f"/containers/{urllib.parse.quote(name)}/stats"
            return self._get(path, {"stream": "false", "one-shot": "true"})  # type: ignore[no-any-return]

        if not names:
            return {}
        with ThreadPoolExecutor(max_workers=min(len(names), 16)) as pool:
            return dict(zip(names, pool.map(one, names), strict=True))

    # --- everything else goes through the SDK ------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            import docker

            try:
                if not self.endpoint.name:  # the local engine: DOCKER_HOST and its TLS vars
                    self._client = docker.from_env(timeout=120)
                else:
                    self._client = docker.DockerClient(
                        base_url=self.endpoint.host,
                        timeout=120,
                        tls=_tls_config(self.endpoint),
                        use_ssh_client=True,  # the system's ssh, with the user's ssh config
                    )
            except docker.errors.DockerException as exc:
                raise EngineUnavailable(
                    f"cannot reach {self.endpoint.described} ({_short(exc)})",
                    self.endpoint.unreachable_hint,
                ) from None
        return self._client

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except CageError:
            raise
        except Exception as exc:
            import docker.errors
            import requests.exceptions

            if isinstance(
                exc, docker.errors.DockerException | requests.exceptions.RequestException
            ):
                raise _translate(exc) from None
            raise

    def image_labels(self, image: str) -> dict[str, str] | None:
        """The image's labels, or None when it is not there."""
        with self._errors():
            data = self._get(f"/images/{urllib.parse.quote(image, safe='')}/json")
            if data is None:
                return None
            return (data.get("Config") or {}).get("Labels") or {}

    def image_id(self, image: str) -> str | None:
        data = self._get(f"/images/{urllib.parse.quote(image, safe='')}/json")
        return None if data is None else str(data.get("Id"))

    def save_image(self, image: str, chunk: int = 4 << 20) -> Iterator[bytes]:
        """`docker save` of one image, streamed: a tar in chunks, never whole in memory."""
        conn = _EngineConnection(self.endpoint, self.timeout)
        try:
            conn.request("GET", f"/images/{urllib.parse.quote(image, safe='')}/get")
            response = conn.getresponse()
            if response.status >= 400:
                raise _api_error(response.status, response.read())
            while data := response.read(chunk):
                yield data
        except OSError as exc:
            raise EngineUnavailable(
                f"lost {self.endpoint.described} ({exc})", self.endpoint.unreachable_hint
            ) from None
        finally:
            conn.close()

    def load_image(self, tar_chunks: Iterator[bytes]) -> None:
        """`docker load` of a tar sent as it comes (chunked), on its own connection."""
        conn = _EngineConnection(self.endpoint, self.timeout)
        try:
            headers = {"Content-Type": "application/x-tar"}
            conn.request("POST", "/images/load?quiet=1", body=tar_chunks, headers=headers)
            response = conn.getresponse()
            status, data = response.status, response.read()
        except OSError as exc:
            raise EngineUnavailable(
                f"lost {self.endpoint.described} ({exc})", self.endpoint.unreachable_hint
            ) from None
        finally:
            conn.close()
        if status >= 400:
            raise _api_error(status, data)
        if b'"error"' in data:
            raise EngineError(f"loading the image failed: {data.decode(errors='replace')[:300]}")

    def require_image(self, image: str) -> None:
        if self.image_labels(image) is None:
            raise ImageMissing(image)

    def network(self, name: str) -> dict[str, Any] | None:
        """`docker network inspect`: labels, attached (running) containers; None if absent."""
        return self._get(f"/networks/{urllib.parse.quote(name)}")  # type: ignore[no-any-return]

    def ensure_network(self, name: str, labels: dict[str, str]) -> None:
        if self._get(f"/networks/{urllib.parse.quote(name)}") is not None:
            return
        status, data = self._request(
            "POST",
            "/networks/create",
            body={"Name": name, "Driver": "bridge", "Labels": labels, "CheckDuplicate": True},
        )
        if status >= 400 and status != 409:  # 409: another start made it meanwhile
            raise _api_error(status, data)

    def volume_exists(self, name: str) -> bool:
        return self.volume_labels(name) is not None

    def volume_labels(self, name: str) -> dict[str, str] | None:
        """A volume's labels, or None when it is not there."""
        found = self._get(f"/volumes/{urllib.parse.quote(name)}")
        return None if found is None else (found.get("Labels") or {})

    def ensure_volume(
        self, name: str, labels: dict[str, str], driver_opts: dict[str, str] | None = None
    ) -> None:
        body: dict[str, Any] = {"Name": name, "Labels": labels}
        if driver_opts:
            body.update(Driver="local", DriverOpts=driver_opts)
        self._call("POST", "/volumes/create", body=body)

    def remove_volume(self, name: str) -> bool:
        """Remove a volume; False when it was not there."""
        status, data = self._request(
            "DELETE", f"/volumes/{urllib.parse.quote(name)}", {"force": "true"}
        )
        if status == 404:
            return False
        if status >= 400:
            raise _api_error(status, data)
        return True

    def list_volumes(self) -> list[dict[str, Any]]:
        found = self._get("/volumes", {"filters": json.dumps({"label": [MANAGED]})}) or {}
        return found.get("Volumes") or []

    def list_networks(self) -> list[dict[str, Any]]:
        return self._get("/networks", {"filters": json.dumps({"label": [MANAGED]})}) or []

    def remove_network(self, name: str) -> None:
        self._call("DELETE", f"/networks/{urllib.parse.quote(name)}")

    def create(self, spec: ContainerSpec) -> str:
        found = self._call("POST", "/containers/create", {"name": spec.name}, _create_body(spec))
        if found is None:
            raise ImageMissing(spec.image)
        return str(found["Id"])

    def start(self, name: str) -> None:
        """Start a container. Safe to call from several threads at once."""
        path = f"/containers/{urllib.parse.quote(name)}/start"
        status, data = self._request("POST", path)
        if status >= 400:  # 304 (already running) is fine
            raise _api_error(status, data)

    def stop(self, name: str, timeout: int = 10) -> None:
        """Stop a container; nothing happens when it is not there or not running."""
        path = f"/containers/{urllib.parse.quote(name)}/stop"
        status, data = self._request("POST", path, {"t": str(timeout)})
        if status >= 400 and status != 404:
            raise _api_error(status, data)

    def remove(self, name: str) -> bool:
        """Force-remove a container; False when it was not there. Returns once it is gone,
        so its volumes are free (also when the engine's auto-remove got there first)."""
        path = f"/containers/{urllib.parse.quote(name)}"
        status, data = self._request("DELETE", path, {"force": "true"})
        if status == 404:
            return False
        if status == 409 and b"already in progress" in data:
            self._request("POST", f"{path}/wait", {"condition": "removed"})
            return True
        if status >= 400:
            raise _api_error(status, data)
        return True

    def exec_run(
        self, name: str, cmd: list[str], stdin: bytes | None = None, user: str | None = None
    ) -> tuple[int, bytes]:
        """Run a command to completion: (exit code, stdout and stderr).

        Data for it goes in on stdin, never in argv or the environment, so secrets
        handed over this way show in no `docker inspect` and no process list.
        """
        exec_id = self._exec_create(name, cmd, stdin is not None, user=user)
        output = b"".join(out or err or b"" for out, err in self._exec_start(exec_id, stdin))
        return self._exit_code(exec_id), output

    def exec_output(
        self, name: str, cmd: list[str], stdin: bytes | None = None
    ) -> tuple[int, bytes, bytes]:
        """Run a command to completion: (exit code, stdout, stderr), kept apart."""
        exec_id = self._exec_create(name, cmd, stdin is not None)
        out, err = [], []
        for chunk_out, chunk_err in self._exec_start(exec_id, stdin):
            if chunk_out:
                out.append(chunk_out)
            if chunk_err:
                err.append(chunk_err)
        return self._exit_code(exec_id), b"".join(out), b"".join(err)

    def put_archive(self, name: str, path: str, archive: Any) -> None:
        """Unpack a tar at `path` in a container (created or running), with the owners
        its headers name. `archive` iterates over byte chunks and has a `length`: it is
        streamed, never held in memory whole."""
        url = f"/containers/{urllib.parse.quote(name)}/archive?" + urllib.parse.urlencode(
            {"path": path}
        )
        headers = {"Content-Type": "application/x-tar", "Content-Length": str(archive.length)}
        status, data = self._request("PUT", url, raw=iter(archive), headers=headers)
        if status >= 400:
            raise _api_error(status, data)

    def exec_attach(
        self,
        name: str,
        cmd: list[str],
        stdin: bool = False,
        workdir: str | None = None,
        env: dict[str, str] | None = None,
    ) -> tuple[str, socket.socket]:
        """Start an exec and hand back (its id, the raw stream): write its stdin there
        (when `stdin`), read its output with `frames`, then ask `exit_code`."""
        exec_id = self._exec_create(name, cmd, stdin, workdir=workdir, env=env)
        return exec_id, self._hijack(f"/exec/{exec_id}/start", {"Detach": False, "Tty": False})

    def exit_code(self, exec_id: str) -> int:
        return self._exit_code(exec_id)

    def _exec_create(
        self,
        name: str,
        cmd: list[str],
        stdin: bool,
        user: str | None = None,
        workdir: str | None = None,
        env: dict[str, str] | None = None,
    ) -> str:
        body = {
            "Cmd": cmd,
            "AttachStdin": stdin,
            "AttachStdout": True,
            "AttachStderr": True,
            "Tty": False,
            "User": user or "",
            "WorkingDir": workdir or "",
            "Env": [f"{key}={value}" for key, value in (env or {}).items()],
        }
        found = self._call("POST", f"/containers/{urllib.parse.quote(name)}/exec", body=body)
        if found is None:
            raise EngineNotFound(f"no container {name}")
        return str(found["Id"])

    def _exit_code(self, exec_id: str) -> int:
        code = (self.exec_inspect(exec_id) or {}).get("ExitCode")
        return int(code) if code is not None else -1

    def _exec_start(self, exec_id: str, stdin: bytes | None) -> Iterator[tuple[Any, Any]]:
        """Start an exec and yield its output as (stdout, stderr) pairs."""
        sock = self._hijack(f"/exec/{exec_id}/start", {"Detach": False, "Tty": False})
        try:
            if stdin is not None:
                sock.sendall(stdin)
                sock.shutdown(socket.SHUT_WR)
            yield from frames(sock)
        finally:
            sock.close()

    def _hijack(self, path: str, body: dict[str, Any]) -> socket.socket:
        """POST that turns the connection into a raw stream (how exec attaches)."""
        payload = json.dumps(body).encode()
        sock = dial.connect(self.endpoint, self.timeout)
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
            raise EngineUnavailable(
                f"lost {self.endpoint.described} ({exc})", self.endpoint.unreachable_hint
            ) from None
        status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
        if status not in (101, 200):
            sock.close()
            raise _api_error(status or 500, head.partition(b"\r\n\r\n")[2])
        return sock

    def get_archive(self, name: str, path: str) -> bytes | None:
        """A tar of `path` (a file or a directory) in a container, running or stopped,
        volumes included; None if absent."""
        status, data = self._request(
            "GET", f"/containers/{urllib.parse.quote(name)}/archive", {"path": path}
        )
        if status == 404:
            return None
        if status >= 400:
            raise _api_error(status, data)
        return data

    def log_tail(self, name: str, lines: int = 5) -> str:
        """The last lines a container wrote (stdout and stderr), for error messages."""
        try:
            chunks = list(self.logs(name, follow=False, tail=lines))
        except CageError:
            return ""
        return b"".join(chunks).decode(errors="replace").strip()

    def logs(self, name: str, follow: bool, tail: int | None) -> Iterator[bytes]:
        with self._errors():
            yield from self.client.api.logs(
                name, stream=True, follow=follow, tail=tail if tail is not None else "all"
            )

    def output_lines(
        self, name: str, since: str = "0", follow: bool = False, tail: int | None = None
    ) -> Iterator[tuple[str, bytes]]:
        """(engine timestamp, line) for each line a container wrote to its standard
        output since `since` (seconds since the epoch, with up to nine decimals; lines
        at exactly that time come again). With `follow`, lines keep coming until the
        container stops; with `tail`, only the last `tail` lines come. Read from the
        engine's own log, so no process runs in the container, and a stopped one's
        output is there too."""
        query = {
            "stdout": "1",
            "stderr": "0",
            "timestamps": "1",
            "since": since,
            "follow": "1" if follow else "0",
            "tail": "all" if tail is None else str(tail),
        }
        path = f"/containers/{urllib.parse.quote(name)}/logs"
        conn = _EngineConnection(self.endpoint, timeout=None if follow else 300)
        try:
            conn.request("GET", path + "?" + urllib.parse.urlencode(query))
            response = conn.getresponse()
            if response.status >= 400:
                error = _api_error(response.status, response.read())
                raise EngineNotFound(f"no container {name}") if response.status == 404 else error
            yield from _lines(out for out, _err in _demux(response.read1) if out)
        except OSError as exc:
            raise EngineUnavailable(f"cannot reach the Docker engine ({exc})") from None
        finally:
            conn.close()

    def stats(self, name: str) -> dict[str, Any]:
        """One-shot stats: no 1.5 s wait for a second sample."""
        found = self._get(
            f"/containers/{urllib.parse.quote(name)}/stats", {"stream": "false", "one-shot": "true"}
        )
        if found is None:
            raise EngineNotFound(f"no container {name}")
        return found  # type: ignore[no-any-return]

    def build(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        with self._errors():
            yield from self.client.api.build(decode=True, rm=True, forcerm=True, **kwargs)

    def pull(self, image: str) -> None:
        repo, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
        with self._errors():
            self.client.api.pull(repo or image, tag=tag or "latest")

    def import_image(self, tar_path: str, repository: str, tag: str) -> None:
        with self._errors():
            self.client.api.import_image_from_file(tar_path, repository=repository, tag=tag)


def _tls_config(endpoint: Endpoint) -> Any:
    if endpoint.scheme != "tcp" or not endpoint.tls_dir:
        return False
    import docker.tls

    tls = endpoint.tls_dir
    return docker.tls.TLSConfig(
        client_cert=(f"{tls}/cert.pem", f"{tls}/key.pem"),
        ca_cert=f"{tls}/ca.pem" if endpoint.tls_verify else None,
        verify=endpoint.tls_verify,
    )


def frames(sock: socket.socket) -> Iterator[tuple[bytes | None, bytes | None]]:
    """Split an exec's multiplexed stream into (stdout, stderr) pairs, as data arrives."""
    return _demux(sock.recv)


def _demux(read: Callable[[int], bytes]) -> Iterator[tuple[bytes | None, bytes | None]]:
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


def _lines(chunks: Iterator[bytes]) -> Iterator[tuple[str, bytes]]:
    """'<timestamp> <text>' lines from a stream of chunks, as (timestamp, text)."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        for line in complete:
            stamp, _, text = line.partition(b" ")
            yield stamp.decode(errors="replace"), text


def _create_body(spec: ContainerSpec) -> dict[str, Any]:
    """The engine's container-create request for a spec (see policy.py for the why)."""
    mounts = [
        {
            "Type": "volume",
            "Source": v["source"],
            "Target": v["target"],
            "VolumeOptions": {"NoCopy": bool(v.get("no_copy"))},
            "ReadOnly": bool(v.get("read_only")),
        }
        for v in spec.volumes
    ] + [
        {"Type": "bind", "Source": b.source, "Target": b.target, "ReadOnly": b.read_only}
        for b in spec.binds
    ]
    host_config: dict[str, Any] = {
        "Mounts": mounts,
        "Tmpfs": spec.tmpfs,
        "ReadonlyRootfs": spec.read_only,
        "CapDrop": spec.cap_drop,
        "SecurityOpt": spec.security_opt,
        "Memory": spec.mem_limit,
        "MemorySwap": spec.mem_limit,  # no swap beyond the memory limit
        "NanoCpus": spec.nano_cpus,
        "PidsLimit": spec.pids_limit,
        "Ulimits": [{"Name": n, "Soft": soft, "Hard": hard} for n, soft, hard in spec.ulimits],
        "NetworkMode": spec.network_mode,
        "PortBindings": {
            port: [{"HostIp": ip, "HostPort": str(host_port)}]
            for port, (ip, host_port) in spec.ports.items()
        },
        "AutoRemove": spec.auto_remove,
        "IpcMode": spec.ipc_mode,
        "Runtime": spec.runtime,
        "Init": False,  # tini is PID 1 in every image
    }
    if spec.log_size:  # the container's own output: two files, rotated by the engine
        host_config["LogConfig"] = {
            "Type": "json-file",
            "Config": {"max-size": str(max(spec.log_size // 2, 4096)), "max-file": "2"},
        }
    return {
        "Image": spec.image,
        "Hostname": spec.hostname or "",
        "User": spec.user,
        "Env": [f"{key}={value}" for key, value in spec.environment.items()],
        "Cmd": spec.command,
        "Labels": spec.labels,
        "WorkingDir": spec.working_dir or "",
        "ExposedPorts": {port: {} for port in spec.ports},
        "AttachStdin": False,
        "OpenStdin": False,
        "Tty": False,
        "HostConfig": host_config,
    }
