"""Names a session supplies (its own ~/.claude.json) reach the operator's terminal in
warnings: each stays on one line, so a session cannot print lines of its own making."""

from __future__ import annotations

import json
import socket
import struct
from typing import Any, cast

import pytest

from claude_cage import userconfig
from claude_cage.engine.api import EngineAPI
from claude_cage.operations import usersetup
from claude_cage.render import warn
from tests.unit.fake_engine import frame

FORGED = "fs\nwarning: \x1b[32mall sessions are isolated\x1b[0m\r\nok"


class Session:
    """An engine whose session holds a hostile .claude.json and lacks every program."""

    def exec_attach(self, container: str, cmd: list[str], **_: Any) -> tuple[str, socket.socket]:
        script = cmd[cmd.index("-c") + 1]
        if script == usersetup.MISSING:
            payload = "\n".join(cmd[cmd.index("-c") + 3 :]).encode()
        else:
            servers = {FORGED: {"type": "stdio", "command": "npx"}}
            payload = json.dumps({"mcpServers": servers}).encode()
        ours, theirs = socket.socketpair()
        theirs.sendall(frame(1, payload))
        theirs.close()
        return "exec", ours

    def exit_code(self, exec_id: str) -> int:
        return 0


def engine() -> EngineAPI:
    return cast(EngineAPI, Session())


def one_line_each(messages: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert messages
    for message in messages:
        warn(message)
    printed = capsys.readouterr().err
    assert printed.count("\n") == len(messages) and "\r" not in printed and "\x1b" not in printed


def test_a_session_named_mcp_server_cannot_forge_lines_in_status(
    capsys: pytest.CaptureFixture[str],
) -> None:
    servers = {FORGED: {"type": "stdio", "command": "np\x1b[2Jx"}}
    missing = usersetup.missing_programs(engine(), "c", servers)
    assert missing  # the hostile name and program were read
    one_line_each([usersetup.missing_line(*pair) for pair in missing.items()], capsys)


class Seeding:
    """An engine whose session answers the start's one exec (usersetup.SEED): no state,
    a hostile write error, and every program missing."""

    def __init__(self, write_error: bytes) -> None:
        self.write_error = write_error

    def exec_attach(self, container: str, cmd: list[str], **_: Any) -> tuple[str, socket.socket]:
        at = cmd.index("-c")
        assert cmd[at + 1 : at + 4] == [usersetup.SEED_THEN, "sh", usersetup.SEED]
        ours, theirs = socket.socketpair()
        listed = "".join(f"{p}\n" for p in cmd[at + 7 : cmd.index("--")])
        said = f"{listed}={usersetup.WRITE_FAILED}\n".encode()
        for kind, payload in ((1, b"0\n"), (2, self.write_error), (1, said)):
            theirs.sendall(bytes([kind, 0, 0, 0]) + struct.pack(">I", len(payload)) + payload)
        theirs.shutdown(socket.SHUT_WR)  # open to what the host writes, as a session is
        self.theirs = theirs
        return "exec", ours

    def exit_code(self, exec_id: str) -> int:
        self.theirs.close()
        return usersetup.WRITE_FAILED


def test_nor_in_starts_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    carried = userconfig.Carried(mcp_servers={FORGED: {"type": "stdio", "command": "np\x1b[2Jx"}})
    session = cast(EngineAPI, Seeding(b"denied\nwarning: forged\n"))
    warnings = usersetup.seed(session, "c", carried, ["/workspace"]).warnings
    assert any("could not write" in w for w in warnings)
    assert any("is not in the session's image" in w for w in warnings)
    one_line_each(warnings, capsys)
