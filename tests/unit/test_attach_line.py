"""`attach` in one exec: the shell line that starts Claude Code unless it runs, notes
what it found, says so on the terminal and becomes the tmux client (agent.ATTACH_LINE),
run here by /bin/sh against a stand-in `cage-agent`; and what `after` makes of the
notes and the state once the terminal is back."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from claude_cage.context import Context
from claude_cage.errors import EngineError
from claude_cage.eventlog.events import EventLog
from claude_cage.operations import agent
from tests.unit.fake_engine import UnusedEngine


def run_line(tmp_path: Path, start: str, start_code: int = 0, quiet: bool = False) -> tuple:
    """Run ATTACH_LINE with a `cage-agent` whose `start` prints `start` and exits
    `start_code`, and whose `attach` says so: (exit code, output, the notes file)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "cage-agent"
    stub.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = start ] && {{ printf "%s\\n" "{start}"; exit {start_code}; }}\n'
        '[ "$1" = attach ] && { echo ATTACHED; exit 0; }\n'
        "exit 9\n"
    )
    stub.chmod(0o755)
    notes = tmp_path / "notes"
    notes.unlink(missing_ok=True)
    argv = ["sh", "-c", agent.ATTACH_LINE, "sh", "/work", str(notes), "quiet" if quiet else "say"]
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30)
    noted = notes.read_text() if notes.exists() else None
    return done.returncode, done.stdout + done.stderr, noted


def test_a_running_claude_code_is_attached_to_and_nothing_is_said(tmp_path: Path) -> None:
    code, said, noted = run_line(tmp_path, "running")
    assert (code, said, noted) == (0, "ATTACHED\n", "ok\nrunning\n")


def test_a_started_or_restarted_claude_code_is_said_before_the_screen(tmp_path: Path) -> None:
    code, said, noted = run_line(tmp_path, "started")
    assert (code, said, noted) == (0, "started Claude Code in /work\nATTACHED\n", "ok\nstarted\n")
    code, said, _ = run_line(tmp_path, "started", quiet=True)  # `start` already said it
    assert (code, said) == (0, "ATTACHED\n")
    code, said, noted = run_line(tmp_path, "restarted 3")
    assert said == ("Claude Code had exited (status 3); started a new one in /work\nATTACHED\n")
    assert (code, noted) == (0, "ok\nrestarted 3\n")


def test_a_start_that_fails_attaches_nothing_and_notes_why(tmp_path: Path) -> None:
    code, said, noted = run_line(tmp_path, "cage-agent: another start held the lock", 1)
    assert code == 1 and "ATTACHED" not in said
    assert noted == "failed\ncage-agent: another start held the lock\n"


class AfterEngine(UnusedEngine):
    def __init__(self, output: bytes) -> None:
        self.output = output
        self.commands: list[list[str]] = []

    def exec_run(
        self,
        name: str,
        cmd: list[str],
        stdin: bytes | None = None,
        user: str | None = None,
        limit: int | None = None,
    ) -> tuple[int, bytes]:
        self.commands.append(cmd)
        return 0, self.output


def after(tmp_path: Path, output: bytes) -> tuple[agent.AgentState, agent.Attach, list[Any]]:
    events = EventLog(str(tmp_path / "events.db"), background_sync=False)
    engine = AfterEngine(output)
    ctx = Context(engine=engine, events=events)
    attach = agent.Attach("web", "cage-web", "/workspace", None, engine, ctx, "/run/x")  # type: ignore[arg-type]
    state = attach.after()
    assert engine.commands == [["sh", "-c", agent.AFTER_LINE, "sh", "/run/x"]]
    return state, attach, events.query(session="web")


def test_after_reads_the_notes_and_the_state_and_records_the_start(tmp_path: Path) -> None:
    state, attach, events = after(tmp_path, b"ok\nrestarted 3\n@@state\nexited 130\nbye\n")
    assert (state.state, state.status, state.last_lines) == ("exited", 130, ["bye"])
    assert attach.was == "restarted 3"
    assert [(e["key"], e["value"]["agent"]) for e in events] == [("agent:web", "restarted")]


def test_after_raises_when_claude_code_could_not_be_started(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="could not start Claude Code in cage-web: held"):
        after(tmp_path, b"failed\nheld\n@@state\nnone\n")


def test_after_without_notes_still_tells_the_state(tmp_path: Path) -> None:
    state, attach, events = after(tmp_path, b"@@state\nrunning\n")
    assert (state.state, attach.was, events) == ("running", "", [])


def run_after_line(tmp_path: Path, plant: str) -> str:
    """AFTER_LINE run by /bin/sh on a note the session planted (`plant`, a shell line
    on "$f"), against a stand-in `cage-agent`; its output, cut at 100 kB."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "cage-agent").write_text("#!/bin/sh\necho running\n")
    (bin_dir / "cage-agent").chmod(0o755)
    note = tmp_path / "x.agent"
    subprocess.run(["sh", "-c", plant], env={**os.environ, "f": str(note)}, check=True)
    line = f"sh -c '{agent.AFTER_LINE}' sh \"$f\" | head -c 100000"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "f": str(note)}
    done = subprocess.run(["sh", "-c", line], capture_output=True, env=env, timeout=15)
    assert not note.exists() and not note.is_symlink()  # the note is gone, whatever it was
    return done.stdout.decode()


@pytest.mark.parametrize(
    "plant",
    [
        'ln -s /dev/zero "$f"',
        'mkfifo "$f"',
        'printf "ok\\nrunning\\n" > "${f}.real" && ln -s "${f}.real" "$f"',
        'head -c 1000000 /dev/zero | tr "\\0" x > "$f"',
    ],
    ids=["dev-zero", "fifo", "link", "big"],
)
def test_a_planted_note_is_read_only_as_a_small_regular_file(tmp_path: Path, plant: str) -> None:
    said = run_after_line(tmp_path, plant)
    assert len(said) <= agent.NOTE_BYTES + 100
    assert said.endswith("@@state\nrunning\n")


def test_a_regular_note_is_read(tmp_path: Path) -> None:
    said = run_after_line(tmp_path, 'printf "ok\\nstarted\\n" > "$f"')
    assert said == "ok\nstarted\n\n@@state\nrunning\n"
    state, attach, _ = after(tmp_path, said.encode())
    assert (state.state, attach.was) == ("running", "started")


def test_a_forged_start_word_is_not_recorded(tmp_path: Path) -> None:
    """The session writes the note: only the words `cage-agent start` says reach the
    event log."""
    _, attach, events = after(tmp_path, b"ok\nstopped-by-operator x\n@@state\nrunning\n")
    assert attach.was == "stopped-by-operator x"
    assert [e["value"]["agent"] for e in events] == ["unknown"]
