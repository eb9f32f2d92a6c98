"""Working in a session: exec, shell, attach (the user's terminal), logs."""

from __future__ import annotations

# Commands import what they use when they run, for start-up time: `--help` and `list`
# load only the command group (tests/unit/test_cli_registry.py).
import sys
from collections.abc import Iterable

import click

from claude_cage.cli.base import CONTEXT, RAW_TERMINAL_HELP, cli, command_context
from claude_cage.cli.sessions import pick_session

# --- exec, shell, attach, logs --------------------------------------------------------

WORKDIR_HELP = "Start in DIR, relative to the project (default: the project itself)."


@cli.command(name="exec", context_settings={**CONTEXT, "ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--interactive", "-i", is_flag=True, help="Keep stdin open (as docker exec -i).")
@click.option("--tty", "-t", is_flag=True, help="Give the command a terminal (as docker exec -t).")
@click.option("--workdir", "-w", metavar="DIR", help=WORKDIR_HELP)
@click.option("--env", "-e", "env", multiple=True, metavar="KEY=VAL", help="Set a variable.")
@click.option("--raw-terminal", is_flag=True, help="With -t: " + RAW_TERMINAL_HELP)
def exec_cmd(
    name: str,
    command: tuple[str, ...],
    interactive: bool,
    tty: bool,
    workdir: str | None,
    env: tuple[str, ...],
    raw_terminal: bool,
) -> None:
    """Run a command in a session and return its exit code: exec NAME -- CMD...

    Output streams as it comes; stdin is passed on when it is not a terminal (or with
    -i). Ctrl-C, SIGTERM and SIGHUP reach the command, and nothing it started outlives
    this exec. Headless Claude Code: git diff | exec NAME -- claude -p "review this"
    """
    from claude_cage.cli.terminal import forwarding
    from claude_cage.parsing import parse_env

    variables = parse_env(env)
    if raw_terminal and not tty:
        from claude_cage.errors import BadInput

        raise BadInput("--raw-terminal goes with -t", "without -t the output is passed as written")
    if tty:
        from claude_cage.operations.run import on_terminal

        run = on_terminal(
            command_context(),
            "exec",
            name,
            list(command),
            workdir,
            variables,
            stdin=interactive,
            raw=raw_terminal,
        )
        with forwarding(run.signal):
            sys.exit(run.run())
    forward = interactive or not sys.stdin.isatty()
    sys.exit(_stream(name, list(command), forward, variables, workdir))


def _stream(
    name: str, command: list[str], forward: bool, env: dict[str, str], workdir: str | None
) -> int:
    """Run a command without a terminal: output streamed, our stdin passed on when
    `forward`, INT/TERM/HUP passed on; its exit code."""
    from claude_cage.cli.terminal import forwarding
    from claude_cage.operations.run import Exec

    job = Exec(
        command_context(), name, command, sys.stdin.buffer if forward else None, env, workdir
    )
    with forwarding(job.watch.signal) as received:
        for out, err in job.output():
            if out:
                sys.stdout.buffer.write(out)
                sys.stdout.buffer.flush()
            if err:
                sys.stderr.buffer.write(err)
                sys.stderr.buffer.flush()
    if job.code is None or job.code < 0:
        return 128 + received[0] if received else 1
    return job.code


@cli.command(context_settings=CONTEXT)
@click.argument("name", required=False)
@click.option("--workdir", "-w", metavar="DIR", help=WORKDIR_HELP)
@click.option("--raw-terminal", is_flag=True, help=RAW_TERMINAL_HELP)
def shell(name: str | None, workdir: str | None, raw_terminal: bool) -> None:
    """Open a bash shell in a session (default: the most recent running one)."""
    from claude_cage.cli.terminal import forwarding, is_terminal
    from claude_cage.operations.run import SHELL, on_terminal, shell_environment

    name = pick_session(name)
    if not is_terminal():  # commands on stdin, as `bash` reads them from a pipe
        sys.exit(_stream(name, SHELL, True, shell_environment(name), workdir))
    run = on_terminal(
        command_context(), "shell", name, SHELL, workdir, shell_environment(name), raw=raw_terminal
    )
    with forwarding(run.signal):
        sys.exit(run.run())


@cli.command(context_settings=CONTEXT)
@click.argument("name", required=False)
@click.option(
    "--workdir",
    "-w",
    metavar="DIR",
    help="Where a new Claude Code starts, relative to the project (default: the project).",
)
@click.option("--raw-terminal", is_flag=True, help=RAW_TERMINAL_HELP)
def attach(name: str | None, workdir: str | None, raw_terminal: bool) -> None:
    """Attach the terminal to the session's Claude Code (default: most recent running).

    It is the same Claude Code every time, screen redrawn; Ctrl-\\ detaches and leaves
    it working. Two terminals can attach at once. If Claude Code has exited, a new one
    starts in the project. Clipboard writes (OSC 52) and passthrough sequences from the
    session never reach this terminal (unless --raw-terminal).
    """
    from claude_cage.cli.terminal import attach as attach_terminal
    from claude_cage.cli.terminal import require_terminal

    require_terminal()  # as `attach NAME` alone, which runs without Click (quick.py)
    sys.exit(attach_terminal(command_context(), pick_session(name), workdir, raw=raw_terminal)[0])


@cli.command(context_settings=CONTEXT)
@click.argument("name", required=False)
@click.option("--follow", "-f", is_flag=True, help="Keep following: show new events as they come.")
@click.option(
    "--tail", type=click.IntRange(min=0), help="Only the last N events (N lines with --raw)."
)
@click.option(
    "--json", "as_json", is_flag=True, help="The transcript events unchanged, one per line."
)
@click.option("--raw", is_flag=True, help="The session container's own output instead.")
def logs(name: str | None, follow: bool, tail: int | None, as_json: bool, raw: bool) -> None:
    """Show what the agent did: prompts, tool calls, results, answers (default: most recent).

    Read from Claude Code's own transcripts in the session's data volume, for running and
    stopped sessions, and from the archive a destroyed session left (see history). --raw
    shows the container's output instead; on a terminal its control characters are shown
    escaped (\\x1b...), so what a session writes cannot set your terminal's title or
    clipboard, clear it, or forge lines.
    """
    from claude_cage.errors import BadInput

    if raw and as_json:
        raise BadInput("--raw and --json do not go together", "pick one")
    name = pick_session(name)
    try:
        if raw:
            _raw_logs(name, follow, tail)
        else:
            _transcript(name, follow, tail, as_json)
    except KeyboardInterrupt:
        pass


def _transcript(name: str, follow: bool, tail: int | None, as_json: bool) -> None:
    from claude_cage.cli.logview import at_once, notes, width, write
    from claude_cage.operations.logs import Files, read_transcript
    from claude_cage.transcript import Renderer, last_lines
    from claude_cage.transcript import as_json as event_json

    if not follow and not as_json:
        at_once(command_context(), name, tail)
        return
    renderer = Renderer(width())
    # --tail counts the lines shown: the JSON lines are the events, but many events
    # (hooks, snapshots, thinking) show nothing, so the rendered text is cut instead.
    first = True
    found = read_transcript(command_context(), name, follow=follow, tail=tail if as_json else None)
    notes(Files(name, {}, found.destroyed, found.left_out))
    for batch in found.batches:
        lines: Iterable[str]
        if as_json:
            lines = (event_json(e) for e in batch)
        elif first and tail is not None:
            lines = last_lines(renderer.lines(batch), tail)
        else:
            lines = renderer.lines(batch)
        first = False
        write(lines)


def _raw_logs(name: str, follow: bool, tail: int | None) -> None:
    from claude_cage.operations.logs import raw
    from claude_cage.render import sanitize_stream

    chunks = raw(command_context(), name, follow=follow, tail=tail)
    # Escaped on a terminal; a pipe or a file gets the bytes as the session wrote them.
    stream = (t.encode() for t in sanitize_stream(chunks)) if sys.stdout.isatty() else chunks
    for data in stream:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
