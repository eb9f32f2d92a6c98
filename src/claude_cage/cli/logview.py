"""A session's transcript on stdout, as `logs` shows it (no Click here: `logs NAME`
runs without it, cli/quick.py)."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

from claude_cage.render import note, sanitize

if TYPE_CHECKING:
    from claude_cage.context import Context
    from claude_cage.operations.logs import Files


def width() -> int:
    """A terminal's width, else 100 (a pipe, a file)."""
    import shutil  # start-up: only when the output is a terminal

    return shutil.get_terminal_size((100, 24)).columns if sys.stdout.isatty() else 100


def at_once(ctx: Context, name: str, tail: int | None) -> None:
    """What the transcript holds now: its files read once, rendered in one go."""
    # start-up: the engine client, loaded after the command line is read
    from claude_cage.operations.logs import read_files
    from claude_cage.transcript import render

    now = read_files(ctx, name)
    notes(now)
    if not write(render(now.files, width(), tail)):
        note(f"no transcript in {name} yet: Claude Code has not been used there")


def notes(found: Files) -> None:
    """Where the transcript came from, when not the live session, and what was left out."""
    if found.destroyed:
        note(f"session {found.name} was destroyed at {found.destroyed}: read from its archive")
    if found.left_out:
        # The session named these files: one line each, whatever they hold.
        left = ", ".join(sanitize(n) for n in found.left_out[:3])
        left += ", ..." if len(found.left_out) > 3 else ""
        note(f"not read, past 1 GiB of transcripts in all: {left}")


def write(lines: Iterable[str]) -> int:
    """Write the lines, a thousand a write (one system call each even when stdout is
    unbuffered: PYTHONUNBUFFERED, not one a line); how many."""
    written = 0
    remaining = iter(lines)
    while chunk := list(itertools.islice(remaining, 1000)):
        sys.stdout.write("\n".join(chunk) + "\n")
        written += len(chunk)
    sys.stdout.flush()
    return written
