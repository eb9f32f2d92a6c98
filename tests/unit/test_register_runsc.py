"""scripts/register-runsc: gVisor merged into an existing daemon.json, idempotently, with
the arguments doctor recommends."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from claude_cage import runtimes

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "register-runsc"


def register(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(path), "/usr/bin/runsc"], capture_output=True, text=True
    )


def test_merges_into_what_is_there_and_only_once(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps({"log-driver": "local", "runtimes": {"kata": {"path": "/k"}}}))
    first = register(path)
    assert first.returncode == 0 and first.stdout.strip() == "changed"
    config = json.loads(path.read_text())
    assert config["log-driver"] == "local" and config["runtimes"]["kata"] == {"path": "/k"}
    assert config["runtimes"]["runsc"] == {
        "path": "/usr/bin/runsc",
        "runtimeArgs": runtimes.RUNSC_ARGS,  # what doctor prints, no drift
    }
    again = register(path)
    assert again.returncode == 0 and again.stdout == ""  # nothing to reload


def test_a_missing_file_is_created(tmp_path: Path) -> None:
    path = tmp_path / "docker" / "daemon.json"
    assert register(path).stdout.strip() == "changed"
    assert json.loads(path.read_text()) == json.loads(runtimes.daemon_json_entry())


def test_a_damaged_file_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    path.write_text('{"runtimes": ')
    result = register(path)
    assert result.returncode == 1 and "not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr
    assert path.read_text() == '{"runtimes": '
