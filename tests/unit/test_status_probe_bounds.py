"""`status` runs its checks inside the session (the sandbox probe, the bridges, the model,
the MCP programs), where a process of the agent's can write into a probe's output
(/proc/PID/fd/1) and stop the probe (SIGSTOP): a flood, or a trickle that never ends.
Each check reads at most answer.PROBE_CAP bytes within its time, and fails. Offline,
over a socket pair standing in for the engine's exec stream, as a real session sends."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

from claude_cage import paths, sandbox
from claude_cage.engine.transport import frames
from claude_cage.operations import answer, bridges, model, usersetup
from tests.unit.fake_engine import UnusedEngine, frame, session_inspect

FLOOD = 64 << 20  # bytes the session would send
HUNG = 20.0  # seconds after which a read is taken as one that would never end


class Hostile(UnusedEngine):
    """A session whose every exec answers with a flood, or one byte a tenth of a second."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.sent = 0

    def _stream(self) -> socket.socket:
        ours, theirs = socket.socketpair()

        def send() -> None:
            block = b"A" * (64 << 10) if self.how == "flood" else b"x"
            framed = frame(1, block)
            with theirs:
                while self.sent < FLOOD:
                    try:
                        theirs.sendall(framed)
                    except OSError:  # the host stopped reading
                        return
                    self.sent += len(block)
                    if self.how == "trickle":
                        time.sleep(0.1)

        threading.Thread(target=send, daemon=True).start()
        return ours

    def exec_attach(self, name: str, cmd: list[str], **_: Any) -> tuple[str, socket.socket]:
        return "exec", self._stream()

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
        """As the engine client reads: to the end of the stream (a trickle never ends)."""
        began, kept = time.monotonic(), []
        with self._stream() as sock:
            for out, _err in frames(sock):
                kept.append(out or b"")
                if time.monotonic() - began > HUNG:
                    raise AssertionError("status would wait for the session for ever")
        return 0, b"".join(kept)


def checks(engine: Hostile) -> dict[str, Any]:
    info = session_inspect("web", paths.owner_id())
    servers: dict[str, object] = {"fs": {"type": "stdio", "command": "npx"}}
    try:
        missing: object = usersetup.missing_programs(engine, info.name, servers)
    except answer.NoAnswer as exc:
        missing = exc.message
    return {
        "inside": sandbox.probe_inside(engine, info),
        "bridges": bridges.check(engine, info),
        "model": model.check(engine, info.name, None),
        "missing": missing,
    }


@pytest.mark.parametrize("how", ["flood", "trickle"])
def test_a_session_cannot_flood_or_hold_up_statuss_checks(
    how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(answer, "PROBE_TIME", 1)
    monkeypatch.setattr(bridges, "PROBE_TIME", 0)
    monkeypatch.setattr(model, "TIMEOUT_SECONDS", 0)
    engine = Hostile(how)
    began = time.monotonic()
    found = checks(engine)
    assert time.monotonic() - began < 4 * 3  # each check within twice its time
    assert engine.sent < 4 * (answer.PROBE_CAP + (1 << 20))  # what the sockets buffer
    assert "error" in found["inside"]  # the inside check FAILs
    assert found["bridges"] and not any(found["bridges"].values())
    assert found["model"].ok is False
    assert isinstance(found["missing"], str)  # no answer, never a guess


def test_the_model_check_reads_no_curlrc_of_the_session() -> None:
    """The probe's HOME is the session's: a ~/.curlrc there (`proxy`, `connect-to`)
    would steer the check to a server of the agent's, answering 200."""
    assert model._PROBE.split("curl ", 1)[1].startswith("-q ")  # -q: first, or curl reads it
