"""The lazy command registry (cli/base.py COMMANDS) matches the real commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from claude_cage.cli.base import COMMANDS, load_all


def test_registry_lists_every_command_with_its_docstring() -> None:
    cli = load_all()
    assert set(cli.commands) == set(COMMANDS)
    for name, command in cli.commands.items():
        module, summary = COMMANDS[name]
        assert command.callback is not None
        assert command.callback.__module__ == f"claude_cage.cli.{module}", name
        assert (command.help or "").strip().splitlines()[0] == summary, name


def test_help_lists_every_command_without_importing_them() -> None:
    code = (
        "import sys\n"
        "from claude_cage.cli import cli\n"
        "try:\n    cli.main(['--help'], prog_name='claude-cage')\n"
        "except SystemExit:\n    pass\n"
        "loaded = [m for m in sys.modules if m.startswith('claude_cage.cli.')]\n"
        "print('LOADED', sorted(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    for name in COMMANDS:
        assert f"  {name} " in out, name
    # quick: the command line `attach NAME` recognized, before Click (cli/quick.py)
    assert "LOADED ['claude_cage.cli.base', 'claude_cage.cli.quick']" in out


def test_a_command_loads_its_module_on_use() -> None:
    result = CliRunner().invoke(load_all(), ["version"])
    assert result.exit_code == 0 and "claude-cage" in result.output


def test_list_loads_no_start_machinery(tmp_path: Path) -> None:
    """`list` is on the hot path: the policy, the user's setup and bring-up are loaded by
    the commands that use them, never by `list` (bench/ab.py: it cost `list` 25%)."""
    code = (
        "import sys\n"
        "from claude_cage.cli import main\n"
        "sys.argv = ['claude-cage', 'list', '--json']\n"
        "try:\n    main()\n"
        "except SystemExit:\n    pass\n"
        "heavy = ('claude_cage.policy', 'claude_cage.operations.usersetup',\n"
        "         'claude_cage.operations.bringup', 'claude_cage.operations.session')\n"
        "print('HEAVY', sorted(m for m in heavy if m in sys.modules))\n"
    )
    # No engine answers there: list says so, having loaded what it loads.
    env = {**os.environ, "CAGE_DATA_DIR": str(tmp_path), "DOCKER_HOST": "unix:///nonexistent"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert "HEAVY []" in done.stdout, done.stdout + done.stderr
