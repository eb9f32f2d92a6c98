"""Every entry point starts in the project: the first mount here (clones: test_clone)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Cage, inspect
from tests.integration.terminal import Terminal
from tests.integration.test_attach import on_a_tty
from tests.integration.workspace_helpers import make_repo

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
    refused = on_a_tty(cage, ["claude-cage", "attach", name, "--workdir", "/"])
    assert "--workdir / is outside the project /workspace/proj" in refused, refused


def test_without_a_project_commands_start_in_workspace(cage: Cage) -> None:
    name = cage.name()
    assert cage("start", "--name", name, "--network", "none", "-d").code == 0
    assert cage("exec", name, "--", "pwd").stdout.strip() == "/workspace"


ONBOARDED = '{"hasCompletedOnboarding": true, "theme": "dark"}'


def test_claude_code_asks_to_trust_the_project(cage: Cage, tmp_path: Path) -> None:
    """Interactive start and attach: Claude Code's trust dialog names the project (a clone
    here), not /workspace. Its onboarding is marked done so the dialog comes first. (attach
    --workdir only places a Claude Code that attach itself starts: one already running
    stays where it is.)"""
    repo = make_repo(tmp_path / "proj")
    name = cage.name()
    started = cage("start", "--name", name, "--network", "none", "-d", "--clone", str(repo))
    assert started.code == 0, started.output
    # `start -d` started a Claude Code before the onboarding is marked done: it writes its
    # own .claude.json, so it must be gone first (on --network none it exits by itself).
    # The one the next start begins reads the mark (the data volume keeps it).
    seed = cage(
        "exec", name, "--", "sh", "-c",
        "for i in $(seq 100); do pgrep -x claude >/dev/null || break; sleep 0.1; done; "
        f"pkill -KILL -x claude; echo '{ONBOARDED}' > ~/.claude/.claude.json",
    )  # fmt: skip
    assert seed.code == 0, seed.output
    assert cage("stop", name).code == 0
    assert cage("start", "--name", name, "-d").code == 0
    # Neither command ends by itself (Claude Code waits at its dialog): each is read
    # until the dialog shows, however long a loaded machine takes to start it.
    trust_dialog_shows(cage, ["claude-cage", "attach", name])
    # start on a terminal (again, after a stop) starts Claude Code in the project itself,
    # and a later attach comes back to that same Claude Code.
    assert cage("stop", name).code == 0
    trust_dialog_shows(cage, ["claude-cage", "start", "--name", name])


def trust_dialog_shows(cage: Cage, argv: list[str]) -> None:
    terminal = Terminal(argv, cage.env)
    try:
        terminal.expect("Accessing workspace: /workspace/proj ", timeout=120)
    finally:
        terminal.close()


def test_the_desktop_terminal_starts_in_the_project(cage: Cage, tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    name = cage.name()
    started = cage("start", "--name", name, "--mode", "desktop", "-d", "--mount", f"{project}:ro")
    assert started.code == 0, started.output
    # The xterm runs `bash -lc 'claude; exec bash'`; its working directory is the project.
    find = (
        "for i in $(seq 100); do for p in /proc/[0-9]*; do"
        " if grep -q 'exec bash' $p/cmdline 2>/dev/null; then readlink $p/cwd; exit 0; fi;"
        " done; sleep 0.2; done; exit 1"
    )
    found = cage("exec", name, "--", "sh", "-c", find)
    assert found.code == 0, found.output
    assert found.stdout.strip() == "/workspace/proj"
