"""A command picks a session's engine from its record before it takes the session's
lock; a start on another engine may record the session in between. Under the lock the
command must see that, not act on its own engine: a second `start` made a second copy
of the session there (the first one left running, unrecorded), and a `destroy` said
"destroyed" while the session ran on, on the other engine, with no record."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from claude_cage import paths
from claude_cage.context import Context
from claude_cage.engine import fleet
from claude_cage.engine.api import EngineAPI
from claude_cage.errors import CageError
from claude_cage.operations import session, teardown
from claude_cage.operations.inputs import StartOptions
from tests.unit.fake_engine import FakeEngine

FAR = "ssh://me@far-box"


class EmptyEngine(FakeEngine):
    """The engine the command chose (the local one): nothing of the session is here."""

    def volume_labels(self, name: str) -> dict[str, str] | None:
        return None

    def remove_volume(self, name: str) -> bool:
        return False

    def image_labels(self, image: str) -> dict[str, str] | None:
        return None

    def require_image(self, image: str) -> None:
        return None


def raced(name: str, command: Callable[[Context], object]) -> tuple[Any, EmptyEngine]:
    """Run `command` while a start on FAR holds the session's lock and records it there,
    after the command chose its engine: (what it returned or raised, its engine)."""
    ctx = Context(environ={"ANTHROPIC_API_KEY": "sk-ant-api03-" + "x" * 40})
    local = EmptyEngine(paths.owner_id())
    chosen = threading.Event()

    def engine_named(
        wanted: str | None, timeout: float | None = None, setting: str = ""
    ) -> EngineAPI:
        assert fleet.canonical(wanted) == "", "the command read the record after it"
        chosen.set()
        return local

    ctx.engine_named = engine_named  # type: ignore[method-assign,assignment]
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(command(ctx))
        except Exception as exc:  # the outcome is what the test checks
            outcome.append(exc)

    with ctx.store.lock(name):  # the start on FAR, at work
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        assert chosen.wait(10)
        ctx.store.write(
            name,
            {
                "mode": "cli",
                "status": "running",
                "created": "2026-01-02T03:04:05Z",
                "container": f"cage-{name}",
                "network": "filtered",
                "image": "claude-cage-cli:latest",
                "engine": FAR,
            },
        )
    thread.join(20)
    assert outcome, "the command did not end"
    return outcome[0], local


@pytest.mark.parametrize(
    "command",
    [
        lambda ctx: session.start(ctx, StartOptions(name="twin")),
        lambda ctx: teardown.destroy(ctx, "twin", force=True, purge=True),
        lambda ctx: teardown.stop(ctx, "twin"),
    ],
    ids=["start", "destroy", "stop"],
)
def test_a_session_recorded_on_another_engine_meanwhile_is_refused(
    config_dir: Path, command: Callable[[Context], object]
) -> None:
    result, _local = raced("twin", command)
    assert isinstance(result, CageError), result
    assert f"recorded on engine {FAR}" in result.message
    record = Context().store.load("twin")
    assert record is not None and record.engine == FAR  # the far session stays recorded
