"""Fault injection: a stalled engine. A proxy in front of the engine's socket, stopped
with SIGSTOP, takes connections and answers nothing, as a hung engine does. Every
command then ends within its bound (config engine_call_timeout; engine_timeout for
`list`) with one `error:` line that says the engine did not answer, a hint, and exit 1;
Ctrl-C ends each of them at once (exit 130, one line), stalled engine or not.

The times asserted are bounds on a hang, with room for a loaded machine: not speed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Cage, owned
from tests.integration.stalling import proxy_socket
from tests.integration.workspace_helpers import make_repo

pytestmark = pytest.mark.engine

CALL_TIMEOUT = 3  # engine_call_timeout under test
LIST_TIMEOUT = 2  # engine_timeout under test
STARTUP = 8  # the interpreter and the imports, on a loaded machine
INTERRUPT_BOUND = 1 + 2  # Ctrl-C's one second, plus room for a loaded machine


@dataclass
class Stalled:
    cage: Cage
    env: dict[str, str]
    session: str  # a running clone session, started before the engine stalled
    repo: Path


@pytest.fixture(scope="module")
def stalled(cage_module: Cage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stalled]:
    with proxy_socket() as (proxy, listen):
        env = {
            **cage_module.env,
            "DOCKER_HOST": f"unix://{listen}",
            "CAGE_ENGINE_CALL_TIMEOUT": str(CALL_TIMEOUT),
            "CAGE_ENGINE_TIMEOUT": str(LIST_TIMEOUT),
        }
        repo = make_repo(tmp_path_factory.mktemp("stall") / "repo")
        name = cage_module.name()
        started = cage_module(
            "start", "--name", name, "--network", "none", "-d", "--clone", str(repo),
            env={"DOCKER_HOST": env["DOCKER_HOST"]},
        )  # fmt: skip
        assert started.code == 0, started.output
        os.kill(proxy.pid, signal.SIGSTOP)
        yield Stalled(cage_module, env, name, repo)


def commands(s: Stalled) -> dict[str, list[str]]:
    return {
        "list": ["list"],
        "status": ["status", s.session],
        "start": ["start", "--name", s.cage.name(), "--network", "none", "-d"],
        "exec": ["exec", s.session, "--", "true"],
        "stop": ["stop", s.session],
        "merge": ["merge", s.session],
    }


BOUND = {"list": LIST_TIMEOUT}
COMMANDS = ("list", "status", "start", "exec", "stop", "merge")


def run(s: Stalled, args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "claude_cage", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=s.env,
        cwd=s.repo,
        # a background job starts with SIGINT ignored: give the command Ctrl-C back
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_a_stalled_engine_is_named_within_the_bound(stalled: Stalled, command: str) -> None:
    bound = BOUND.get(command, CALL_TIMEOUT)
    began = time.monotonic()
    proc = run(stalled, commands(stalled)[command])
    out, err = proc.communicate(timeout=bound * 4 + STARTUP + 60)
    took = time.monotonic() - began
    assert took < bound + STARTUP, f"{command} took {took:.1f} s: {err}"
    assert proc.returncode == 1, (out, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[0].startswith("error: ") and "did not answer within" in lines[0], err
    assert f"{bound:g} s" in lines[0], err
    assert len(lines) == 2 and lines[1].startswith("hint: ") and "timeout" in lines[1], err


def waiting_on_the_engine(pid: int) -> None:
    """Until the process has a socket open (the engine's: nothing else opens one)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:") for fd in fds):
                time.sleep(0.2)  # into the read that blocks
                return
        except OSError:
            pass
        time.sleep(0.02)
    raise AssertionError("the command never reached the engine")


@pytest.mark.parametrize("command", COMMANDS)
def test_ctrl_c_ends_a_command_on_a_stalled_engine(stalled: Stalled, command: str) -> None:
    env = {"CAGE_ENGINE_CALL_TIMEOUT": "120", "CAGE_ENGINE_TIMEOUT": "120"}
    stalled.env.update(env)
    try:
        proc = run(stalled, commands(stalled)[command])
    finally:
        stalled.env.update(CAGE_ENGINE_CALL_TIMEOUT=str(CALL_TIMEOUT))
        stalled.env.update(CAGE_ENGINE_TIMEOUT=str(LIST_TIMEOUT))
    waiting_on_the_engine(proc.pid)
    proc.send_signal(signal.SIGINT)
    began = time.monotonic()
    try:
        _out, err = proc.communicate(timeout=INTERRUPT_BOUND + 60)
    finally:
        proc.kill()
    took = time.monotonic() - began
    assert took < INTERRUPT_BOUND, f"{command} took {took:.1f} s after Ctrl-C: {err}"
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "error: interrupted", err
    assert len([line for line in err.splitlines() if line.strip()]) == 1, err


@pytest.mark.parametrize("cleanup", [["destroy", "--force"], ["gc", "--yes"]])
def test_the_engine_lost_mid_start_keeps_the_record_for_destroy_and_gc(
    cage: Cage, cleanup: list[str]
) -> None:
    """The engine stalls once the start has made its first objects: the start fails
    within its bound, the rollback cannot reach the engine, and the record stays
    (`starting`, no start at work), so `destroy NAME` and `gc` remove all it made."""
    name = cage.name()
    # the engine stalls at the first container start: the start has made its network,
    # volumes and containers by then, and the record is still `starting`
    with proxy_socket(stall_at="/start HTTP/1.1") as (_proxy, listen):
        env = {"DOCKER_HOST": f"unix://{listen}", "CAGE_ENGINE_CALL_TIMEOUT": "3"}
        start = subprocess.Popen(
            [sys.executable, "-m", "claude_cage", "start", "--name", name, "--detach"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**cage.env, **env},
        )
        _out, err = start.communicate(timeout=120)
        assert start.returncode == 1, err
        assert "did not answer within 3 s" in err and "Traceback" not in err, err
        assert any(owned(cage.owner())), "the start rolled back after all: no engine loss"
        listed = cage("list", "--json").json()["sessions"]
        assert [(s["name"], s["orphan"]) for s in listed] == [(name, False)], listed
        kept = (cage.data_dir / "sessions" / name / "metadata").read_text()
        assert "status=starting" in kept.splitlines(), kept
    done = cage(*cleanup, *([name] if cleanup[0] == "destroy" else []))
    assert done.code == 0, done.output
    assert owned(cage.owner()) == ([], [])
    assert not (cage.data_dir / "sessions" / name).exists()
