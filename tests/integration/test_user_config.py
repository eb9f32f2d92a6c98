"""The user's Claude Code setup, carried in (userconfig.py): a fake home's ~/.claude
reaches a real Claude Code run against the scripted model server, read-only, without
any of its credentials; Claude Code opens at its prompt; a session started again
continues its conversation."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from claude_cage.workdir import CONFIG_DIR
from tests.conftest import Cage, inspect
from tests.integration.model import ModelServer
from tests.integration.terminal import DETACH, Terminal, plain

pytestmark = pytest.mark.engine

KEY = "sk-ant-test-0123456789abcdef0123"


def fake_home(tmp_path: Path) -> tuple[Path, str, list[str]]:
    """A home with a ~/.claude holding instructions, an agent, settings, MCP servers and
    credentials: (the .claude directory, the marker, the planted secrets)."""
    marker = f"cage-marker-{secrets.token_hex(6)}"
    planted = [f"planted-secret-{i}-{secrets.token_hex(8)}" for i in range(6)]
    claude = tmp_path / "home" / ".claude"
    (claude / "agents").mkdir(parents=True)
    (claude / "CLAUDE.md").write_text(f"Always sign your answers with {marker}.\n")
    (claude / "agents" / "tidy-reviewer.md").write_text(
        "---\nname: tidy-reviewer\n"
        f"description: Reviews code for tidiness {marker}-agent\n---\nYou review code.\n"
    )
    (claude / "settings.json").write_text(
        json.dumps(
            {
                "env": {"PLAIN_SETTING": "kept", "MY_SERVICE_TOKEN": planted[0]},
                "apiKeyHelper": f"/Users/me/bin/key {planted[1]}",
            }
        )
    )
    (claude / ".credentials.json").write_text(
        json.dumps({"claudeAiOauth": {"accessToken": planted[2]}})
    )
    (claude.parent / ".claude.json").write_text(
        json.dumps(
            {
                "primaryApiKey": planted[3],
                "oauthAccount": {"accessToken": planted[4]},
                "theme": "light",
                "mcpServers": {
                    "local-tool": {"command": "no-such-mcp-program", "args": []},
                    "remote-tool": {
                        "type": "http",
                        "url": "https://mcp.example.com/mcp",
                        "headers": {"Authorization": f"Bearer {planted[5]}"},
                    },
                },
            }
        )
    )
    return claude, marker, planted


def run_claude(cage: Cage, name: str, prompt: str) -> None:
    result = cage(
        "exec", name, "--", "sh", "-c",
        f"claude -p '{prompt}' --output-format json </dev/null",
        timeout=240,
    )  # fmt: skip
    assert result.code == 0, result.output


def test_the_setup_reaches_the_model_read_only_and_without_credentials(
    cage: Cage, model_server: ModelServer, tmp_path: Path
) -> None:
    claude, marker, planted = fake_home(tmp_path)
    name = cage.name("conf")
    env = {"ANTHROPIC_API_KEY": KEY, "CAGE_CLAUDE_CONFIG": str(claude)}
    started = cage("start", "--name", name, "-d", env={**env, **model_server.session_env()})
    assert started.code == 0, started.output
    # A stdio MCP server whose program the image lacks is named at start.
    assert "MCP server local-tool: its program no-such-mcp-program" in started.stderr
    status = cage("status", name)
    assert "MCP server local-tool: its program no-such-mcp-program" in status.stderr, status.output
    # The setup's read-only binds are the sandbox's own: its verification passes.
    assert "sandbox: PASS" in status.stdout, status.output

    model_server.reset()
    model_server.set_script([])
    run_claude(cage, name, "Say hello.")
    asked = [r for r in model_server.received() if r["kind"] == "agent"]
    assert asked, model_server.received()
    told = asked[0]["system"] + "\n".join(asked[0]["history"])
    assert marker in told, told[:2000]  # the user's CLAUDE.md
    assert f"{marker}-agent" in asked[0]["agents"] + told  # the user's agent is offered

    # The copies are read-only to the agent: not changed, replaced, nor removed; even
    # when the host's files belong to the session's uid (a host user with uid 1000).
    copied = cage.data_dir / "sessions" / name / "user-claude"
    assert (copied / "CLAUDE.md").is_file()
    for path in [copied, *copied.rglob("*")]:
        os.chown(path, 1000, 1000)
    for attack in (
        "echo evil >> ~/.claude/CLAUDE.md",
        "echo evil > ~/.claude/settings.json",
        "touch ~/.claude/agents/evil.md",
        "rm -f ~/.claude/agents/tidy-reviewer.md",
        "mv ~/.claude/CLAUDE.md ~/.claude/moved.md",
        "rm -rf ~/.claude/agents",
    ):
        tried = cage("exec", name, "--", "sh", "-c", attack)
        assert tried.code != 0, attack
        assert any(why in tried.stderr for why in ("Read-only file system", "busy")), (
            attack,
            tried.stderr,
        )
    kept = cage("exec", name, "--", "cat", "/home/claude/.claude/CLAUDE.md").stdout
    assert marker in kept
    # Claude Code's own state stays writable, with the user's servers and no headers.
    state = json.loads(cage("exec", name, "--", "cat", "/home/claude/.claude/.claude.json").stdout)
    assert state["hasCompletedOnboarding"] and state["theme"] == "light"
    assert state["projects"]["/workspace"]["hasTrustDialogAccepted"]
    assert set(state["mcpServers"]) == {"local-tool", "remote-tool"}
    assert "headers" not in state["mcpServers"]["remote-tool"]
    settings = json.loads(
        cage("exec", name, "--", "cat", "/home/claude/.claude/settings.json").stdout
    )
    assert settings["env"] == {"PLAIN_SETTING": "kept"}

    # No credential of the user's configuration anywhere: not in the session's files,
    # not in the engine's view of its containers, not in the data directory.
    found = cage(
        "exec", name, "--", "sh", "-c",
        "grep -rlF -e " + " -e ".join(planted)
        + " /home /run /tmp /etc /workspace 2>/dev/null; true",
    )  # fmt: skip
    assert found.stdout.strip() == "", found.stdout
    for container in (f"cage-{name}", f"companion-cage-{name}"):
        seen = subprocess.run(["docker", "inspect", container], capture_output=True, text=True)
        assert not [p for p in planted if p in seen.stdout], container
    on_host = subprocess.run(
        ["grep", "-rlF", *[a for p in planted for a in ("-e", p)], str(cage.data_dir)],
        capture_output=True,
        text=True,
    )
    assert on_host.stdout == "", on_host.stdout


def test_no_user_config_and_off_carry_nothing(cage: Cage, tmp_path: Path) -> None:
    claude, _, _ = fake_home(tmp_path)
    for args, value, label in (
        (["--no-user-config"], str(claude), "flag"),
        ([], "off", "off"),
    ):
        name = cage.name(label)
        env = {"CAGE_CLAUDE_CONFIG": value}
        started = cage("start", "--name", name, "--network", "none", "-d", *args, env=env)
        assert started.code == 0, started.output
        look = cage("exec", name, "--", "sh", "-c", "ls -A ~/.claude; cat ~/.claude/.claude.json")
        assert "CLAUDE.md" not in look.stdout and "agents" not in look.stdout, look.stdout
        assert "mcpServers" not in look.stdout and "no-such-mcp" not in look.stdout
        mounts = json.loads(
            subprocess.run(
                ["docker", "inspect", "--format", "{{json .Mounts}}", f"cage-{name}"],
                capture_output=True,
                text=True,
            ).stdout
        )
        assert not [m for m in mounts if "user-claude" in m.get("Source", "")], mounts


def test_a_session_without_its_data_volume_still_writes_its_claude_folder(
    cage: Cage, tmp_path: Path
) -> None:
    """--no-persist with a setup carried in: ~/.claude is the session's own to write
    (its transcripts and state go there), not the engine's root-owned mount point."""
    claude, marker, _ = fake_home(tmp_path)
    name = cage.name("nopersist")
    env = {"CAGE_CLAUDE_CONFIG": str(claude)}
    started = cage("start", "--name", name, "--network", "none", "-d", "--no-persist", env=env)
    assert started.code == 0, started.output
    assert "could not write" not in started.output, started.output
    look = cage(
        "exec", name, "--", "sh", "-c",
        "touch ~/.claude/probe && stat -c %u ~/.claude && cat ~/.claude/CLAUDE.md",
    )  # fmt: skip
    assert look.code == 0, look.output
    assert look.stdout.split()[0] == "1000", look.stdout
    assert marker in look.stdout, look.stdout


def ask(terminal: Terminal, model_server: ModelServer, question: str) -> dict:
    """Type a question at Claude Code's prompt; the model request it makes."""
    model_server.reset()
    terminal.type(question.encode())
    time.sleep(0.5)  # Claude Code takes a pasted burst with Enter in it as text
    terminal.type(b"\r")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        asked = [r for r in model_server.received() if r["kind"] == "agent"]
        if asked:
            return asked[-1]
        terminal._read(0.3)  # keep the terminal drained while the model is asked
    raise AssertionError(f"the model was not asked: {plain(terminal.output)[-1500:]}")


def test_attach_opens_at_the_prompt_and_a_restart_continues(
    cage: Cage, model_server: ModelServer, tmp_path: Path
) -> None:
    claude, _, _ = fake_home(tmp_path)
    name = cage.name("cont")
    env = {
        **cage.env,
        "ANTHROPIC_API_KEY": KEY,
        "CAGE_CLAUDE_CONFIG": str(claude),
        **model_server.session_env(),
    }
    started = cage("start", "--name", name, "-d", env=env)
    assert started.code == 0, started.output
    assert "resumed" not in started.stderr  # nothing to resume yet
    model_server.set_script([], final="first answer")
    first = f"first-question-{secrets.token_hex(4)}"

    # attach opens at Claude Code's prompt: no theme picker, no trust dialog.
    terminal = Terminal(["claude-cage", "attach", name], env)
    try:
        terminal.expect("shift+tab to cycle", timeout=60)  # the prompt
        screen = plain(terminal.output)
        assert "Choose the text style" not in screen and "trust" not in screen.lower(), screen
        ask(terminal, model_server, first)
        terminal.expect("first answer", timeout=60)
        terminal.type(DETACH)
        terminal.wait()
    finally:
        terminal.close()

    assert cage("stop", name).code == 0
    again = cage("start", "--name", name, "-d", env=env)
    assert again.code == 0, again.output
    assert "resumed the last conversation (claude --continue)" in again.stderr, again.output

    # The conversation is back, and the model gets its earlier turns with the next one.
    model_server.set_script([], final="second answer")
    terminal = Terminal(["claude-cage", "attach", name], env)
    try:
        terminal.expect(first, timeout=60)
        asked = ask(terminal, model_server, "second question")
    finally:
        terminal.close()
    history = "\n".join(asked["history"])
    assert first in history and "first answer" in history, history
    assert "second question" in history


# The session's own ~/.claude/.claude.json, as the agent could leave it: an endless file,
# a fifo no one writes, JSON nested past Python's recursion limit.
PLANTS = {
    "endless": 'ln -s /dev/zero "$f"',
    "fifo": 'mkfifo "$f"',
    "deep": "head -c 200000 /dev/zero | tr '\\0' '[' > \"$f\"",
}
BOUND = 90  # seconds for one status or start (a start on a loaded machine takes a while)
RSS_CAP = 200 << 10  # KiB


def bounded(cage: Cage, *args: str) -> tuple[int | None, str, int, float]:
    """Run claude-cage, killed past BOUND seconds or RSS_CAP: (exit code or None when
    killed, its output, its peak VmRSS in KiB, the seconds it took)."""
    began = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "claude_cage", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=cage.env,
    )
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()))  # type: ignore[union-attr]
    reader.start()
    peak, killed = 0, False
    while proc.poll() is None:
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            rss = next((line for line in status.splitlines() if line.startswith("VmRSS:")), "")
            peak = max(peak, int(rss.split()[1]) if rss else 0)
        except (OSError, IndexError, ValueError):
            pass
        if peak > RSS_CAP or time.monotonic() - began > BOUND:
            proc.kill()
            killed = True
        time.sleep(0.05)
    reader.join(10)
    text = b"".join(out).decode(errors="replace")
    return (None if killed else proc.returncode), text, peak, time.monotonic() - began


@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_a_hostile_state_file_cannot_hang_or_exhaust_status_or_start(
    cage: Cage, tmp_path: Path, plant: str
) -> None:
    claude, _, _ = fake_home(tmp_path)
    cage.env["CAGE_CLAUDE_CONFIG"] = str(claude)
    name = cage.name(plant)
    started = cage("start", "--name", name, "--network", "none", "-d")
    assert started.code == 0, started.output
    # Made beside it, then renamed over it: Claude Code may write the file at any time.
    script = f'g=~/.claude/.claude.json; f="$g.plant"; rm -f "$f"; {PLANTS[plant]}; mv -f "$f" "$g"'
    still = 'f=~/.claude/.claude.json; [ -L "$f" ] || [ -p "$f" ] || [ "$(head -c 2 "$f")" = "[[" ]'
    for _ in range(3):  # Claude Code in the session may rewrite the file meanwhile
        planted = cage("exec", name, "--", "sh", "-c", script)
        assert planted.code == 0, planted.output
        code, out, peak, took = bounded(cage, "status", name)
        assert code == 0, (code, peak, took, out[-2000:])
        assert "Traceback" not in out and peak < RSS_CAP, (peak, out)
        if cage("exec", name, "--", "sh", "-c", still).code == 0:
            break
    assert "cannot read Claude Code's" in out, out
    assert cage("stop", name).code == 0
    # Claude Code in the session may have rewritten the file: plant it again, stopped.
    info = inspect(f"cage-{name}")
    volume = next(m["Name"] for m in info["Mounts"] if m["Destination"] == CONFIG_DIR)
    again = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--user", info["Config"]["User"] or "0",
         "-v", f"{volume}:/c", "--entrypoint", "sh", info["Config"]["Image"],
         "-c", f'f=/c/.claude.json; rm -f "$f"; {PLANTS[plant]}'],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    code, out, peak, took = bounded(cage, "start", name, "-d")
    assert code == 0, (code, peak, took, out[-2000:])
    assert "Traceback" not in out and ".claude/.claude.json" in out, out
    assert peak < RSS_CAP, peak
    seeded = cage("exec", name, "--", "sh", "-c", "cat ~/.claude/.claude.json")
    assert json.loads(seeded.stdout)["hasCompletedOnboarding"] is True, seeded.output


def test_the_seeded_state_keeps_its_content_owner_and_mode_across_a_restart(
    cage: Cage, tmp_path: Path
) -> None:
    """The one exec that seeds ~/.claude/.claude.json at a start: the onboarding done,
    the project trusted, the user's theme and MCP servers, the session user's file of
    mode 0600; at a restart Claude Code's own keys in it are kept, and a program the
    session lacks is named."""
    claude, _, planted = fake_home(tmp_path)
    name = cage.name("seeded")
    env = {"CAGE_CLAUDE_CONFIG": str(claude)}
    show = 'f=~/.claude/.claude.json; stat -c \'%u:%g %a %F\' "$f"; cat "$f"'

    def seeded() -> tuple[str, dict]:
        look = cage("exec", name, "--", "sh", "-c", show)
        assert look.code == 0, look.output
        first, _, text = look.stdout.partition("\n")
        return first, json.loads(text)

    since = time.time()
    started = cage("start", "--name", name, "--network", "none", "-d", env=env)
    assert started.code == 0, started.output
    assert "could not write" not in started.output, started.output
    assert "no-such-mcp-program is not in the session's image" in started.output
    # One exec seeds the state, names the missing program and starts Claude Code.
    execs = subprocess.run(
        ["docker", "events", "--since", f"{since - 1:.0f}", "--until", f"{time.time() + 1:.0f}",
         "--filter", f"container=cage-{name}", "--filter", "event=exec_create",
         "--format", "{{.Action}}"],
        capture_output=True, text=True, timeout=60,
    ).stdout.splitlines()  # fmt: skip
    assert len(execs) == 1 and "cage-agent start" in execs[0], execs
    stat, state = seeded()
    assert stat == "1000:1000 600 regular file", stat
    assert state["hasCompletedOnboarding"] is True and state["theme"] == "light"
    assert state["projects"]["/workspace"]["hasTrustDialogAccepted"] is True
    assert sorted(state["mcpServers"]) == ["local-tool", "remote-tool"]
    assert not any(p in json.dumps(state) for p in planted)
    assert cage("stop", name).code == 0
    # A key of Claude Code's own, put in while it is stopped (it rewrites the file).
    info = inspect(f"cage-{name}")
    volume = next(m["Name"] for m in info["Mounts"] if m["Destination"] == CONFIG_DIR)
    keep = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--user", info["Config"]["User"],
         "-v", f"{volume}:/c", "--entrypoint", "sh", info["Config"]["Image"],
         "-c", "sed -i 's/^{/{\"cageKept\": 7,/' /c/.claude.json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert keep.returncode == 0, keep.stderr
    again = cage("start", "--name", name, "-d", env=env)
    assert again.code == 0, again.output
    assert "could not write" not in again.output and "cannot read" not in again.output
    stat, state = seeded()
    assert stat == "1000:1000 600 regular file", stat
    assert state["cageKept"] == 7 and state["hasCompletedOnboarding"] is True, state
    listed = cage("exec", name, "--", "sh", "-c", "ls -a ~/.claude").stdout.split()
    left = [n for n in listed if re.fullmatch(r"\.claude\.json\.[A-Za-z0-9]{6}", n)]
    assert not left, listed  # no temporary file of the seed's left
