"""Reading a session's answer (operations/answer.py): silence is one NoAnswer, and the
socket is closed after. Offline, over a socket pair standing in for the engine's exec
stream."""

from __future__ import annotations

import socket

import pytest

from claude_cage.operations import answer
from tests.unit.fake_engine import UnusedEngine


class _Exec(UnusedEngine):
    """An engine whose exec stream is one end of a socket pair; the test holds the other."""

    def __init__(self) -> None:
        super().__init__()
        self.ours, self.theirs = socket.socketpair()

    def exec_attach(self, name: str, cmd: list[str], **kwargs: object) -> tuple[str, socket.socket]:
        return "exec-1", self.ours


@pytest.mark.parametrize("how", ["ask", "exchange"])
def test_silence_is_no_answer_and_the_stream_is_closed(how: str) -> None:
    engine = _Exec()
    with pytest.raises(answer.NoAnswer, match="did not answer within 1 s"):
        if how == "ask":
            answer.ask(engine, "cage-web", ["true"], cap=1024, limit=1)
        else:
            answer.exchange(
                engine, "cage-web", ["true"], lambda _: None, cap=1024, limit=1, patience=1
            )
    assert engine.ours.fileno() == -1  # closed
    engine.theirs.close()
