"""The local dashboard: ui."""

from __future__ import annotations

# Commands import what they use when they run, for start-up time: `--help` and `list`
# load only the command group (tests/unit/test_cli_registry.py).
from typing import TYPE_CHECKING

import click

from claude_cage.cli.base import CONTEXT, cli
from claude_cage.render import note

if TYPE_CHECKING:
    from pathlib import Path


@cli.command(context_settings=CONTEXT)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=0, help="Port (default: a free one)."
)
@click.option("--no-open", is_flag=True, help="Print the URL; do not open a browser.")
@click.option("--detach", is_flag=True, help="Run in the background ('ui --stop' ends it).")
@click.option(
    "--stop", "stop_it", is_flag=True, help="End the dashboard running in the background."
)
def ui(port: int, no_open: bool, detach: bool, stop_it: bool) -> None:
    """Serve the dashboard on 127.0.0.1: sessions, transcripts, egress, review, events.

    The URL carries a random token; without it every request is refused, as is a
    request naming another Host, and a change from another origin or without the
    page's CSRF token. It runs until Ctrl-C, or with --detach in the background.
    """
    from claude_cage.dashboard import server  # start-up: only `ui` pays for the dashboard

    if stop_it:
        stopped = server.stop()
        note(f"dashboard on port {stopped.port} stopped" if stopped else "no dashboard runs")
        return
    found = server.running()
    if found is not None:
        note(f"a dashboard runs already (pid {found.pid})")
    elif detach:
        found = server.detach(port)
    if found is not None:
        click.echo(found.url)
        _open(server.launcher(found.url) if not no_open else None)
        return
    http, guard = server.bind(port)
    click.echo(guard.url())
    note("Ctrl-C ends it")
    _open(server.launcher(guard.url()) if not no_open else None)
    server.serve(http, guard)


def _open(launcher: Path | None) -> None:
    """The browser gets the launcher page's path, never the token (its argv is in `ps`)."""
    if launcher is None:
        return
    import webbrowser  # start-up: ~10 ms, only when a browser is opened

    if not webbrowser.open(launcher.as_uri()):
        note("no browser found: open the URL above")
