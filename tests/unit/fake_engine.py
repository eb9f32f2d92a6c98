"""An engine stand-in for offline tests of list and status, fed with captured
`docker inspect` and container-list JSON (tests/unit/fixtures)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from claude_cage.endpoints import Endpoint

FIXTURES = Path(__file__).parent / "fixtures"
PROBE_OUTPUT = (
    b"1000\nCapEff:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\nroot=read-only\n"
    b"kernel=host\noom_kill=0\n"
)


def record(name: str, network: str = "filtered", status: str = "running") -> None:
    """Metadata for a session, as `start` would have written it."""
    from claude_cage import metadata

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


def session_inspect(name: str, owner: str, running: bool = True) -> dict[str, Any]:
    """The captured inspect of a filtered session, renamed and re-owned."""
    info = copy.deepcopy(fixture("inspect-session.json"))
    info["Name"] = f"/cage-{name}"
    info["Config"]["Labels"].update({"cage.session": name, "cage.owner": owner})
    info["State"].update(Running=running, Status="running" if running else "exited")
    return info


def companion_inspect(name: str, owner: str) -> dict[str, Any]:
    info = copy.deepcopy(fixture("inspect-companion.json"))
    info["Name"] = f"/companion-cage-{name}"
    info["Config"]["Labels"].update({"cage.session": name, "cage.owner": owner})
    return info


def list_entry(name: str, owner: str, state: str = "running") -> dict[str, Any]:
    """One entry of the engine's container list, as `list` gets it."""
    entry = copy.deepcopy(fixture("list-session.json")[0])
    entry["Names"] = [f"/cage-{name}"]
    entry["Labels"].update({"cage.session": name, "cage.owner": owner})
    entry["State"] = state
    return entry


class FakeEngine:
    """Answers from dicts, and counts every call made to it."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.containers: dict[str, dict[str, Any]] = {}  # inspect results by name
        self.listed: list[dict[str, Any]] = []
        self.probe_output = PROBE_OUTPUT
        self.calls: list[str] = []
        self.endpoint = Endpoint("", "unix:///var/run/docker.sock")  # the local engine

    def add_session(self, name: str, running: bool = True, companion: bool = True) -> None:
        self.containers[f"cage-{name}"] = session_inspect(name, self.owner, running)
        if companion:
            self.containers[f"companion-cage-{name}"] = companion_inspect(name, self.owner)
        self.listed.append(list_entry(name, self.owner, "running" if running else "exited"))

    def list_containers(self, labels: list[str] | None = None) -> list[dict[str, Any]]:
        self.calls.append("list_containers")
        wanted = dict(label.split("=", 1) for label in labels or [])
        return [c for c in self.listed if all(c["Labels"].get(k) == v for k, v in wanted.items())]

    def inspect(self, name: str) -> dict[str, Any] | None:
        self.calls.append("inspect")
        return copy.deepcopy(self.containers.get(name))

    def exec_run(self, name: str, cmd: list[str], **_kwargs: Any) -> tuple[int, bytes]:
        self.calls.append("exec_run")
        if "CAGE-BRIDGE-CHECK" in cmd[-1] or "UNIX-CONNECT" in cmd[-1]:  # bridges: all work
            count = cmd[-1].count("echo b")
            return 0, "".join(f"b{i}=ok\n" for i in range(count)).encode()
        return 0, self.probe_output

    def __getattr__(self, method: str) -> Any:
        """Any other engine call (stats, say) answers empty."""
        if method.startswith("_"):
            raise AttributeError(method)

        def empty(*_args: Any, **_kwargs: Any) -> dict[str, Any]:
            self.calls.append(method)
            return {}

        return empty
