"""The `claude-cage` command line: parse flags, call one operation, render the result.

Each module here holds a few commands. Operations are imported inside each command,
so `--help` and `list` load only what they need. Errors are caught once, in `main()`,
and shown as one line plus a hint, with the exit code the error carries.

`attach NAME`, the command felt most, `logs NAME` and `list [--json]` run without Click
(cli/quick.py): Click and its command tree are loaded for every other command line.
"""

from __future__ import annotations

# Commands import what they use when they run, for start-up time: `--help` and `list`
# load only the command group (tests/unit/test_cli_registry.py).
import contextlib
import io
import os
import sys
from typing import TYPE_CHECKING

from claude_cage.cli import quick
from claude_cage.errors import EXIT_FAILED, CageError, file_error
from claude_cage.render import RED, colour

if TYPE_CHECKING:
    import click

    from claude_cage.context import Context

__all__ = ["cli", "main"]


def __getattr__(name: str) -> click.Group:
    """`cli`, the command group, loaded (with Click) when first asked for."""
    if name != "cli":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from claude_cage.cli.base import cli  # start-up: Click, which `attach NAME` runs without

    return cli


def main(ctx: Context | None = None) -> None:
    """The console script. `ctx`: the command's Context (a test's, with fakes); by
    default each command makes its own."""
    from claude_cage import interrupt

    interrupt.install()
    for stream in (sys.stdout, sys.stderr):  # a terminal or pipe that is not UTF-8
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            stream.reconfigure(errors="backslashreplace")
    try:
        name = quick.attach_name(sys.argv[1:], os.environ)
        logs = quick.logs_name(sys.argv[1:], os.environ)
        listing = quick.list_json(sys.argv[1:], os.environ)
        if name is not None:
            _attach(name, ctx)
        elif logs is not None:
            _logs(logs, ctx)
        elif listing is not None:
            _list(listing, ctx)
        else:
            _click_main(ctx)
    except CageError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        _interrupted()
    except BrokenPipeError:
        os._exit(EXIT_FAILED)
    except OSError as exc:  # a full, read-only or damaged filesystem: one line, no traceback
        _fail(file_error(exc))


def _attach(name: str, ctx: Context | None) -> None:
    """`claude-cage attach NAME` without Click, as cli/running.py's `attach` runs it."""
    # start-up: the terminal path, loaded only when it runs
    from claude_cage.cli.terminal import attach, require_terminal
    from claude_cage.context import Context

    require_terminal()
    sys.exit(attach(ctx or Context(), name)[0])


def _logs(name: str, ctx: Context | None) -> None:
    """`claude-cage logs NAME` without Click, as cli/running.py's `logs` runs it."""
    # start-up: the transcript path, loaded only when it runs
    from claude_cage.cli.logview import at_once
    from claude_cage.context import Context

    with contextlib.suppress(KeyboardInterrupt):  # as the command: Ctrl-C ends it quietly
        at_once(ctx or Context(), name, None)


def _list(as_json: bool, ctx: Context | None) -> None:
    """`claude-cage list [--json]` without Click, as cli/sessions.py's `list` runs it."""
    from claude_cage.cli.listing import show
    from claude_cage.context import Context

    show(ctx or Context(), as_json, None)


def _click_main(ctx: Context | None) -> None:
    import click  # start-up: `attach NAME` runs without it (quick.py)

    from claude_cage.cli.base import cli

    try:  # `obj`: the root context's, which cli/base.command_context returns
        cli.main(prog_name="claude-cage", standalone_mode=False, obj=ctx)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:  # one line and a hint, like every other error
        command = exc.ctx.command_path if exc.ctx else "claude-cage"
        click.echo(f"{colour('error:', RED)} {exc.format_message()}", err=True)
        click.echo(f"hint: see '{command} --help'", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:  # Click's word for KeyboardInterrupt
        _interrupted()


def _say(line: str) -> None:
    """One line on stderr, as click.echo writes it (Click is not loaded on every path)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _interrupted() -> None:
    """One line, exit 130, at once: a worker thread still waiting on an engine does not
    hold the exit up (what was undone before, in `finally` and rollbacks, is done)."""
    with contextlib.suppress(OSError, ValueError):
        _say(f"{colour('error:', RED)} interrupted")
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(130)


def _fail(exc: CageError) -> None:
    # Messages can quote what the engine or a session said: never raw.
    from claude_cage.render import sanitize

    _say(f"{colour('error:', RED)} {sanitize(exc.message)}")
    if exc.hint:
        _say(f"hint: {sanitize(exc.hint)}")
    sys.exit(exc.exit_code)
