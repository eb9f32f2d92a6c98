"""What a clone's refusal says, and gc keeping a damaged clone's volume (no engine)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from claude_cage import metadata
from claude_cage.context import Context
from claude_cage.engine.api import EngineAPI
from claude_cage.kinds import Status
from claude_cage.operations.cleanup import Leftover, SessionObjects, _keep_unfetched
from claude_cage.operations.unfetched import Unfetched, _printable
from claude_cage.record import SessionRecord


def test_the_message_names_the_commits_and_the_changes() -> None:
    assert not Unfetched("cage/s")
    one = Unfetched("cage/s", 1, ["abc1234 agent: first"])
    assert one.describe() == "1 commit not fetched (abc1234 agent: first)"
    many = Unfetched("cage/s", 7, ["a x", "b y"], uncommitted=True)
    assert many.describe() == (
        "7 commits not fetched (a x; b y, ...), uncommitted changes in the session"
    )
    assert Unfetched("cage/s", uncommitted=True).describe() == "uncommitted changes in the session"


def test_subjects_from_the_session_cannot_reach_the_terminal() -> None:
    said = _printable("evil \x1b]52;c;aGk=\x07 \u202e end" + "x" * 200)
    assert said.startswith("evil ?]52;c;aGk=? ? end") and len(said) == 72


class NoEngine:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the engine was asked: {name}")


def planned(name: str) -> list[Leftover]:
    return [
        Leftover(name, "volume", f"cage-work-{name}", "r"),
        Leftover(name, "volume", f"cage-data-{name}", "r"),
        Leftover(name, "metadata", name, "r"),
    ]


def test_gc_keeps_the_clone_volume_of_a_damaged_record() -> None:
    damaged = metadata.DamagedMetadata("s", Path("/d/sessions/s/metadata"), "empty")
    items = planned("s")
    _keep_unfetched(
        Context(), cast(EngineAPI, NoEngine()), SessionObjects("s", damaged=damaged), items
    )
    assert [i.outcome for i in items] == ["unfetched", "planned", "planned"]
    assert "metadata is damaged" in items[0].reason and "--discard s" in items[0].reason


def test_gc_does_not_check_what_is_thrown_away_or_never_started() -> None:
    clone = {"repo": "/r", "repo_name": "r", "base": "0" * 40}
    for meta in (
        None,  # no record ever
        SessionRecord("s", ephemeral=True, **clone),
        SessionRecord("s", status=Status.STARTING, **clone),
        SessionRecord("s"),  # no clone
    ):
        items = planned("s")
        _keep_unfetched(
            Context(), cast(EngineAPI, NoEngine()), SessionObjects("s", meta=meta), items
        )
        assert [i.outcome for i in items] == ["planned"] * 3
