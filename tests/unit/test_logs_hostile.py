"""`logs NAME` (without Click) and `logs --tail N NAME` (Click) on a transcript the
session wrote to break them: one exit code, no traceback, nothing raw on the terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_transcript import HOSTILE

# The engine is not asked: the files read are the ones given (operations/logs.py).
PROBE = (
    "import sys\n"
    "from claude_cage.operations import logs\n"
    "content = sys.stdin.buffer.read()\n"
    "logs.read_files = lambda ctx, name: logs.Files(name, {'p/a.jsonl': content})\n"
    "from claude_cage.cli import main\n"
    "sys.argv = ['claude-cage', *sys.argv[1:]]\n"
    "main()\n"
)


@pytest.mark.parametrize("args", [("logs", "web"), ("logs", "--tail", "5", "web")])
@pytest.mark.parametrize("hostile", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_transcript_gives_no_traceback(
    tmp_path: Path, hostile: str, args: tuple[str, ...]
) -> None:
    content = hostile.encode() + b'\n{"type":"user","message":{"content":"kept"}}\n'
    env = {**os.environ, "CAGE_DATA_DIR": str(tmp_path), "LC_ALL": "C.UTF-8"}
    env.pop("PYTHONIOENCODING", None)  # stdout as a UTF-8 terminal's: strict
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], input=content, capture_output=True, env=env
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert b"Traceback" not in done.stderr and b"\x1b" not in done.stdout
    assert done.stdout.decode().rstrip("\n").endswith("kept"), done.stdout
