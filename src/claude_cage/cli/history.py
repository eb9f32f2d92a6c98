"""The flight recorder's archives of destroyed sessions: history."""

from __future__ import annotations

# Commands import what they use when they run, for start-up time: `--help` and `list`
# load only the command group (tests/unit/test_cli_registry.py).
import click

from claude_cage.cli.base import CONTEXT, cli
from claude_cage.render import note, print_json, table


@cli.command(context_settings=CONTEXT)
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def history(name: str | None, as_json: bool) -> None:
    """List destroyed sessions kept by the flight recorder.

    Whatever removes a session ('destroy', the 'stop' of an ephemeral one, 'gc')
    archives its transcripts, egress log and events first (unless --purge); each
    transcript file is kept within history_transcript_size (64m). 'logs NAME' and
    'egress NAME' read the newest archive of NAME once it is gone. Archives older than
    history_days (default 30) are pruned by gc and by destroy.
    """
    from claude_cage.operations import history as history_ops  # start-up: see above

    found = history_ops.entries(name)
    if as_json:
        print_json({"archives": [a.as_dict() for a in found]})
        return
    rows = [(a.name, a.as_dict()["destroyed"], _size(a.size), str(a.path)) for a in found]
    click.echo(table(rows, ("NAME", "DESTROYED", "SIZE", "ARCHIVE")))
    if not found:
        note("no archived session" + (f" named {name}" if name else ""))


def _size(size: int) -> str:
    return f"{size / 1024:.1f}k" if size < 1024**2 else f"{size / 1024**2:.1f}m"
