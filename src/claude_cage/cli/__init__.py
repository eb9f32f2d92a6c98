"""The `claude-cage` command line: parse flags, call one operation, render the result.

Each module here holds a few commands. Operations are imported inside each command,
so `--help` and `list` load only what they need. Errors are caught once, in `main()`,
and shown as one line plus a hint, with the exit code the error carries.
"""

from __future__ import annotations

# Commands import what they use when they run, for start-up time: `--help` and `list`
# load only the command group (tests/unit/test_cli_registry.py).
import contextlib
import os
import sys

import click

from claude_cage.cli.base import cli
from claude_cage.errors import EXIT_FAILED, CageError, file_error
from claude_cage.render import RED, colour

__all__ = ["cli", "main"]


def main() -> None:
    from claude_cage import interrupt

    interrupt.install()
    try:
        cli.main(prog_name="claude-cage", standalone_mode=False)
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
    except CageError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        _interrupted()
    except BrokenPipeError:
        os._exit(EXIT_FAILED)
    except OSError as exc:  # a full, read-only or damaged filesystem: one line, no traceback
        _fail(file_error(exc))


def _interrupted() -> None:
    """One line, exit 130, at once: a worker thread still waiting on an engine does not
    hold the exit up (what was undone before, in `finally` and rollbacks, is done)."""
    click.echo(f"{colour('error:', RED)} interrupted", err=True)
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(130)


def _fail(exc: CageError) -> None:
    # Messages can quote what the engine or a session said: never raw.
    from claude_cage.render import sanitize

    click.echo(f"{colour('error:', RED)} {sanitize(exc.message)}", err=True)
    if exc.hint:
        click.echo(f"hint: {sanitize(exc.hint)}", err=True)
    sys.exit(exc.exit_code)
