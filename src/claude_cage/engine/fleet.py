"""Sessions on several Docker engines: which engine a session lives on, which engines
claude-cage watches, where `--engine auto` puts a new session, and asking every engine
at once within a time bound.

An engine is a Docker context or a URL (endpoints.py); "" is the local engine, shown as
`local`. A session records its engine when it starts, and every later command goes
there. `list` asks the local engine, the configured `engines` and every engine a
session records, all at once: one that does not answer within `engine_timeout` is
reported as unreachable, and the others are shown all the same.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from claude_cage import labels
from claude_cage.engine import endpoints
from claude_cage.engine.api import EngineAPI
from claude_cage.engine.client import Engine
from claude_cage.errors import BadInput, CageError, EngineUnavailable

AUTO = "auto"
LOCAL = "local"
T = TypeVar("T")


def canonical(name: str | None) -> str:
    """The name an engine is recorded under: "" for the local one."""
    return "" if name in (None, "", LOCAL) else str(name)


def engine_named(
    name: str | None,
    timeout: float | None = None,
    setting: str = "engine_call_timeout",
    unenforced_limits: Callable[[], bool] = lambda: False,
) -> Engine:
    """An engine by name; each call waits `timeout` (default: engine_call_timeout)."""
    return Engine(endpoints.resolve(canonical(name)), timeout, setting, unenforced_limits)


def configured(cfg_engines: Iterable[dict[str, Any]]) -> list[str]:
    """The local engine and the configured ones, in order, without repeats."""
    found = [""]
    for entry in cfg_engines:
        name = canonical(entry["name"])
        if name not in found:
            found.append(name)
    return found


def watched(cfg_engines: Iterable[dict[str, Any]], recorded: Iterable[str]) -> list[str]:
    """What `list` asks: the configured engines, plus any a session records."""
    found = configured(cfg_engines)
    for name in recorded:
        if canonical(name) not in found:
            found.append(canonical(name))
    return found


class Asking(Generic[T]):
    """One question put to several engines at once, each in its own thread.

    Engines can be added while the first ones answer, so a caller starts the slow ones
    (over SSH) before its own work and collects everything at the end. Each engine has
    `timeout` seconds from the moment it was asked; one still silent then is
    EngineUnavailable. The threads are daemons: a command never waits at exit for an
    engine that hangs.
    """

    def __init__(self, question: Callable[[Engine], T], timeout: float) -> None:
        self.question = question
        self.timeout = timeout
        self._asked: dict[str, float] = {}  # engine -> when it was asked (monotonic)
        self._answers: queue.Queue[tuple[str, Any]] = queue.Queue()

    @property
    def names(self) -> list[str]:
        return list(self._asked)

    def ask(self, name: str) -> None:
        if name not in self._asked:
            self._asked[name] = time.monotonic()
            threading.Thread(target=self._one, args=(name,), daemon=True).start()

    def _one(self, name: str) -> None:
        try:
            engine = engine_named(name, self.timeout, "engine_timeout")
            self._answers.put((name, self.question(engine)))
        except CageError as exc:
            self._answers.put((name, exc))
        except Exception as exc:  # a bug or a broken engine answer: shown, never a traceback
            self._answers.put((name, EngineUnavailable(f"engine {name or LOCAL}: {exc}")))

    def results(self) -> dict[str, T | CageError]:
        """Each engine's answer (the question's result, or the error it raised)."""
        results: dict[str, T | CageError] = {}
        while len(results) < len(self._asked):
            waiting = [at for name, at in self._asked.items() if name not in results]
            left = max(waiting) + self.timeout - time.monotonic()
            try:
                if left > 0:
                    name, answer = self._answers.get(timeout=left)
                else:  # past every deadline: an answer already there still counts
                    name, answer = self._answers.get_nowait()
            except queue.Empty:
                break
            results[name] = answer
        for name in self._asked:
            if name not in results:
                endpoint = endpoints.resolve(name)
                results[name] = EngineUnavailable(
                    f"{endpoint.described} did not answer within {self.timeout:g} s",
                    endpoint.unreachable_hint + " (config engine_timeout sets the bound)",
                )
        return results


def ask(
    names: list[str], question: Callable[[Engine], T], timeout: float
) -> dict[str, T | CageError]:
    """Ask every engine at once; each answer is the question's result, or the error it
    raised (EngineUnavailable for one silent after `timeout` seconds)."""
    asking = Asking(question, timeout)
    for name in names:
        asking.ask(name)
    return asking.results()


def running_count(engine: EngineAPI) -> int:
    """Sessions of this data directory that count towards the engine's max_sessions."""
    found = engine.list_containers(labels.owner_filters(role=labels.Role.SESSION))
    return sum(
        1
        for c in found
        if c.live and not labels.is_probe(c.labels)  # doctor's throwaway sessions never count
    )


@dataclass(frozen=True)
class Capacity:
    engine: str
    limit: int
    running: int

    @property
    def free(self) -> int:
        return self.limit - self.running


def limit_of(name: str, cfg_engines: Iterable[dict[str, Any]], default: int) -> int:
    for entry in cfg_engines:
        if canonical(entry["name"]) == canonical(name) and entry.get("max_sessions"):
            return int(entry["max_sessions"])
    return default


def place(cfg_engines: list[dict[str, Any]], max_sessions: int, timeout: float) -> str:
    """`--engine auto`: the engine with the most free capacity (its own max_sessions
    minus the sessions running there); the first listed wins a tie."""
    names = configured(cfg_engines)
    answers = ask(names, running_count, timeout)
    capacities = [
        Capacity(name, limit_of(name, cfg_engines, max_sessions), answer)
        for name, answer in answers.items()
        if isinstance(answer, int)
    ]
    open_ones = [c for c in capacities if c.free > 0]
    if not open_ones:
        unreachable = [n or LOCAL for n, a in answers.items() if not isinstance(a, int)]
        full = ", ".join(f"{c.engine or LOCAL} {c.running}/{c.limit}" for c in capacities)
        raise BadInput(
            "--engine auto: every engine is full"
            + (f" ({full})" if full else "")
            + (f"; unreachable: {', '.join(unreachable)}" if unreachable else ""),
            "stop a session ('claude-cage stop NAME'), add an engine to 'engines' in the "
            "config, or raise an engine's max_sessions",
        )
    best = max(open_ones, key=lambda c: (c.free, -names.index(c.engine)))
    return best.engine
