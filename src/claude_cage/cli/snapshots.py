"""Kept state: snapshot (save, list, rm), restore, fork."""

from __future__ import annotations

# Commands import what they use when they run, for start-up time: `--help` and `list`
# load only the command group (tests/unit/test_cli_registry.py).
from typing import Any

import click

from claude_cage.cli.base import CONTEXT, cli, command_context
from claude_cage.render import note, print_json, warn


class _SnapshotGroup(click.Group):
    """`snapshot NAME` saves; `snapshot list` and `snapshot rm SNAP` are subcommands."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["save", *args]
        return super().resolve_command(ctx, args)


@cli.group(cls=_SnapshotGroup, context_settings=CONTEXT)
def snapshot() -> None:
    """Keep a session's state: snapshot NAME [--name SNAP], snapshot list, snapshot rm SNAP.

    A snapshot holds the session's clone, Claude Code's data (transcripts, settings,
    logins), its scratch /workspace and its record; a running session is frozen for the
    copy. Not kept: bound host directories (--mount), memory and running processes.
    """


@snapshot.command("save", context_settings=CONTEXT)
@click.argument("name")
@click.option("--name", "snap", metavar="SNAP", help="The snapshot's name (default: NAME-TIME).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def save(name: str, snap: str | None, as_json: bool) -> None:
    """Keep session NAME's state as a snapshot (also: snapshot NAME)."""
    from claude_cage.operations.snapshot import take

    result = take(command_context(), name, snap)
    if as_json:
        print_json({"snapshot": result.snapshot.as_dict(), "paused": result.paused})
        return
    from claude_cage.resources import human_bytes

    click.echo(result.snapshot.name)
    frozen = ", frozen for the copy" if result.paused else ""
    note(f"snapshot {result.snapshot.name} of {name}: {human_bytes(result.snapshot.size)} "
         f"in {result.seconds:.1f} s{frozen}")  # fmt: skip


@snapshot.command("list", context_settings=CONTEXT)
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(name: str | None, as_json: bool) -> None:
    """List snapshots (of session NAME): size, age, source."""
    from claude_cage.operations.snapshot import list_snapshots
    from claude_cage.resources import human_bytes, human_duration

    found, damaged = list_snapshots(command_context(), name)
    if as_json:
        print_json({"snapshots": [s.as_dict() for s in found], "damaged": damaged})
        return
    rows: list[tuple[Any, ...]] = [("NAME", "SOURCE", "SIZE", "AGE")]
    for item in found:
        gone = "" if item.source_exists else " (gone)"
        rows.append((item.snapshot.name, item.snapshot.source + gone,
                     human_bytes(item.snapshot.size), human_duration(item.age)))  # fmt: skip
    widths = [max(len(str(r[i])) for r in rows) for i in range(4)]
    for row in rows if found else []:
        click.echo("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    if not found:
        note("no snapshots" + (f" of {name}" if name else ""))
    for snap in damaged:
        warn(f"snapshot {snap} is damaged: remove it with 'claude-cage snapshot rm {snap}'")


@snapshot.command("rm", context_settings=CONTEXT)
@click.argument("snap")
def rm(snap: str) -> None:
    """Remove a snapshot and its volumes."""
    from claude_cage.operations.snapshot import remove

    remove(command_context(), snap)
    note(f"snapshot {snap} removed")


@cli.command(context_settings=CONTEXT)
@click.argument("name")
@click.argument("snap")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def restore(name: str, snap: str, as_json: bool) -> None:
    """Roll a session back to one of its snapshots; Claude Code continues.

    The project, Claude Code's data and the record become what they were; a running
    session is stopped for it and started again (Claude Code with --continue).
    """
    from claude_cage.operations.fork import restore as restore_op

    result = restore_op(command_context(), name, snap)
    for message in result.warnings:
        warn(message)
    if as_json:
        print_json({"name": name, "snapshot": snap, "restarted": result.restarted,
                    "continued": result.continued})  # fmt: skip
        return
    again = ", started again" if result.restarted else " (stopped)"
    note(f"session {name} restored to snapshot {snap}{again}")


@cli.command(context_settings=CONTEXT)
@click.argument("name")
@click.argument("new")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def fork(name: str, new: str, as_json: bool) -> None:
    """Start a new session from another's state as it is now, running or stopped.

    A clone session's fork works on its own branch, cage/NEW, starting where NAME was
    (its commits and uncommitted work), so the two sessions' diffs never mix.
    """
    from claude_cage.operations.fork import fork as fork_op

    result = fork_op(command_context(), name, new)
    for message in result.warnings:
        warn(message)
    if as_json:
        print_json({"name": new, "source": name, "branch": result.branch,
                    "engine": result.start.engine})  # fmt: skip
        return
    click.echo(new)
    branch = f" on branch {result.branch}" if result.branch else ""
    note(f"session {new} started from {name}{branch}")
