"""Running things in a session: exec (streamed, headless), shell and attach (the
user's TTY, handed to the docker CLI), and logs."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

from claude_cage import metadata, names, workdir
from claude_cage.engine import Engine
from claude_cage.errors import SessionNotFound
from claude_cage.operations import record_event
from claude_cage.operations.objects import inspect_ours, running_container
from claude_cage.operations.query import most_recent_running


def mark_active(name: str) -> None:
    metadata.SessionStore().mark_active(name)


def session_workdir(name: str, requested: str | None = None) -> str:
    """The directory a command starts in: the project, or `requested` inside it."""
    return workdir.resolve(workdir.project_dir(metadata.SessionStore().load(name)), requested)


def exec_stream(
    name: str, command: list[str], engine: Engine | None = None, cwd: str | None = None
) -> Iterator[Any]:
    """Yield (stdout, stderr) chunks as they come, then the command's exit code.
    `cwd` is a --workdir, relative to the project."""
    engine = engine or Engine()
    container = running_container(name, engine)
    directory = session_workdir(name, cwd)
    code = None
    mark_active(name)
    try:
        for item in engine.exec_stream(container, command, workdir=directory):
            if isinstance(item, int):
                code = item
            yield item
    finally:
        mark_active(name)
        record_event(
            "exec",
            name,
            {"status": "ok" if code == 0 else "error", "command": command[0], "exit_code": code},
        )


def _interactive(
    kind: str,
    name: str | None,
    command: list[str],
    cwd: str | None = None,
    env: dict[str, str] | None = None,
) -> int:
    engine = Engine()
    name = name or most_recent_running(engine)
    container = running_container(name, engine)
    directory = session_workdir(name, cwd)
    record_event(kind, name, {"status": "ok"})
    flags = ["-it"] if sys.stdin.isatty() and sys.stdout.isatty() else ["-i"]
    for key, value in (env or {}).items():
        flags += ["-e", f"{key}={value}"]
    mark_active(name)
    try:
        return subprocess.call(["docker", "exec", *flags, "-w", directory, container, *command])
    finally:
        mark_active(name)


def shell_environment(name: str) -> dict[str, str]:
    """What `shell` sets so that no file the agent can write shapes the operator's shell:
    bash reads no startup files (--noprofile --norc), readline only the image's inputrc,
    ncurses only the image's terminal descriptions (not ~/.terminfo), and no history
    the agent could have planted. The prompt names the session."""
    return {
        "PS1": f"[cage {name}] \\w \\$ ",
        "INPUTRC": "/etc/inputrc",
        "TERMINFO": "/lib/terminfo",
        "HISTFILE": "/dev/null",
    }


def shell(name: str | None, cwd: str | None = None) -> int:
    name = name or most_recent_running()
    command = ["bash", "--noprofile", "--norc"]
    return _interactive("shell", name, command, cwd, shell_environment(name))


def attach(name: str | None, cwd: str | None = None) -> int:
    return _interactive("attach", name, ["claude"], cwd)


def logs(name: str | None, follow: bool = False, tail: int | None = None) -> Iterator[bytes]:
    engine = Engine()
    name = name or most_recent_running(engine)
    container = names.container_name(name)
    if inspect_ours(engine, container) is None:
        raise SessionNotFound(name)
    yield from engine.logs(container, follow=follow, tail=tail)
