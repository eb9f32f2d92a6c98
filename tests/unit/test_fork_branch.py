"""A clone fork's branch and starting point: found in a throwaway container with the
session's sandbox, before the new session starts (operations/fork.py). Offline, with an
engine that records what it is asked."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

import pytest

from claude_cage.config import parse_size
from claude_cage.context import Context
from claude_cage.engine.answers import Container
from claude_cage.errors import EngineError
from claude_cage.operations import fork
from claude_cage.policy import ContainerSpec
from claude_cage.record import SessionRecord
from tests.unit.fake_engine import UnusedEngine, frame

TIP = "a" * 40


class Recording(UnusedEngine):
    """Answers each exec in the throwaway with `printed` on stdout and `said` on stderr
    (sent in the background: the reader reads as it comes), or with silence."""

    def __init__(
        self, printed: bytes = TIP.encode() + b"\n", said: bytes = b"", silent: bool = False
    ) -> None:
        super().__init__()
        self.printed, self.said, self.silent = printed, said, silent
        self.calls: list[tuple[str, Any]] = []
        self.specs: list[ContainerSpec] = []

    def inspect(self, name: str) -> Container | None:
        self.calls.append(("inspect", name))
        return None  # the new session's container is not made yet

    def volume_labels(self, name: str) -> dict[str, str] | None:
        return {}

    def remove(self, name: str) -> bool:
        self.calls.append(("remove", name))
        return True

    def create(self, spec: ContainerSpec) -> str:
        self.calls.append(("create", spec.name))
        self.specs.append(spec)
        return "id"

    def start(self, name: str) -> None:
        self.calls.append(("start", name))

    def exec_attach(self, name: str, cmd: list[str], **kwargs: object) -> tuple[str, socket.socket]:
        self.calls.append(("exec", name))
        ours, theirs = socket.socketpair()
        threading.Thread(target=self._answer, args=(theirs,), daemon=True).start()
        return "exec-1", ours

    def _answer(self, theirs: socket.socket) -> None:
        with theirs:
            if self.silent:
                theirs.recv(1)  # until the reader gives up and closes its end
                return
            with contextlib.suppress(OSError):  # the reader stopped reading: too much
                theirs.sendall(frame(2, self.said) + frame(1, self.printed))

    def exit_code(self, exec_id: str) -> int:
        return 0


def new_record() -> SessionRecord:
    return SessionRecord(
        name="web-2", repo_name="proj", branch="cage/web-2", base="b" * 40, uid=1000,
        gid=1000, cpus=1.5, memory="3g", runtime="runc", network="filtered", mode="cli",
        image="claude-cage-cli:latest",
    )  # fmt: skip


def test_the_starting_point_comes_from_a_throwaway_with_the_sessions_sandbox() -> None:
    engine = Recording()
    tip = fork._own_branch(Context(), engine, new_record(), "cage/web")
    assert tip == TIP
    (spec,) = engine.specs
    # Never the new session's own container: none of its processes can reach the output.
    assert spec.name != "cage-web-2"
    assert all(name == spec.name for kind, name in engine.calls if kind == "exec")
    kinds = [k for k, _ in engine.calls]
    assert kinds == ["inspect", "remove", "create", "start", "exec", "exec", "remove"]
    assert spec.user == "1000:1000" and spec.network_mode == "none"
    assert spec.cap_add == [] and spec.cap_drop == ["ALL"] and spec.read_only
    # git there reads what the agent wrote: the session's sandbox bounds it.
    assert spec.mem_limit == parse_size("3g") and spec.nano_cpus == int(1.5e9)
    assert spec.pids_limit > 0 and spec.runtime == "runc"
    assert any(o.startswith("seccomp=") for o in spec.security_opt)
    assert [v["source"] for v in spec.volumes] == ["cage-work-web-2"]
    assert spec.volumes[0]["target"] == "/workspace/proj" and spec.binds == []


@pytest.mark.parametrize(
    "printed", [b"", b"not a commit\n", b"a" * 39 + b"\n", b"g" * 40 + b"\n", b"A" * 40 + b"\n"]
)
def test_no_valid_commit_is_one_clear_error_and_the_helper_is_removed(printed: bytes) -> None:
    engine = Recording(printed)
    with pytest.raises(EngineError, match="could not give web-2 its own branch"):
        fork._own_branch(Context(), engine, new_record(), "cage/web")
    assert engine.calls[-1][0] == "remove"


def test_what_git_says_there_is_read_within_a_cap() -> None:
    """git in the throwaway reads what the agent wrote (a `.gitattributes` can make it
    warn once per file): more than ANSWER_CAP is one clear error, never host memory."""
    engine = Recording(said=b"warning: LF will be replaced by CRLF\n" * 40_000)
    with pytest.raises(EngineError, match=r"could not give web-2 its own branch.*more than"):
        fork._own_branch(Context(), engine, new_record(), "cage/web")
    assert engine.calls[-1][0] == "remove"


def test_git_there_has_a_time_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fork, "TIME_LIMIT", 1)
    engine = Recording(silent=True)
    with pytest.raises(EngineError, match="did not answer within 1 s"):
        fork._own_branch(Context(), engine, new_record(), "cage/web")
    assert engine.calls[-1][0] == "remove"
