"""Every engine call has a deadline: an engine that takes the connection and answers
nothing is EngineStalled within the call's bound, named with the setting that sets
it; the same engine then fails at once for the rest of the command; after Ctrl-C,
the calls left share one second."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from claude_cage import interrupt
from claude_cage.engine import transport
from claude_cage.engine.client import Engine
from claude_cage.engine.endpoints import Endpoint
from claude_cage.errors import EngineStalled


@pytest.fixture
def silent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Endpoint]:
    """An engine socket that takes connections (the kernel queues them) and never
    answers."""
    monkeypatch.setattr(transport, "_stalled", {})
    monkeypatch.setattr(interrupt, "_deadline", None)
    path = tmp_path / "engine.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(64)
    try:
        yield Endpoint("", f"unix://{path}")
    finally:
        server.close()


def test_a_silent_engine_is_stalled_within_the_bound_and_then_at_once(
    silent: Endpoint,
) -> None:
    engine = Engine(silent, timeout=0.3)
    began = time.monotonic()
    with pytest.raises(EngineStalled) as caught:
        engine.inspect("x")
    assert 0.25 < time.monotonic() - began < 2
    assert "did not answer within 0.3 s" in caught.value.message
    assert "engine_call_timeout" in (caught.value.hint or "")
    began = time.monotonic()
    with pytest.raises(EngineStalled):
        Engine(silent, timeout=0.3).list_containers()  # another Engine, the same engine
    assert time.monotonic() - began < 0.1


def test_the_hint_names_the_setting_that_bounds_the_call(silent: Endpoint) -> None:
    with pytest.raises(EngineStalled) as caught:
        Engine(silent, timeout=0.2, setting="engine_timeout").list_containers()
    assert "config engine_timeout" in (caught.value.hint or "")


def test_after_an_interrupt_the_calls_left_share_one_second(silent: Endpoint) -> None:
    engine = Engine(silent, timeout=30)
    interrupt.begin()
    began = time.monotonic()
    for _ in range(5):
        with pytest.raises(Exception):  # noqa: B017 - whichever error: it must be quick
            engine.remove("x")
    assert time.monotonic() - began < interrupt.BUDGET_S + 0.5
    assert transport._stalled == {}  # the engine was not the one out of time


def test_a_pool_lets_a_stuck_worker_go_on_an_interrupt() -> None:
    import threading

    release = threading.Event()
    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt), interrupt.pool(1) as pool:
        pool.submit(release.wait, 10)
        raise KeyboardInterrupt
    assert time.monotonic() - began < 1
    release.set()
