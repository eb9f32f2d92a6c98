"""Engine stand-ins for offline tests, checked by mypy against engine_api.EngineAPI.

`UnusedEngine` implements the whole interface and refuses every call, so a fake answers
only what its test needs and a call the test did not expect fails loudly, while a
misspelt call fails the type check. `FakeEngine` answers list and status from captured
`docker inspect` and container-list JSON (tests/unit/fixtures), read into the typed
answers the engine returns (engine/answers.py).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from claude_cage import metadata
from claude_cage.engine import answers
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
from claude_cage.engine.endpoints import Endpoint

if TYPE_CHECKING:
    from claude_cage.cancel import Cancel
    from claude_cage.policy import ContainerSpec

FIXTURES = Path(__file__).parent / "fixtures"
PROBE_OUTPUT = (
    b"1000\nCapEff:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\nroot=read-only\n"
    b"kernel=host\noom_kill=0\n"
)


def frame(stream: int, data: bytes) -> bytes:
    """One frame of an exec's multiplexed stream (1: stdout, 2: stderr), as the engine
    sends it: the stream, three zero bytes, the size (big-endian), the data."""
    return struct.pack(">BxxxL", stream, len(data)) + data


def record(name: str, network: str = "filtered", status: str = "running") -> None:
    """Metadata for a session, as `start` would have written it."""
    store = metadata.SessionStore()
    with store.lock(name):
        store.write(
            name,
            {
                "name": name,
                "mode": "cli",
                "status": status,
                "created": "2026-01-02T03:04:05Z",
                "container": f"cage-{name}",
                "network": network,
                "image": "claude-cage-cli:latest",
            },
        )


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def session_inspect(name: str, owner: str, running: bool = True) -> Container:
    """The captured inspect of a filtered session, renamed and re-owned."""
    info: dict[str, Any] = copy.deepcopy(fixture("inspect-session.json"))
    info["Name"] = f"/cage-{name}"
    info["Config"]["Labels"].update({"cage.session": name, "cage.owner": owner})
    info["State"].update(Running=running, Status="running" if running else "exited")
    return answers.from_docker_inspect(info)


def companion_inspect(name: str, owner: str) -> Container:
    info: dict[str, Any] = copy.deepcopy(fixture("inspect-companion.json"))
    info["Name"] = f"/companion-cage-{name}"
    info["Config"]["Labels"].update({"cage.session": name, "cage.owner": owner})
    return answers.from_docker_inspect(info)


def list_entry(name: str, owner: str, state: str = "running") -> Container:
    """One entry of the engine's container list, as `list` gets it."""
    entry: dict[str, Any] = copy.deepcopy(fixture("list-session.json")[0])
    entry["Names"] = [f"/cage-{name}"]
    entry["Labels"].update({"cage.session": name, "cage.owner": owner})
    entry["State"] = state
    return answers.from_docker_list(entry)


def container(
    name: str, state: str = "running", labels: dict[str, str] | None = None, **fields: Any
) -> Container:
    """A container as a test states it: its name, its state's status, its labels."""
    status = answers.from_docker_state(state)
    return Container(id=f"id-{name}", name=name, labels=labels or {}, state=status, **fields)


def with_state(info: Container, **state: Any) -> Container:
    """`info` with some of its state's fields changed."""
    return dataclasses.replace(info, state=dataclasses.replace(info.state, **state))


LOCAL = Endpoint("", "unix:///var/run/docker.sock")


class UnusedEngine(EngineAPI):
    """The engine's whole interface, every call refused: a fake overrides what its test
    needs (mypy checks each override against EngineAPI)."""

    endpoint = LOCAL

    def _unused(self, call: str) -> NoReturn:
        raise NotImplementedError(f"{type(self).__name__} does not answer {call}")

    # --- queries ---
    def ping(self) -> EngineVersion:
        self._unused("ping")

    def info(self) -> EngineInfo:
        self._unused("info")

    def list_containers(self, labels: list[str] | None = None) -> list[Container]:
        self._unused("list_containers")

    def inspect(self, name: str) -> Container | None:
        self._unused("inspect")

    def stats(self, name: str) -> Stats:
        self._unused("stats")

    def stats_many(self, names: list[str]) -> dict[str, Stats | None]:
        self._unused("stats_many")

    # --- images ---
    def image_labels(self, image: str) -> dict[str, str] | None:
        self._unused("image_labels")

    def image_id(self, image: str) -> str | None:
        self._unused("image_id")

    def image_env(self, image: str) -> dict[str, str] | None:
        self._unused("image_env")

    def image_volumes(self, image: str) -> list[str] | None:
        self._unused("image_volumes")

    def require_image(self, image: str) -> None:
        self._unused("require_image")

    def save_image(self, image: str, chunk: int = 4 << 20) -> Iterator[bytes]:
        self._unused("save_image")

    def load_image(self, tar_chunks: Iterator[bytes]) -> None:
        self._unused("load_image")

    def build(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        self._unused("build")

    def pull(self, image: str) -> None:
        self._unused("pull")

    def import_image(self, tar_path: str, repository: str, tag: str) -> None:
        self._unused("import_image")

    # --- networks and volumes ---
    def network(self, name: str) -> Network | None:
        self._unused("network")

    def ensure_network(self, name: str, labels: dict[str, str]) -> None:
        self._unused("ensure_network")

    def list_networks(self) -> list[Network]:
        self._unused("list_networks")

    def remove_network(self, name: str) -> None:
        self._unused("remove_network")

    def volume_exists(self, name: str) -> bool:
        self._unused("volume_exists")

    def volume_labels(self, name: str) -> dict[str, str] | None:
        self._unused("volume_labels")

    def ensure_volume(
        self, name: str, labels: dict[str, str], driver_opts: dict[str, str] | None = None
    ) -> None:
        self._unused("ensure_volume")

    def remove_volume(self, name: str) -> bool:
        self._unused("remove_volume")

    def list_volumes(self) -> list[Volume]:
        self._unused("list_volumes")

    # --- containers ---
    def create(self, spec: ContainerSpec) -> str:
        self._unused("create")

    def start(self, name: str) -> None:
        self._unused("start")

    def stop(self, name: str, timeout: int = 10) -> None:
        self._unused("stop")

    def pause(self, name: str) -> None:
        self._unused("pause")

    def unpause(self, name: str) -> None:
        self._unused("unpause")

    def remove(self, name: str) -> bool:
        self._unused("remove")

    def put_archive(self, name: str, path: str, archive: Archive) -> None:
        self._unused("put_archive")

    def get_archive(self, name: str, path: str, chunk: int = 1 << 20) -> Iterator[bytes] | None:
        self._unused("get_archive")

    def log_tail(self, name: str, lines: int = 5) -> str:
        self._unused("log_tail")

    def logs(self, name: str, follow: bool, tail: int | None) -> Iterator[bytes]:
        self._unused("logs")

    def output_lines(
        self,
        name: str,
        since: str = "0",
        follow: bool = False,
        tail: int | None = None,
        stop: Cancel | None = None,
    ) -> Iterator[tuple[str, bytes]]:
        self._unused("output_lines")

    # --- exec ---
    def exec_run(
        self,
        name: str,
        cmd: list[str],
        stdin: bytes | None = None,
        user: str | None = None,
        limit: int | None = None,
    ) -> tuple[int, bytes]:
        self._unused("exec_run")

    def exec_output(
        self, name: str, cmd: list[str], stdin: bytes | None = None
    ) -> tuple[int, bytes, bytes]:
        self._unused("exec_output")

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
        self._unused("exec_attach")

    def exec_resize(self, exec_id: str, rows: int, cols: int) -> bool:
        self._unused("exec_resize")

    def exec_inspect(self, exec_id: str) -> Exec | None:
        self._unused("exec_inspect")

    def exit_code(self, exec_id: str) -> int:
        self._unused("exit_code")


class FakeEngine(UnusedEngine):
    """Answers list and status from typed answers, and counts every call made to it."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.containers: dict[str, Container] = {}  # inspect results by name
        self.listed: list[Container] = []
        self.probe_output = PROBE_OUTPUT
        self.calls: list[str] = []
        self.endpoint = LOCAL

    def add_session(self, name: str, running: bool = True, companion: bool = True) -> None:
        self.containers[f"cage-{name}"] = session_inspect(name, self.owner, running)
        if companion:
            self.containers[f"companion-cage-{name}"] = companion_inspect(name, self.owner)
        self.listed.append(list_entry(name, self.owner, "running" if running else "exited"))

    def list_containers(self, labels: list[str] | None = None) -> list[Container]:
        self.calls.append("list_containers")
        wanted = dict(label.split("=", 1) for label in labels or [])
        return [c for c in self.listed if all(c.labels.get(k) == v for k, v in wanted.items())]

    def inspect(self, name: str) -> Container | None:
        self.calls.append("inspect")
        return self.containers.get(name)

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
        """The probes of `status` answered as `exec_run` answers them; a read of Claude
        Code's state file with nothing (there is none)."""
        self.calls.append("exec_attach")
        mine, theirs = socket.socketpair()
        script = cmd[cmd.index("-c") + 1] if "-c" in cmd else ""
        if script.startswith("id -u") or "echo b0=" in script or "v1/messages" in script:
            payload = self._answer(cmd)[1]
            theirs.sendall(frame(1, payload))
        theirs.close()
        return "fake-exec", mine

    def exit_code(self, exec_id: str) -> int:
        return 0

    def exec_run(
        self,
        name: str,
        cmd: list[str],
        stdin: bytes | None = None,
        user: str | None = None,
        limit: int | None = None,
    ) -> tuple[int, bytes]:
        self.calls.append("exec_run")
        return self._answer(cmd)

    def _answer(self, cmd: list[str]) -> tuple[int, bytes]:
        if "cage-bridge-check.invalid" in cmd[-1] or "UNIX-CONNECT" in cmd[-1]:  # bridges: all work
            count = cmd[-1].count("echo b")
            return 0, "".join(f"b{i}=ok\n" for i in range(count)).encode()
        return 0, self.probe_output

    def stats(self, name: str) -> Stats:
        self.calls.append("stats")
        return answers.from_docker_stats({})  # no figures: status shows none


class EngineCalled(AssertionError):
    """An engine call where the test expects none (an AssertionError, so it fails the
    test even where the code under test catches its own errors)."""


class RefusingEngine(UnusedEngine):
    """An engine for refusals that must happen before any engine call: every call is
    recorded in `calls` (so one swallowed by an `except` still shows) and raises
    EngineCalled."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def _unused(self, call: str) -> NoReturn:
        self.calls.append(call)
        raise EngineCalled(f"the engine was called ({call}) where no call should be made")
