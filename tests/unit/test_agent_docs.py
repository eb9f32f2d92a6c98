"""The Claude Code agent files tell Claude to run claude-cage commands: every one of
them must exist and parse, so the docs and the CLI cannot drift apart."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from claude_cage.cli import cli

ROOT = Path(__file__).resolve().parents[2]
FILES = [ROOT / ".claude/agents/session-manager.md", ROOT / ".claude/commands/session.md"]
INLINE = re.compile(r"`(claude-cage [^`]+)`")
FENCE = re.compile(r"```[a-z]*\n(.*?)```", re.DOTALL)


def commands_in(path: Path) -> list[str]:
    """Commands in code: inline `claude-cage ...` spans and lines of fenced blocks."""
    text = path.read_text()
    found = [m.group(1) for m in INLINE.finditer(text)]
    for block in FENCE.findall(text):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("claude-cage "):
                found.append(line)
    return found


ALL = [(path.name, command) for path in FILES for command in commands_in(path)]


def test_the_files_tell_claude_to_run_commands() -> None:
    assert len(ALL) >= 15
    assert not any("/home/" in p.read_text() for p in FILES)  # no hard-coded home paths
    assert not any("store.js" in p.read_text() for p in FILES)  # the CLI logs by itself


@pytest.mark.parametrize(("file", "command"), ALL)
def test_every_command_parses(file: str, command: str) -> None:
    words = shlex.split(command)[1:]
    group: click.Group = cli
    path = []
    while words and isinstance(group, click.Group) and group.get_command(None, words[0]):  # type: ignore[arg-type]
        path.append(words.pop(0))
        group = group.get_command(None, path[-1])  # type: ignore[arg-type,assignment]
    assert path, f"{file}: {command!r} names no claude-cage command"
    help_result = CliRunner().invoke(cli, [*path, "--help"])
    assert help_result.exit_code == 0, help_result.output
    # The options it uses exist: parse them without running the command.
    ctx = group.make_context(" ".join(path), words)
    assert ctx.command is group
