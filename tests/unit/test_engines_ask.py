"""Asking several engines at once: each has the time bound from when it was asked, and
an answer that came in time counts, however late the caller collects it."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from claude_cage.engine import endpoints, fleet
from claude_cage.errors import CageError, EngineUnavailable


class Named:
    def __init__(self, name: str) -> None:
        self.name = name


@pytest.fixture(autouse=True)
def no_real_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        fleet, "engine_named", lambda name, timeout=None, setting="", **_: Named(name)
    )
    monkeypatch.setattr(
        endpoints, "resolve", lambda name: endpoints.Endpoint(name=name, host=f"tcp://{name}")
    )


def test_answers_that_came_in_time_count_when_collected_late() -> None:
    asking: fleet.Asking[str] = fleet.Asking(lambda e: f"hi from {e.name}", timeout=0.2)
    asking.ask("a")
    asking.ask("b")
    time.sleep(0.5)  # the caller's own work outlasts the bound
    assert asking.results() == {"a": "hi from a", "b": "hi from b"}


def test_a_silent_engine_is_unavailable_and_the_others_answer() -> None:
    hang = threading.Event()

    def question(engine: Any) -> str:
        if engine.name == "silent":
            hang.wait(5)
        return engine.name

    asking: fleet.Asking[str] = fleet.Asking(question, timeout=0.3)
    for name in ("", "fast", "silent"):
        asking.ask(name)
    began = time.monotonic()
    results = asking.results()
    hang.set()
    assert time.monotonic() - began < 2
    assert results[""] == "" and results["fast"] == "fast"
    silent = results["silent"]
    assert isinstance(silent, EngineUnavailable)
    assert "did not answer within 0.3 s" in silent.message


def test_an_engine_asked_later_gets_its_own_bound() -> None:
    def question(engine: Any) -> str:
        time.sleep(0.3)
        return engine.name

    asking: fleet.Asking[str] = fleet.Asking(question, timeout=0.5)
    asking.ask("first")
    time.sleep(0.4)
    asking.ask("later")  # 0.4 s after the first: it still has its 0.5 s
    assert asking.results() == {"first": "first", "later": "later"}


def test_errors_are_answers() -> None:
    def question(engine: Any) -> str:
        if engine.name == "broken":
            raise ValueError("bad JSON")
        raise CageError("refused")

    results = fleet.ask(["broken", "refusing"], question, timeout=1)
    assert isinstance(results["broken"], EngineUnavailable)
    assert "bad JSON" in results["broken"].message
    assert isinstance(results["refusing"], CageError)
    assert results["refusing"].message == "refused"
