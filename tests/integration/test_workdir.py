"""Every entry point starts in the project: the first mount here (clones: test_clone)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Cage, inspect

pytestmark = pytest.mark.engine


def test_exec_shell_and_container_start_in_the_first_mount(cage: Cage, tmp_path: Path) -> None:
    first, second = tmp_path / "proj", tmp_path / "other"
    (first / "src").mkdir(parents=True)
    second.mkdir()
    name = cage.name()
    started = cage(
        "start", "--name", name, "--network", "none", "-d",
        "--mount", f"{first}:ro", "--mount", f"{second}:ro",
    )  # fmt: skip
    assert started.code == 0, started.output
    container = inspect(f"cage-{name}")
    assert container["Config"]["WorkingDir"] == "/workspace/proj"
    assert "CAGE_PROJECT=/workspace/proj" in container["Config"]["Env"]

    assert cage("exec", name, "--", "pwd").stdout.strip() == "/workspace/proj"
    sub = cage("exec", name, "--workdir", "src", "--", "pwd")
    assert sub.stdout.strip() == "/workspace/proj/src", sub.output
    assert cage("shell", name, input="pwd\n").stdout.strip() == "/workspace/proj"
    assert cage("shell", name, "--workdir", "src", input="pwd\n").stdout.strip() == (
        "/workspace/proj/src"
    )

    outside = cage("exec", name, "--workdir", "../other", "--", "pwd")
    assert outside.code == 2, outside.output
    assert "error: --workdir ../other is outside the project /workspace/proj" in outside.stderr
    assert "hint:" in outside.stderr
    assert cage("shell", name, "--workdir", "/etc", input="pwd\n").code == 2
    assert cage("attach", name, "--workdir", "/", input="").code == 2


def test_without_a_project_commands_start_in_workspace(cage: Cage) -> None:
    name = cage.name()
    assert cage("start", "--name", name, "--network", "none", "-d").code == 0
    assert cage("exec", name, "--", "pwd").stdout.strip() == "/workspace"
