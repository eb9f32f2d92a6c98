"""The one module that talks to Docker.

Everything goes through the Docker SDK for Python, imported lazily, except the two
read-only queries on the hot path (`list` and `status`): those use a plain HTTP
request over the engine's unix socket, because importing the SDK alone costs more
than the whole `list` command should. SDK and socket errors become claude-cage errors
with a hint (see errors.py).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import struct
import urllib.parse
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from claude_cage.errors import (
    BadInput,
    CageError,
    EngineError,
    EngineUnavailable,
    ImageMissing,
    NotFound,
)

if TYPE_CHECKING:
    from claude_cage.policy import ContainerSpec

MANAGED = "managed-by=claude-cage"
DEFAULT_SOCKET = "/var/run/docker.sock"


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def _socket_path() -> str | None:
    host = os.environ.get("DOCKER_HOST", "")
    if not host:
        return DEFAULT_SOCKET
    if host.startswith("unix://"):
        return host[len("unix://") :]
    return None  # tcp:// or ssh://: only the SDK knows how to talk to it


def _translate(exc: Exception) -> CageError:
    """Map an SDK error to ours. The message never includes request bodies."""
    import docker.errors

    if isinstance(exc, docker.errors.ImageNotFound):
        return ImageMissing(str(getattr(exc, "explanation", "") or exc))
    if isinstance(exc, docker.errors.NotFound):
        return NotFound(str(exc.explanation or exc))
    if isinstance(exc, docker.errors.APIError) and exc.status_code == 400:
        return BadInput(
            f"the engine refused a setting: {exc.explanation or exc}",
            "check --cpus, --memory, --pids and --port against this machine",
        )
    if isinstance(exc, docker.errors.APIError):
        return EngineError(f"the engine refused: {exc.explanation or exc}")
    if isinstance(exc, docker.errors.DockerException):
        return EngineUnavailable(f"cannot reach the Docker engine ({_short(exc)})")
    return EngineError(str(exc))


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) < 160 else text[:157] + "..."


class Engine:
    def __init__(self) -> None:
        self._client: Any = None

    # --- the fast, read-only path -------------------------------------------------------

    def _call(self, method: str, path: str, query: dict[str, str] | None = None) -> Any:
        """One request over the unix socket: the parsed JSON answer, None for 404 or an
        empty answer. Only for calls without a request body."""
        sock_path = _socket_path()
        assert sock_path is not None
        url = path + ("?" + urllib.parse.urlencode(query) if query else "")
        conn = _UnixHTTPConnection(sock_path, timeout=60)
        try:
            conn.request(method, url)
            response = conn.getresponse()
            body = response.read()
        except (FileNotFoundError, ConnectionRefusedError, PermissionError) as exc:
            raise EngineUnavailable(
                f"cannot reach the Docker engine at {sock_path} ({exc.strerror})"
            ) from None
        except OSError as exc:
            raise EngineUnavailable(f"cannot reach the Docker engine ({exc})") from None
        finally:
            conn.close()
        if response.status == 404:
            return None
        if response.status >= 400:
            message = json.loads(body or b"{}").get("message", response.reason)
            raise EngineError(f"the engine refused: {message}")
        return json.loads(body) if body.strip() else None

    def _get(self, path: str, query: dict[str, str] | None = None) -> Any:
        if _socket_path() is None:
            return self._sdk_get(path, query)
        return self._call("GET", path, query)

    def _sdk_get(self, path: str, query: dict[str, str] | None) -> Any:
        api = self.client.api
        try:
            response = api._get(api._url(path), params=query)
            if response.status_code == 404:
                return None
            api._raise_for_status(response)
            return response.json()
        except Exception as exc:
            raise _translate(exc) from None

    def list_containers(self, labels: list[str] | None = None) -> list[dict[str, Any]]:
        """All claude-cage containers (running or not) in one engine call."""
        filters = {"label": [MANAGED, *(labels or [])]}
        return self._get("/containers/json", {"all": "1", "filters": json.dumps(filters)}) or []

    def inspect(self, name: str) -> dict[str, Any] | None:
        return self._get(f"/containers/{urllib.parse.quote(name)}/json")

    def ping(self) -> dict[str, Any]:
        return self._get("/version")

    def info(self) -> dict[str, Any]:
        """`docker info`: security options, data root, driver, counts."""
        return self._get("/info")

    def exec_inspect(self, exec_id: str) -> dict[str, Any] | None:
        return self._get(f"/exec/{urllib.parse.quote(exec_id)}/json")

    def stats_many(self, names: list[str]) -> dict[str, dict[str, Any] | None]:
        """One-shot stats of several containers at once (None for one that is gone).

        The engine samples on a one-second tick, so a single call can wait up to a
        second; asking for all of them together costs that wait once, not per container.
        """
        from concurrent.futures import ThreadPoolExecutor

        def one(name: str) -> dict[str, Any] | None:
            path = f"/containers/{urllib.parse.quote(name)}/stats"
            return self._get(path, {"stream": "false", "one-shot": "true"})

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
                self._client = docker.from_env(timeout=120)
            except docker.errors.DockerException as exc:
                raise EngineUnavailable(f"cannot reach the Docker engine ({_short(exc)})") from None
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

    def require_image(self, image: str) -> None:
        if self.image_labels(image) is None:
            raise ImageMissing(image)

    def ensure_network(self, name: str, labels: dict[str, str]) -> None:
        with self._errors():
            import docker.errors

            try:
                self.client.networks.get(name)
            except docker.errors.NotFound:
                with contextlib.suppress(docker.errors.APIError):  # created concurrently
                    self.client.networks.create(name, driver="bridge", labels=labels)

    def volume_exists(self, name: str) -> bool:
        return self._get(f"/volumes/{urllib.parse.quote(name)}") is not None

    def ensure_volume(self, name: str, labels: dict[str, str]) -> None:
        with self._errors():
            self.client.volumes.create(name=name, labels=labels)

    def remove_volume(self, name: str) -> bool:
        with self._errors():
            import docker.errors

            try:
                self.client.volumes.get(name).remove(force=True)
                return True
            except docker.errors.NotFound:
                return False

    def list_volumes(self) -> list[dict[str, Any]]:
        with self._errors():
            return self.client.api.volumes(filters={"label": MANAGED}).get("Volumes") or []

    def list_networks(self) -> list[dict[str, Any]]:
        with self._errors():
            return self.client.api.networks(filters={"label": MANAGED})

    def remove_network(self, name: str) -> None:
        with self._errors():
            import docker.errors

            with contextlib.suppress(docker.errors.NotFound):
                self.client.api.remove_network(name)

    def create(self, spec: ContainerSpec) -> str:
        import docker.types

        mounts = [
            docker.types.Mount(
                v["target"], v["source"], type="volume", no_copy=v.get("no_copy", False)
            )
            for v in spec.volumes
        ]
        mounts += [
            docker.types.Mount(b.target, b.source, type="bind", read_only=b.read_only)
            for b in spec.binds
        ]
        kwargs: dict[str, Any] = dict(
            image=spec.image,
            name=spec.name,
            hostname=spec.hostname,
            labels=spec.labels,
            user=spec.user,
            command=spec.command,
            environment=spec.environment,
            mounts=mounts,
            tmpfs=spec.tmpfs,
            read_only=spec.read_only,
            cap_drop=spec.cap_drop,
            security_opt=spec.security_opt,
            mem_limit=spec.mem_limit,
            memswap_limit=spec.mem_limit,  # no swap beyond the memory limit
            nano_cpus=spec.nano_cpus,
            pids_limit=spec.pids_limit,
            ulimits=[docker.types.Ulimit(name=n, soft=s, hard=h) for n, s, h in spec.ulimits],
            network_mode=spec.network_mode,
            ports=spec.ports or None,
            working_dir=spec.working_dir,
            auto_remove=spec.auto_remove,
            ipc_mode=spec.ipc_mode,
            init=False,  # tini is PID 1 in every image
            detach=True,
            stdin_open=False,
            tty=False,
        )
        with self._errors():
            container = self.client.containers.create(**kwargs)
            return str(container.id)

    def start(self, name: str) -> None:
        """Start a container. Safe to call from several threads at once."""
        if _socket_path() is None:
            with self._errors():
                self.client.api.start(name)
            return
        path = f"/containers/{urllib.parse.quote(name)}/start"
        if self._call("GET", f"/containers/{urllib.parse.quote(name)}/json") is None:
            raise NotFound(f"no container {name}")
        self._call("POST", path)

    def stop(self, name: str, timeout: int = 10) -> None:
        with self._errors():
            import docker.errors

            with contextlib.suppress(docker.errors.NotFound):
                self.client.api.stop(name, timeout=timeout)

    def remove(self, name: str) -> bool:
        """Force-remove a container; False when it was not there."""
        with self._errors():
            import docker.errors

            try:
                self.client.api.remove_container(name, force=True, v=False)
                return True
            except docker.errors.NotFound:
                return False
            except docker.errors.APIError as exc:
                if "already in progress" in str(exc):  # auto-remove got there first
                    self._wait_removed(name)
                    return True
                raise

    def _wait_removed(self, name: str, timeout: int = 30) -> None:
        """Block until a container being removed is gone, so its volumes are free."""
        import docker.errors
        import requests.exceptions

        with contextlib.suppress(docker.errors.NotFound, requests.exceptions.RequestException):
            self.client.api.wait(name, timeout=timeout, condition="removed")

    def exec_run(
        self, name: str, cmd: list[str], stdin: bytes | None = None, user: str | None = None
    ) -> tuple[int, bytes]:
        """Run a command to completion. Data for it goes in on stdin, never in argv or env."""
        with self._errors():
            api = self.client.api
            exec_id = api.exec_create(name, cmd, stdin=stdin is not None, user=user or "")["Id"]
            sock = api.exec_start(exec_id, socket=True)
            raw = getattr(sock, "_sock", sock)
            try:
                if stdin is not None:
                    raw.sendall(stdin)
                    raw.shutdown(socket.SHUT_WR)
                output = _read_frames(raw)
            finally:
                sock.close()
            code = api.exec_inspect(exec_id)["ExitCode"]
            return int(code if code is not None else -1), output

    def exec_stream(self, name: str, cmd: list[str], workdir: str | None = None) -> Iterator[Any]:
        """Yield (stdout, stderr) chunks, then a final int: the exit code."""
        with self._errors():
            api = self.client.api
            exec_id = api.exec_create(name, cmd, workdir=workdir)["Id"]
            yield from api.exec_start(exec_id, stream=True, demux=True)
            yield int(api.exec_inspect(exec_id)["ExitCode"] or 0)

    def get_file(self, name: str, path: str) -> bytes | None:
        """One file's bytes from a container, running or stopped; None if absent."""
        import io
        import tarfile

        with self._errors():
            import docker.errors

            try:
                stream, _stat = self.client.api.get_archive(name, path)
            except docker.errors.NotFound:
                return None
            with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
                member = archive.next()
                handle = archive.extractfile(member) if member else None
                return handle.read() if handle else b""

    def logs(self, name: str, follow: bool, tail: int | None) -> Iterator[bytes]:
        with self._errors():
            yield from self.client.api.logs(
                name, stream=True, follow=follow, tail=tail if tail is not None else "all"
            )

    def stats(self, name: str) -> dict[str, Any]:
        """One-shot stats: no 1.5 s wait for a second sample."""
        with self._errors():
            return self.client.api.stats(name, stream=False, one_shot=True)

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


def _read_frames(raw: socket.socket) -> bytes:
    """Read an exec's multiplexed stdout/stderr stream to EOF."""
    data = b""
    while chunk := raw.recv(65536):
        data += chunk
    out, pos = b"", 0
    while pos + 8 <= len(data):
        size = struct.unpack(">I", data[pos + 4 : pos + 8])[0]
        out += data[pos + 8 : pos + 8 + size]
        pos += 8 + size
    return out
