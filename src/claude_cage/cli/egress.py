"""Network and credential commands: allow, egress, key."""

from __future__ import annotations

import sys

import click

from claude_cage.cli.base import CONTEXT, cli
from claude_cage.render import note, print_json, sanitize, table


@cli.command(context_settings=CONTEXT)
@click.argument("name")
@click.argument("hosts", nargs=-1, required=True)
@click.option("--remove", is_flag=True, help="Remove the hosts instead of adding them.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def allow(name: str, hosts: tuple[str, ...], remove: bool, as_json: bool) -> None:
    """Add hosts to a filtered session's allowlist (or --remove them), live.

    HOST is an exact name (api.example.com) or a suffix pattern (*.example.com,
    which matches subdomains of example.com but not example.com itself).
    """
    from claude_cage.operations.egress import allow as allow_op

    result = allow_op(name, list(hosts), remove=remove)
    if as_json:
        print_json(
            {
                "name": result.name,
                "allowed_hosts": result.allowed_hosts,
                "added": result.added,
                "removed": result.removed,
                "live": result.live,
            }
        )
        return
    click.echo(result.name)
    changed = result.removed if remove else result.added
    verb = "removed" if remove else "added"
    when = "now" if result.live else "at the next start"
    note(f"{verb}: {' '.join(changed) or 'nothing'} (applies {when})")


@cli.command(context_settings=CONTEXT)
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new requests.")
@click.option("--blocked", is_flag=True, help="Only requests the proxy refused.")
def egress(name: str, as_json: bool, follow: bool, blocked: bool) -> None:
    """Show every request a filtered session made through its proxy."""
    from claude_cage.operations.egress import follow_log, read_log

    requests = [r for r in read_log(name) if r.allowed is False or not blocked]
    if as_json and not follow:
        print_json({"name": name, "requests": [r.to_json() for r in requests]})
        return
    rows = [(r.time, r.host, r.port, "allowed" if r.allowed else "BLOCKED") for r in requests]
    if not as_json:
        click.echo(table(rows, ("TIME", "HOST", "PORT", "RESULT")))
    if follow:
        try:
            for r in follow_log(name):
                if blocked and r.allowed:
                    continue
                if as_json:
                    import json

                    click.echo(json.dumps(r.to_json()))
                else:
                    result = "allowed" if r.allowed else "BLOCKED"
                    click.echo(sanitize(f"{r.time}  {r.host}  {r.port}  {result}"))
        except KeyboardInterrupt:
            pass


@cli.group(context_settings=CONTEXT)
def key() -> None:
    """Manage a session's Anthropic API key."""


@key.command("set", context_settings=CONTEXT)
@click.argument("name")
@click.option(
    "--file",
    "key_file",
    type=click.Path(dir_okay=False, exists=True),
    help="Read the key from this file (default: standard input).",
)
def key_set(name: str, key_file: str | None) -> None:
    """Change a running session's API key without restarting it.

    The key is read from --file or standard input, never from the command line.
    """
    from pathlib import Path

    from claude_cage.operations.keys import set_key

    if key_file:
        value = Path(key_file).read_text()
    else:
        if sys.stdin.isatty():
            note("paste the API key, then press Enter:")
            value = sys.stdin.readline()
        else:
            value = sys.stdin.read()
    result = set_key(name, value)
    click.echo(result.name)
    note(
        f"key updated ({result.credential}; "
        f"{'in effect now' if result.live else 'in effect at the next start'})"
    )
