"""The Docker engine's calls, as the operations use them (engine_api.EngineAPI).

Each method is one request, or a few, over `transport.py`, which reaches any engine
(the local socket, or a far one over SSH or TCP) and turns every failure into a
claude-cage error with a hint. Builds, pulls, imports and log streams go through the
Docker SDK's client, made on first use; nothing else needs the SDK.

Each call waits `timeout` for the engine's answer (config `engine_call_timeout`), then
fails with EngineStalled. What takes long on purpose has its own bound: a stop waits
the container's grace time more; the output of a command run in a container waits for
the command (as long as it runs for the user's own; LONG_CALL_S of silence for the
commands claude-cage runs), and so do image transfers. Builds and pulls have the SDK's.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import secrets
import socket
import time
import urllib.parse
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

from claude_cage import interrupt, labels
from claude_cage.engine import answers, endpoints, podman
from claude_cage.engine.answers import (
    Container,
    EngineInfo,
    EngineVersion,
    Exec,
    Network,
    Stats,
    Volume,
)
from claude_cage.engine.api import Archive, EngineAPI
from claude_cage.engine.container_request import create_body
from claude_cage.engine.endpoints import Endpoint
from claude_cage.engine.transport import (
    Connection,
    Transport,
    api_error,
    demux,
    frames,
    lines,
)
from claude_cage.errors import (
    CageError,
    EngineConflict,
    EngineError,
    EngineNotFound,
    EngineStalled,
    EngineUnavailable,
    ImageMissing,
)

if TYPE_CHECKING:
    from claude_cage.cancel import Cancel
    from claude_cage.policy import ContainerSpec

MANAGED = labels.MANAGED_FILTER
CALL_SETTING = "engine_call_timeout"
LONG_CALL_S = 300.0  # silence allowed in the output of a command claude-cage runs
DETACH_KEYS = ",".join(["ctrl-@"] * 8)  # an exec's on a terminal: never typed (exec_attach)
HEALTH_CHECK_WAIT = 5.0  # seconds for a health check run on inspect (Podman without a timer)


def call_timeout() -> float:
    """The configured bound of one engine call (a bad value keeps its default here;
    `config validate` and `start` report it)."""
    from claude_cage import config as config_mod  # start-up: PyYAML, when a file is there

    return float(config_mod.load()[CALL_SETTING])


class Engine(EngineAPI):
    """One Docker engine: the local one by default, or any Endpoint (endpoints.py).
    Each call waits `timeout` seconds for an answer (default: config
    engine_call_timeout); `setting` is the config key that sets it, for the hint."""

    def __init__(
        self,
        endpoint: Endpoint | None = None,
        timeout: float | None = None,
        setting: str = CALL_SETTING,
        unenforced_limits: Callable[[], bool] = lambda: False,
    ) -> None:
        self.endpoint = endpoint if endpoint is not None else endpoints.local()
        # Whether a rootless Podman that cannot limit a session may start it all the
        # same (config rootless_without_limits); asked only then, so no command but such
        # a start reads the configuration for it.
        self.unenforced_limits = unenforced_limits
        self.timeout = timeout if timeout is not None else call_timeout()
        self._http = Transport(self.endpoint, self.timeout, setting)
        self._checked: set[str] = set()  # containers whose health check this command ran

    def _get(self, path: str, query: dict[str, str] | None = None) -> Any:
        return self._http.call("GET", path, query)

    # --- queries -----------------------------------------------------------------------

    def list_containers(self, labels: list[str] | None = None) -> list[Container]:
        """All claude-cage containers (running or not) in one engine call."""
        filters = {"label": [MANAGED, *(labels or [])]}
        found = self._get("/containers/json", {"all": "1", "filters": json.dumps(filters)})
        return [answers.from_docker_list(entry) for entry in found or []]

    def inspect(self, name: str) -> Container | None:
        path = f"/containers/{urllib.parse.quote(name)}/json"
        found: dict[str, Any] | None = self._get(path)
        if found is not None and self.is_podman:  # its own words, put in Docker's
            found = podman.inspect(found, self._get(f"/v4.0.0/libpod{path}"))
            if podman.health_unchecked(found, time.time()) and name not in self._checked:
                found = self._run_health_check(name, path, found)
        return None if found is None else answers.from_docker_inspect(found)

    def _run_health_check(self, name: str, path: str, found: dict[str, Any]) -> dict[str, Any]:
        """The inspect answer with the verdict of the container's health check, run now
        (Podman with no timer for it); as it was when the check does not answer within
        HEALTH_CHECK_WAIT. The check is the image's, run in the session, where the agent
        can stop it (SIGSTOP, as the same user) or make it wait: Podman before 5.5 waits
        for it past its own timeout. So it is tried once a command, never waited on for
        longer, and its lateness is not the engine's (the other calls go on)."""
        self._checked.add(name)
        healthcheck = f"/v4.0.0/libpod{path.removesuffix('/json')}/healthcheck"
        # gone, stopped, or a check that does not end
        with contextlib.suppress(EngineConflict, EngineNotFound, EngineStalled):
            checked = self._http.call(
                "GET", healthcheck, timeout=HEALTH_CHECK_WAIT, slow_is_stalled=False
            )
            found = podman.with_health(found, checked)
        return found

    def ping(self) -> EngineVersion:
        return answers.from_docker_version(self._get("/version"))

    def info(self) -> EngineInfo:
        """`docker info`: security options, runtimes, data root, driver, its host's size."""
        return answers.from_docker_info(self._get("/info"))

    def exec_inspect(self, exec_id: str) -> Exec | None:
        found = self._get(f"/exec/{urllib.parse.quote(exec_id)}/json")
        return None if found is None else answers.from_docker_exec(found)

    def stats_many(self, names: list[str]) -> dict[str, Stats | None]:
        """One-shot stats of several containers at once (None for one that is gone).

        The engine samples on a one-second tick, so a single call can wait up to a
        second; asking for all of them together costs that wait once, not per container.
        """

        def one(name: str) -> Stats | None:
            path = f"/containers/{urllib.parse.quote(name)}/stats"
            found = self._get(path, {"stream": "false", "one-shot": "true"})
            return None if found is None else answers.from_docker_stats(found)

        if not names:
            return {}
        with interrupt.pool(min(len(names), 16)) as pool:
            return dict(zip(names, pool.map(one, names), strict=True))

    # --- images, networks, volumes ------------------------------------------------------

    def image_labels(self, image: str) -> dict[str, str] | None:
        """The image's labels, or None when it is not there."""
        with self._http.sdk_errors():
            data = self._get(f"/images/{urllib.parse.quote(image, safe='')}/json")
            if data is None:
                return None
            return (data.get("Config") or {}).get("Labels") or {}

    def image_id(self, image: str) -> str | None:
        data = self._get(f"/images/{urllib.parse.quote(image, safe='')}/json")
        return None if data is None else str(data.get("Id"))

    def image_env(self, image: str) -> dict[str, str] | None:
        """The environment the image sets (its Config.Env), or None when it is not there."""
        data = self._get(f"/images/{urllib.parse.quote(image, safe='')}/json")
        if data is None:
            return None
        pairs = (item.partition("=") for item in (data.get("Config") or {}).get("Env") or [])
        return {key: value for key, _sep, value in pairs}

    def image_volumes(self, image: str) -> list[str] | None:
        """The paths the image declares with VOLUME (its Config.Volumes), or None when it
        is not there."""
        data = self._get(f"/images/{urllib.parse.quote(image, safe='')}/json")
        if data is None:
            return None
        return sorted((data.get("Config") or {}).get("Volumes") or {})

    def save_image(self, image: str, chunk: int = 4 << 20) -> Iterator[bytes]:
        """`docker save` of one image, streamed: a tar in chunks, never whole in memory."""
        conn = Connection(self.endpoint, max(self.timeout, LONG_CALL_S))
        try:
            conn.request("GET", f"/images/{urllib.parse.quote(image, safe='')}/get")
            response = conn.getresponse()
            if response.status >= 400:
                raise api_error(response.status, response.read())
            while data := response.read(chunk):
                yield data
        except OSError as exc:
            raise self._http.lost(exc) from None
        finally:
            conn.close()

    def load_image(self, tar_chunks: Iterator[bytes]) -> None:
        """`docker load` of a tar sent as it comes (chunked), on its own connection."""
        conn = Connection(self.endpoint, max(self.timeout, LONG_CALL_S))
        try:
            headers = {"Content-Type": "application/x-tar"}
            conn.request("POST", "/images/load?quiet=1", body=tar_chunks, headers=headers)
            response = conn.getresponse()
            status, data = response.status, response.read()
        except OSError as exc:
            raise self._http.lost(exc) from None
        finally:
            conn.close()
        if status >= 400:
            raise api_error(status, data)
        if b'"error"' in data:
            raise EngineError(f"loading the image failed: {data.decode(errors='replace')[:300]}")

    def require_image(self, image: str) -> None:
        if self.image_labels(image) is None:
            raise ImageMissing(image)

    def network(self, name: str) -> Network | None:
        """`docker network inspect`: labels, attached (running) containers; None if absent."""
        found = self._get(f"/networks/{urllib.parse.quote(name)}")
        return None if found is None else answers.from_docker_network(found)

    def ensure_network(self, name: str, labels: dict[str, str]) -> None:
        if self._get(f"/networks/{urllib.parse.quote(name)}") is not None:
            return
        status, data = self._http.request(
            "POST",
            "/networks/create",
            body={"Name": name, "Driver": "bridge", "Labels": labels, "CheckDuplicate": True},
        )
        if status >= 400 and status != 409:  # 409: another start made it meanwhile
            raise api_error(status, data)

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
        self._http.call("POST", "/volumes/create", body=body)

    def remove_volume(self, name: str) -> bool:
        """Remove a volume; False when it was not there."""
        status, data = self._http.request(
            "DELETE", f"/volumes/{urllib.parse.quote(name)}", {"force": "true"}
        )
        if status == 404:
            return False
        if status >= 400:
            raise api_error(status, data)
        return True

    def list_volumes(self) -> list[Volume]:
        found = self._get("/volumes", {"filters": json.dumps({"label": [MANAGED]})}) or {}
        return [answers.from_docker_volume(v) for v in found.get("Volumes") or []]

    def list_networks(self) -> list[Network]:
        found = self._get("/networks", {"filters": json.dumps({"label": [MANAGED]})})
        return [answers.from_docker_network(n) for n in found or []]

    def remove_network(self, name: str) -> None:
        self._http.call("DELETE", f"/networks/{urllib.parse.quote(name)}")

    @functools.cached_property
    def is_podman(self) -> bool:
        """Podman's Docker-compatible API: told by the Server header of an answer the
        engine gave already, else by the component its `/version` names."""
        server = self._http.server
        if server.startswith(("Libpod/", "Docker/")):
            return server.startswith("Libpod/")
        return any("Podman" in name for name in self.ping().components)

    @functools.cached_property
    def podman_host(self) -> podman.Host:
        """What the Podman service says of itself: rootless, its user, its cgroups."""
        return podman.host_from_info(self._get("/v4.0.0/libpod/info"))

    def create(self, spec: ContainerSpec) -> str:
        body = create_body(spec)
        if self.is_podman:
            body = podman.create_body(body, self.endpoint, self.podman_host, self.unenforced_limits)
        found = self._http.call("POST", "/containers/create", {"name": spec.name}, body)
        if found is None:
            raise ImageMissing(spec.image)
        if self.is_podman and spec.volumes:
            # Docker fills a new volume from the image (its layout, and its root's owner)
            # at create; Podman at the first mount, which would be whichever container
            # starts first. Its `init` mounts now, so the order of creates decides, as
            # on Docker (bringup.py: the companion first, for the socket volume).
            self._http.call("POST", f"/v4.0.0/libpod/containers/{found['Id']}/init")
        return str(found["Id"])

    def start(self, name: str) -> None:
        """Start a container. Safe to call from several threads at once."""
        path = f"/containers/{urllib.parse.quote(name)}/start"
        status, data = self._http.request("POST", path)
        if status >= 400:  # 304 (already running) is fine
            raise api_error(status, data)

    def stop(self, name: str, timeout: int = 10) -> None:
        """Stop a container; nothing happens when it is not there or not running."""
        path = f"/containers/{urllib.parse.quote(name)}/stop"
        status, data = self._http.request(
            "POST", path, {"t": str(timeout)}, timeout=self.timeout + timeout
        )
        if status >= 400 and status != 404:
            raise api_error(status, data)

    def pause(self, name: str) -> None:
        """Freeze every process of a running container (its cgroup's freezer)."""
        if self.is_podman:
            podman.check_pause(self.podman_host)
        self._http.call("POST", f"/containers/{urllib.parse.quote(name)}/pause")

    def unpause(self, name: str) -> None:
        self._http.call("POST", f"/containers/{urllib.parse.quote(name)}/unpause")

    def remove(self, name: str) -> bool:
        """Force-remove a container; False when it was not there. Returns once it is gone,
        so its volumes are free (also when the engine's auto-remove got there first)."""
        path = f"/containers/{urllib.parse.quote(name)}"
        status, data = self._http.request("DELETE", path, {"force": "true"})
        if status == 404:
            return False
        if status == 409 and b"already in progress" in data:
            self._http.request("POST", f"{path}/wait", {"condition": "removed"})
            return True
        if status >= 400:
            raise api_error(status, data)
        return True

    def exec_run(
        self,
        name: str,
        cmd: list[str],
        stdin: bytes | None = None,
        user: str | None = None,
        limit: int | None = None,
    ) -> tuple[int, bytes]:
        """Run a command to completion: (exit code, stdout and stderr).

        Data for it goes in on stdin, never in argv or the environment, so secrets
        handed over this way show in no `docker inspect` and no process list. With a
        `limit`, output past that many bytes is not kept: the exec is left (its stream
        closed) and EngineError says so.
        """
        exec_id = self._exec_create(name, cmd, stdin is not None, user=user)
        chunks: list[bytes] = []
        size = 0
        with contextlib.closing(self._exec_start(exec_id, stdin)) as stream:
            for out, err in stream:
                chunk = out or err or b""
                size += len(chunk)
                if limit is not None and size > limit:
                    raise EngineError(
                        f"a command in {name} said more than {limit} bytes: not read further",
                        "the session may be damaged or hostile: 'claude-cage stop' it",
                    )
                chunks.append(chunk)
        return self._exit_code(exec_id), b"".join(chunks)

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

    def put_archive(self, name: str, path: str, archive: Archive) -> None:
        """Unpack a tar at `path` in a container (created or running), with the owners
        its headers name. `archive` iterates over byte chunks and has a `length`: it is
        streamed, never held in memory whole."""
        url = f"/containers/{urllib.parse.quote(name)}/archive?" + urllib.parse.urlencode(
            {"path": path}
        )
        headers = {"Content-Type": "application/x-tar", "Content-Length": str(archive.length)}
        status, data = self._http.request("PUT", url, raw=iter(archive), headers=headers)
        if status >= 400:
            raise api_error(status, data)

    def exec_attach(
        self,
        name: str,
        cmd: list[str],
        stdin: bool = False,
        workdir: str | None = None,
        env: dict[str, str] | None = None,
        tty: bool = False,
        size: tuple[int, int] | None = None,
    ) -> tuple[str, socket.socket]:
        """Start an exec and hand back (its id, the raw stream): write its stdin there
        (when `stdin`), then ask `exit_code`. Without `tty` read its output with
        `frames`; with `tty` it runs on a terminal of the engine's (of `size`, rows and
        columns, where the engine takes a size at the start; else `exec_resize`), whose
        output is the stream's bytes as they are."""
        exec_id = self._exec_create(name, cmd, stdin, workdir=workdir, env=env, tty=tty)
        start: dict[str, Any] = {"Detach": False, "Tty": tty}
        if tty and size:
            start["ConsoleSize"] = list(size)  # API 1.42 and later; older ones ignore it
        return exec_id, self._http.hijack(f"/exec/{exec_id}/start", start, None)

    def exec_resize(self, exec_id: str, rows: int, cols: int) -> bool:
        """Set the size of an exec's terminal; False when the engine refused (the exec
        has not started yet, or has ended)."""
        path = f"/exec/{urllib.parse.quote(exec_id)}/resize"
        status, _ = self._http.request("POST", path, {"h": str(rows), "w": str(cols)})
        return status < 400

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
        tty: bool = False,
    ) -> str:
        body: dict[str, Any] = {
            "Cmd": cmd,
            "AttachStdin": stdin,
            "AttachStdout": True,
            "AttachStderr": True,
            "Tty": tty,
            "User": user or "",
            "WorkingDir": workdir or "",
            "Env": [f"{key}={value}" for key, value in (env or {}).items()],
        }
        if tty and stdin:
            # The engine reads detach keys out of a terminal's input (Ctrl-P Ctrl-Q unless
            # told otherwise): it gets a sequence nobody types, so every key reaches the
            # command. Only its first key (Ctrl-@, NUL, which Claude Code does not use) is
            # held back until the next one arrives.
            body["DetachKeys"] = DETACH_KEYS
        found = self._http.call("POST", f"/containers/{urllib.parse.quote(name)}/exec", body=body)
        if found is None:
            raise EngineNotFound(f"no container {name}")
        return str(found["Id"])

    def _exit_code(self, exec_id: str) -> int:
        found = self.exec_inspect(exec_id)
        return -1 if found is None or found.exit_code is None else found.exit_code

    def _exec_start(
        self, exec_id: str, stdin: bytes | None
    ) -> Generator[tuple[Any, Any], None, None]:
        """Start an exec and yield its output as (stdout, stderr) pairs."""
        silence = max(self.timeout, LONG_CALL_S)
        start = {"Detach": False, "Tty": False}
        sock = self._http.hijack(f"/exec/{exec_id}/start", start, silence)
        try:
            if stdin is not None:
                sock.sendall(stdin)
                sock.shutdown(socket.SHUT_WR)
            yield from frames(sock)
        except OSError as exc:
            raise self._http.lost(exc, silence) from None
        finally:
            sock.close()

    def get_archive(self, name: str, path: str, chunk: int = 1 << 20) -> Iterator[bytes] | None:
        """A tar of `path` (a file or a directory) in a container, running or stopped,
        volumes included, as chunks of at most `chunk` bytes read as they come (never
        held whole); None if absent. Each read waits the engine's bound."""
        found = self._archive(name, path, chunk)
        if found is not None or not self.is_podman:
            return found
        stopped = self._get(f"/containers/{urllib.parse.quote(name)}/json")
        if not isinstance(stopped, dict) or (stopped.get("State") or {}).get("Running"):
            return None  # absent, not a volume Podman left out
        return self._through_reader(stopped, path, chunk)

    def _through_reader(
        self, stopped: dict[str, Any], path: str, chunk: int
    ) -> Iterator[bytes] | None:
        """Podman: the archive of a stopped container's path, read through a running
        reader of its volumes (podman.reader_body), removed once read."""
        reader = f"{str(stopped.get('Name', '')).lstrip('/')}-reader-{secrets.token_hex(4)}"
        body = podman.reader_body(stopped)
        if self._http.call("POST", "/containers/create", {"name": reader}, body) is None:
            return None  # its image is gone
        try:
            self.start(reader)
            found = self._archive(reader, path, chunk)
        except BaseException:
            self.remove(reader)
            raise
        if found is None:
            self.remove(reader)
            return None
        return self._then_remove(found, reader)

    def _then_remove(self, chunks: Iterator[bytes], reader: str) -> Iterator[bytes]:
        try:
            yield from chunks
        finally:
            with contextlib.suppress(EngineError):
                self.remove(reader)

    def _archive(self, name: str, path: str, chunk: int) -> Iterator[bytes] | None:
        url = f"/containers/{urllib.parse.quote(name)}/archive?" + urllib.parse.urlencode(
            {"path": path}
        )
        conn = self._http.connection()  # a far engine's is kept: read it to its end
        try:
            conn.request("GET", url)
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise self._http.lost(exc if isinstance(exc, OSError) else OSError(str(exc))) from None
        if response.status >= 400:
            data = response.read()
            if self.endpoint.is_local:
                conn.close()
            if response.status == 404:
                return None
            raise api_error(response.status, data)
        return self._chunks(conn, response, chunk)

    def _chunks(
        self, conn: Connection, response: http.client.HTTPResponse, chunk: int
    ) -> Iterator[bytes]:
        try:
            while data := response.read1(chunk):
                yield data
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise self._http.lost(exc if isinstance(exc, OSError) else OSError(str(exc))) from None
        finally:
            if self.endpoint.is_local or not response.isclosed():
                conn.close()  # a kept connection left mid-answer is no use for the next

    def log_tail(self, name: str, lines: int = 5) -> str:
        """The last lines a container wrote (stdout and stderr), for error messages."""
        try:
            chunks = list(self.logs(name, follow=False, tail=lines))
        except CageError:
            return ""
        return b"".join(chunks).decode(errors="replace").strip()

    def logs(self, name: str, follow: bool, tail: int | None) -> Iterator[bytes]:
        with self._http.sdk_errors():
            yield from self._http.client.api.logs(
                name, stream=True, follow=follow, tail=tail if tail is not None else "all"
            )

    def output_lines(
        self,
        name: str,
        since: str = "0",
        follow: bool = False,
        tail: int | None = None,
        stop: Cancel | None = None,
    ) -> Iterator[tuple[str, bytes]]:
        """(engine timestamp, line) for each line a container wrote to its standard
        output since `since` (seconds since the epoch, with up to nine decimals; lines
        at exactly that time come again). With `follow`, lines keep coming until the
        container stops, or until `stop` is set (the stream is shut down then, so a
        quiet container holds no reader); with `tail`, only the last `tail` lines come.
        Read from the engine's own log, so no process runs in the container, and a
        stopped one's output is there too."""
        query = {
            "stdout": "1",
            "stderr": "0",
            "timestamps": "1",
            "since": since,
            "follow": "1" if follow else "0",
            "tail": "all" if tail is None else str(tail),
        }
        path = f"/containers/{urllib.parse.quote(name)}/logs"
        conn = Connection(self.endpoint, None if follow else self.timeout)

        def shut() -> None:  # the read blocked in another thread returns at once
            if conn.sock is not None:
                conn.sock.shutdown(socket.SHUT_RDWR)

        with stop.on_set(shut) if stop is not None else contextlib.nullcontext():
            try:
                conn.request("GET", path + "?" + urllib.parse.urlencode(query))
                response = conn.getresponse()
                if response.status >= 400:
                    error = api_error(response.status, response.read())
                    if response.status == 404:
                        raise EngineNotFound(f"no container {name}")
                    raise error
                yield from lines(out for out, _err in demux(response.read1) if out)
            except (OSError, http.client.HTTPException) as exc:
                if stop is not None and stop.is_set():
                    return  # shut down on purpose
                raise EngineUnavailable(f"cannot reach the Docker engine ({exc})") from None
            finally:
                conn.close()

    def stats(self, name: str) -> Stats:
        """One-shot stats: no 1.5 s wait for a second sample."""
        found = self._get(
            f"/containers/{urllib.parse.quote(name)}/stats", {"stream": "false", "one-shot": "true"}
        )
        if found is None:
            raise EngineNotFound(f"no container {name}")
        return answers.from_docker_stats(found)

    def build(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        with self._http.sdk_errors():
            yield from self._http.client.api.build(decode=True, rm=True, forcerm=True, **kwargs)

    def pull(self, image: str) -> None:
        repo, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
        with self._http.sdk_errors():
            self._http.client.api.pull(repo or image, tag=tag or "latest")

    def import_image(self, tar_path: str, repository: str, tag: str) -> None:
        with self._http.sdk_errors():
            self._http.client.api.import_image_from_file(tar_path, repository=repository, tag=tag)
