"""The `claude-cage` command group, shared by every command module."""

from __future__ import annotations

import click

from claude_cage import __version__

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="claude-cage")
def cli() -> None:
    """Run Claude Code in hardened Docker sessions.

    Sessions have no network of their own: with --network filtered (the default) they
    reach only allowlisted hosts, through a proxy outside the sandbox.
    """
