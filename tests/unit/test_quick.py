"""`attach NAME`, `logs NAME` and `list [--json]` run without Click (cli/quick.py), with
the Click command's checks, messages, output and exit codes; every other command line
goes to Click."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from claude_cage import paths
from claude_cage.cli import quick
from claude_cage.context import Context
from tests.conftest import CLI_PROBE as PROBE
from tests.unit.fake_engine import FakeEngine, record
from tests.unit.inprocess import run_main


@pytest.mark.parametrize("name", ["web", "a.b_c-1", "Not-A-Valid-Name"])
def test_attach_name_alone_runs_without_click(name: str) -> None:
    assert quick.attach_name(["attach", name], {}) == name


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["attach"],  # the most recent running session, said out loud: Click's command
        ["attach", ""],
        ["attach", "--help"],
        ["attach", "-h"],
        ["attach", "--raw-terminal"],
        ["attach", "--raw-terminal", "web"],
        ["attach", "web", "--raw-terminal"],
        ["attach", "web", "-w", "src"],
        ["attach", "--", "web"],
        ["shell", "web"],
        ["logs", "web"],
        ["--help", "attach"],
    ],
)
def test_every_other_command_line_goes_to_click(args: list[str]) -> None:
    assert quick.attach_name(args, {}) is None


def test_a_completion_request_goes_to_click() -> None:
    assert quick.attach_name(["attach", "web"], {quick.COMPLETION: "bash_complete"}) is None


def probe(tmp_path: Path, *args: str) -> tuple[list[str], str]:
    """(stdout lines, stderr) of claude-cage ARGS, stdin not a terminal."""
    env = {**os.environ, "CAGE_DATA_DIR": str(tmp_path), "DOCKER_HOST": "unix:///nonexistent"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    return done.stdout.splitlines(), done.stderr


def test_attach_from_a_script_is_refused_the_same_way_without_click(tmp_path: Path) -> None:
    quick_out, quick_err = probe(tmp_path, "attach", "web")
    click_out, click_err = probe(tmp_path, "attach", "--raw-terminal", "web")
    assert quick_out == ["EXIT 2", "CLICK False"], quick_err
    assert click_out == ["EXIT 2", "CLICK True"], click_err
    assert quick_err == click_err
    assert quick_err.startswith("error: attach needs a terminal\nhint: "), quick_err


def test_attach_help_is_clicks(tmp_path: Path) -> None:
    out, _ = probe(tmp_path, "attach", "--help")
    assert "Usage: claude-cage attach [OPTIONS] [NAME]" in out
    assert out[-1] == "CLICK True"


@pytest.mark.parametrize("name", ["web", "a.b_c-1"])
def test_logs_name_alone_runs_without_click(name: str) -> None:
    assert quick.logs_name(["logs", name], {}) == name
    assert quick.attach_name(["logs", name], {}) is None


@pytest.mark.parametrize(
    "args",
    [
        ["logs"],  # the most recent session, said out loud: Click's command
        ["logs", ""],
        ["logs", "--help"],
        ["logs", "-f", "web"],
        ["logs", "web", "--tail", "5"],
        ["logs", "web", "--json"],
        ["logs", "web", "--raw"],
        ["logs", "--", "web"],
        ["attach", "web"],
    ],
)
def test_every_other_logs_line_goes_to_click(args: list[str]) -> None:
    assert quick.logs_name(args, {}) is None
    assert quick.logs_name(["logs", "web"], {quick.COMPLETION: "bash_complete"}) is None


def test_logs_of_a_missing_session_is_refused_the_same_way_without_click(tmp_path: Path) -> None:
    quick_out, quick_err = probe(tmp_path, "logs", "web")
    click_out, click_err = probe(tmp_path, "logs", "--", "web")
    assert quick_out[-1] == "CLICK False", quick_err
    assert click_out[-1] == "CLICK True", click_err
    assert quick_out[:-1] == click_out[:-1]
    assert quick_err == click_err
    assert quick_err.startswith("error: "), quick_err


@pytest.mark.parametrize("as_json", [False, True])
def test_list_alone_runs_without_click(as_json: bool) -> None:
    args = ["list", "--json"] if as_json else ["list"]
    assert quick.list_json(args, {}) is as_json
    assert quick.list_json(args, {quick.COMPLETION: "bash_complete"}) is None


@pytest.mark.parametrize(
    "args",
    [
        ["list", "--help"],
        ["list", "--engine", "local"],
        ["list", "--json", "--engine", "local"],
        ["list", "--json", "--json"],
        ["list", "-h"],
        ["list", "web"],  # Click's usage error
        ["--json", "list"],
        ["snapshot", "list"],
    ],
)
def test_every_other_list_line_goes_to_click(args: list[str]) -> None:
    assert quick.list_json(args, {}) is None


@pytest.mark.parametrize("args", [["list"], ["list", "--json"]])
def test_list_shows_the_same_without_click(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
) -> None:
    """The table or the JSON, the warnings and the exit code are the Click command's."""
    monkeypatch.setenv("CAGE_DATA_DIR", str(tmp_path))
    engine = FakeEngine(paths.owner_id())
    engine.add_session("web")
    record("web")
    record("db", network="none", status="stopped")
    shown = run_main(capsys, monkeypatch, Context(engine=engine), *args)
    monkeypatch.setattr(quick, "list_json", lambda args, environ: None)
    clicked = run_main(capsys, monkeypatch, Context(engine=engine), *args)
    assert shown == clicked
    assert shown.code == 0 and "web" in shown.stdout and "db" in shown.stdout, shown


def test_list_alone_loads_no_click(tmp_path: Path) -> None:
    out, err = probe(tmp_path, "list", "--json")
    assert out[-1] == "CLICK False", err


def test_output_a_stdout_cannot_encode_is_escaped_never_a_traceback() -> None:
    """A terminal or pipe that is not UTF-8 (PYTHONIOENCODING=ascii, LANG=C on an old
    Python): what a command prints that it cannot encode comes out escaped."""
    script = (
        "import sys, claude_cage.cli as c\n"
        "c._click_main = lambda _: (\n"
        "    print('caf\\u00e9 \\u23f5'), print('\\u2026', file=sys.stderr))\n"
        "sys.argv = ['claude-cage', 'version']\n"
        "c.main()\n"
    )
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout == b"caf\\xe9 \\u23f5\n" and run.stderr == b"\\u2026\n"
