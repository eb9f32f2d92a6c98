"""An exec's output is gathered in memory only up to the caller's limit: a session
that answers with endless bytes (a link to /dev/zero where a note was) is cut off."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from claude_cage.engine.client import Engine
from claude_cage.errors import EngineError


class Endless:
    def __init__(self) -> None:
        self.sent = 0
        self.closed = False

    def start(self, exec_id: str, stdin: bytes | None) -> Generator[tuple[Any, Any], None, None]:
        try:
            while True:
                self.sent += 65536
                yield bytes(65536), None
        finally:
            self.closed = True


def engine(stream: Endless, monkeypatch: pytest.MonkeyPatch) -> Engine:
    client = Engine.__new__(Engine)
    monkeypatch.setattr(client, "_exec_create", lambda *a, **k: "exec-1", raising=False)
    monkeypatch.setattr(client, "_exec_start", stream.start, raising=False)
    monkeypatch.setattr(client, "_exit_code", lambda exec_id: 0, raising=False)
    return client


def test_output_past_the_limit_is_refused_and_the_stream_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = Endless()
    with pytest.raises(EngineError, match="said more than 1048576 bytes") as refused:
        engine(stream, monkeypatch).exec_run("cage-x", ["true"], limit=1 << 20)
    assert stream.closed and stream.sent <= (1 << 20) + 65536
    assert "\n" not in refused.value.message


def test_output_within_the_limit_is_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    client = engine(Endless(), monkeypatch)

    def short(exec_id: str, stdin: bytes | None) -> Generator[tuple[Any, Any], None, None]:
        yield b"out\n", None
        yield None, b"err\n"

    monkeypatch.setattr(client, "_exec_start", short, raising=False)
    assert client.exec_run("cage-x", ["true"], limit=8) == (0, b"out\nerr\n")
