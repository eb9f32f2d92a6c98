"""Names a session supplies (its own ~/.claude.json) reach the operator's terminal in
warnings: each stays on one line, so a session cannot print lines of its own making."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from claude_cage import userconfig
from claude_cage.engine.api import EngineAPI
from claude_cage.operations import usersetup
from claude_cage.render import warn

FORGED = "fs\nwarning: \x1b[32mall sessions are isolated\x1b[0m\r\nok"


class Session:
    """An engine whose session holds a hostile .claude.json and lacks every program."""

    def __init__(self, write_error: bytes = b"") -> None:
        self.write_error = write_error

    def exec_run(self, container: str, cmd: list[str], **_: Any) -> tuple[int, bytes]:
        script = cmd[cmd.index("-c") + 1]
        if script == usersetup.MISSING:
            return 0, "\n".join(cmd[cmd.index("-c") + 3 :]).encode()
        if script == usersetup.WRITE:
            return (1, self.write_error) if self.write_error else (0, b"")
        servers = {FORGED: {"type": "stdio", "command": "npx"}}
        return 0, json.dumps({"mcpServers": servers}).encode()


def engine(write_error: bytes = b"") -> EngineAPI:
    return cast(EngineAPI, Session(write_error))


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


def test_nor_in_starts_warnings(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(usersetup, "_read_state", lambda engine, container: {})
    carried = userconfig.Carried(mcp_servers={FORGED: {"type": "stdio", "command": "a\nb"}})
    warnings = usersetup.seed(engine(b"denied\nwarning: forged\n"), "c", carried, ["/workspace"])
    assert any("could not write" in w for w in warnings)
    one_line_each(warnings, capsys)
