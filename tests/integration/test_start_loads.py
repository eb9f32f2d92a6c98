"""A start loads only the machinery its session needs: a session without a project
reads no YAML (policy files) and loads nothing of the dev container path (its
parser, its builds, the registry client)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import Cage

pytestmark = pytest.mark.engine

PROBE = (
    "import sys\n"
    "from claude_cage.cli import main\n"
    "sys.argv = ['claude-cage', *sys.argv[1:]]\n"
    "try:\n    code = main()\n"
    "except SystemExit as exc:\n    code = exc.code\n"
    "print('EXIT', code or 0)\n"
    "heavy = ('yaml', 'claude_cage.devcontainer', 'claude_cage.operations.devcontainers',\n"
    "         'claude_cage.ociclient', 'claude_cage.operations.build')\n"
    "print('HEAVY', sorted(m for m in heavy if m in sys.modules))\n"
)


def test_a_start_without_a_project_loads_no_yaml_and_no_devcontainer_path(cage: Cage) -> None:
    name = cage.name("loads")
    args = ["start", "--detach", "--name", name, "--network", "none", "--no-persist"]
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=cage.env
    )
    assert "EXIT 0" in done.stdout, done.stdout + done.stderr
    assert "HEAVY []" in done.stdout, done.stdout
    assert cage("status", name).code == 0
