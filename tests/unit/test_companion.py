"""What `status` says about a running session's companion."""

from __future__ import annotations

from claude_cage.engine.answers import Container, Settings, State
from claude_cage.operations.companion import problem


def inspect(running: bool, exit_code: int = 0, oom: bool = False) -> Container:
    state = State(running=running, exit_code=exit_code, oom_killed=oom)
    return Container(
        id="c", name="companion-cage-web", state=state, settings=Settings(pids_limit=192)
    )


def test_a_healthy_companion_has_no_problem() -> None:
    assert problem("web", inspect(True), pids=20) is None
    assert problem("web", inspect(True), pids=None) is None


def test_a_dead_or_missing_companion_is_named_with_the_way_back() -> None:
    for info, why in (
        (inspect(False, 137), "exited with code 137"),
        (inspect(False, 137, oom=True), "out of memory"),
        (None, "gone"),
    ):
        text = problem("web", info) or ""
        assert why in text and "no proxy" in text
        assert "claude-cage start web" in text


def test_a_companion_at_its_process_limit_is_overloaded() -> None:
    text = problem("web", inspect(True), pids=180) or ""
    assert "overloaded (180 of 192 processes)" in text
    assert "claude-cage start web" in text
