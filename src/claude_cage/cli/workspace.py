"""Clone-mode review commands: diff, fetch, merge, apply."""

from __future__ import annotations

# Commands import what they use when they run, for start-up time: `--help` and `list`
# load only the command group (tests/unit/test_cli_registry.py).
import sys

import click

from claude_cage.cli.base import CONTEXT, cli, command_context
from claude_cage.render import note, print_json


@cli.command(context_settings=CONTEXT)
@click.argument("name")
@click.option(
    "--stat", is_flag=True, help="Only a summary: files changed, lines added and removed."
)
def diff(name: str, stat: bool) -> None:
    """Show what a clone-mode session changed since its base, committed or not."""
    from claude_cage.operations.review import diff as diff_op

    chunks = diff_op(
        command_context(), name, stat=stat
    )  # written as git makes it, never held whole
    if sys.stdout.isatty():  # the session wrote these bytes: no escape reaches the terminal
        from claude_cage.render import sanitize_stream

        for text in sanitize_stream(chunks):
            sys.stdout.write(text)
        sys.stdout.flush()
        return
    for chunk in chunks:  # piped: exact bytes, e.g. for 'git apply'
        sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()


@cli.command(context_settings=CONTEXT)
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def fetch(name: str, as_json: bool) -> None:
    """Create or update the branch cage/NAME in your repository; nothing else changes."""
    from claude_cage.operations.review import fetch as fetch_op

    result = fetch_op(command_context(), name)
    if as_json:
        print_json({"name": name, "repo": result.repo, "branch": result.branch,
                    "base": result.base, "tip": result.tip})  # fmt: skip
        return
    click.echo(result.branch)
    note(f"{result.branch} in {result.repo} is at {result.tip[:12]} (base {result.base[:12]})")


@cli.command(context_settings=CONTEXT)
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def merge(name: str, as_json: bool) -> None:
    """Fetch cage/NAME, then merge it into your repository's current branch."""
    from claude_cage.operations.review import merge as merge_op

    result = merge_op(command_context(), name)
    if as_json:
        print_json({"name": name, "repo": result.repo, "merged": result.merged,
                    "paths": result.paths})  # fmt: skip
        return
    if result.merged:
        note(f"merged cage/{name} into {result.repo} ({len(result.paths)} file(s) changed)")
    else:
        note(f"{result.repo} already has everything in cage/{name}")


@cli.command(context_settings=CONTEXT)
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def apply(name: str, as_json: bool) -> None:
    """Apply a clone-mode session's whole change to your working tree, uncommitted."""
    from claude_cage.operations.review import apply as apply_op

    result = apply_op(command_context(), name)
    if as_json:
        print_json({"name": name, "repo": result.repo, "paths": result.paths})
        return
    from claude_cage.render import sanitize

    for path in result.paths:
        click.echo(sanitize(path))
    note(f"applied {len(result.paths)} file(s) to {result.repo}; review with 'git diff'")
