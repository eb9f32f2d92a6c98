"""Running commands in a session: exec (headless, over the engine API) and the
terminal paths (shell, exec -t, attach: the docker CLI on a pseudo-terminal of ours,
its output filtered on the way to the user's, see pty_relay and terminal_filter).

The engine cannot signal an exec's process and leaves it running when its client goes
away. So every command runs as `cage-exec run KEY CMD...`, paired with a second exec,
`cage-exec watch KEY` (see the image's cage-exec), whose stdin claude-cage holds open:
each signal claude-cage receives (INT, TERM, HUP) is written there and reaches the
command's process group, and when claude-cage finishes or dies, the engine closes that
stdin and the watcher ends what is left of the group. Nothing a command started keeps
running once the claude-cage that ran it has gone.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING

from claude_cage import pty_relay, workdir
from claude_cage.engine import fleet
from claude_cage.engine.api import EngineAPI
from claude_cage.engine.transport import frames
from claude_cage.operations import record_event
from claude_cage.operations.owned import running_container

if TYPE_CHECKING:
    from claude_cage.context import Context

# The docker CLI reads its detach keys (Ctrl-P Ctrl-Q by default) out of the stream it
# forwards. claude-cage's detach key is tmux's (Ctrl-\, see the image's tmux.conf), so
# the docker CLI gets a sequence nobody types; only its first key (Ctrl-@, NUL, which
# Claude Code does not use) is held back until the next key arrives.
DOCKER_DETACH_KEYS = ",".join(["ctrl-@"] * 8)
GRACE_SECONDS = 1.0  # after a signal, how long the command gets before TERM and KILL


def mark_active(ctx: Context, name: str) -> None:
    ctx.store.mark_active(name)


def session_workdir(ctx: Context, name: str, requested: str | None = None) -> str:
    """The directory a command starts in: the project, or `requested` inside it."""
    return workdir.resolve(workdir.project_dir(ctx.store.load(name)), requested)


class Watch:
    """The `cage-exec watch KEY` exec paired with one command (see the module's doc)."""

    def __init__(self, engine: EngineAPI, container: str, key: str) -> None:
        _, self._sock = engine.exec_attach(container, ["cage-exec", "watch", key], stdin=True)
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def signal(self, signame: str) -> None:
        """Send INT, TERM or HUP to the command; end it for good after a grace time."""
        with self._lock, contextlib.suppress(OSError):
            self._sock.sendall(f"{signame}\n".encode())
        if self._timer is None:
            self._timer = threading.Timer(GRACE_SECONDS, self.close)
            self._timer.daemon = True
            self._timer.start()

    def close(self) -> None:
        """End of stdin for the watcher: it ends whatever is left of the command."""
        with self._lock, contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)
        if self._timer is not None:
            self._timer.cancel()


class Exec:
    """One command running in a session, over the engine API (no terminal)."""

    def __init__(
        self,
        ctx: Context,
        name: str,
        command: list[str],
        stdin: IO[bytes] | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
    ) -> None:
        self.ctx = ctx
        self.name = name
        self.command = command
        self.engine = ctx.engine_for(name)
        container = running_container(name, self.engine, ctx.store)
        directory = session_workdir(ctx, name, cwd)
        key = uuid.uuid4().hex
        mark_active(ctx, name)
        self._exec_id, self._sock = self.engine.exec_attach(
            container,
            ["cage-exec", "run", key, *command],
            stdin=stdin is not None,
            workdir=directory,
            env=env,
        )
        self.watch = Watch(self.engine, container, key)
        self.code: int | None = None
        if stdin is not None:
            threading.Thread(target=self._pump, args=(stdin,), daemon=True).start()

    def _pump(self, stdin: IO[bytes]) -> None:
        """Copy our stdin to the command's, as it comes; then end its stdin."""
        fd = stdin.fileno()
        with contextlib.suppress(OSError):
            while chunk := os.read(fd, 65536):
                self._sock.sendall(chunk)
            self._sock.shutdown(socket.SHUT_WR)

    def output(self) -> Iterator[tuple[bytes | None, bytes | None]]:
        """(stdout, stderr) chunks as they come; `code` is set once they end."""
        try:
            yield from frames(self._sock)
            self.code = self.engine.exit_code(self._exec_id)
        finally:
            self._sock.close()
            self.watch.close()
            mark_active(self.ctx, self.name)
            record_event(
                self.ctx,
                "exec",
                self.name,
                {
                    "status": "ok" if self.code == 0 else "error",
                    "command": self.command[0],
                    "exit_code": self.code,
                },
            )


def on_terminal(
    ctx: Context,
    kind: str,
    name: str,
    command: list[str],
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    stdin: bool = True,
    record: bool = True,
    raw: bool = False,
) -> TerminalRun:
    """Prepare a command for the user's terminal (shell, exec -t, attach); `raw`: its
    output unfiltered (`--raw-terminal`)."""
    engine = ctx.engine_for(name)
    container = running_container(name, engine, ctx.store)
    directory = session_workdir(ctx, name, cwd)
    terminal = TerminalRun(ctx, engine, name, container, command, directory, env or {}, stdin, raw)
    if record:
        terminal.events.append((kind, {"status": "ok"}))
    return terminal


class TerminalRun:
    """A command on the user's terminal through `docker exec -t`, tied to claude-cage
    by a watch. The docker CLI runs on a pseudo-terminal of claude-cage's own
    (`pty_relay`), so that the session's output reaches the user's terminal through
    `terminal_filter` (no clipboard writes, no passthrough); `raw` passes it as it is."""

    def __init__(
        self,
        ctx: Context,
        engine: EngineAPI,
        name: str,
        container: str,
        command: list[str],
        directory: str,
        env: dict[str, str],
        stdin: bool,
        raw: bool = False,
    ) -> None:
        self.ctx, self.engine, self.name, self.container = ctx, engine, name, container
        self.command, self.directory, self.env, self.stdin = command, directory, env, stdin
        self.raw = raw
        self.watch: Watch | None = None
        # Written while the screen already shows, beside the watch: not before it.
        self.events: list[tuple[str, dict[str, str]]] = []

    def run(self) -> int:
        key = uuid.uuid4().hex
        flags = ["-i", "-t"] if self.stdin else ["-t"]
        # Values travel in the docker CLI's environment, not on its command line.
        env_flags = [arg for k in self.env for arg in ("-e", k)]
        argv = [
            "docker",
            *fleet.docker_cli_args(self.engine.endpoint),
            "exec",
            *flags,
            f"--detach-keys={DOCKER_DETACH_KEYS}",
            "-w",
            self.directory,
            *env_flags,
            self.container,
            "cage-exec",
            "run",
            key,
            *self.command,
        ]
        failed: list[BaseException] = []

        def watch() -> None:
            try:
                self.watch = Watch(self.engine, self.container, key)
            except BaseException as exc:
                failed.append(exc)
            for kind, value in self.events:
                record_event(self.ctx, kind, self.name, value)
            mark_active(self.ctx, self.name)

        # The watch exec, the events and the record's last use are made while the
        # screen already shows (none of them delays it), as the docker CLI starts.
        watching = threading.Thread(target=watch, daemon=True)
        try:
            code = pty_relay.run(
                argv,
                {**self.ctx.environ, **self.env},
                filtered=not self.raw,
                forward_stdin=self.stdin,
                started=watching.start,
            )
        finally:
            if watching.ident is not None:
                watching.join()
            if self.watch is not None:
                self.watch.close()
            mark_active(self.ctx, self.name)
        if failed:
            raise failed[0]
        return code

    def signal(self, signame: str) -> None:
        if self.watch is not None:
            self.watch.signal(signame)


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


SHELL = ["bash", "--noprofile", "--norc"]
