"""`gc` exits 1 when any item could not be removed (its row says why), with --json
too, and 0 when all went."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from claude_cage.cli import cli
from claude_cage.errors import CageError
from claude_cage.operations import cleanup


def outcome(monkeypatch: pytest.MonkeyPatch, *outcomes: str) -> None:
    items = [
        cleanup.Leftover("web", "volume", f"cage-data-web{i}", "no metadata", result)
        for i, result in enumerate(outcomes)
    ]
    monkeypatch.setattr(cleanup, "plan_gc", lambda _ctx: cleanup.GcPlan())
    monkeypatch.setattr(
        cleanup, "gc", lambda _ctx, remove_stale=False, dry_run=False, purge=False: items
    )


@pytest.mark.parametrize("as_json", [False, True])
def test_gc_exits_1_when_a_row_failed(
    config_dir: Path, monkeypatch: pytest.MonkeyPatch, as_json: bool
) -> None:
    outcome(monkeypatch, "removed", "failed")
    result = CliRunner().invoke(cli, ["gc", "--yes", *(["--json"] if as_json else [])])
    error = result.exception  # main() shows it as one line, with its exit code
    assert isinstance(error, CageError) and error.exit_code == 1, result.output
    assert error.message == "gc could not remove 1 item(s): volume cage-data-web1"
    if as_json:
        assert [i["outcome"] for i in json.loads(result.stdout)["items"]] == ["removed", "failed"]


def test_gc_exits_0_when_all_went(config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outcome(monkeypatch, "removed", "adopted")
    result = CliRunner().invoke(cli, ["gc", "--yes"])
    assert result.exit_code == 0, result.output
