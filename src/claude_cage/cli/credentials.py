"""Credential commands: secret set, list, rm."""

from __future__ import annotations

# Commands import what they use when they run, for start-up time: `--help` and `list`
# load only the command group (tests/unit/test_cli_registry.py).
import sys

import click

from claude_cage.cli.base import CONTEXT, cli, command_context
from claude_cage.render import note, print_json, table, warn

KIND_HELP = (
    "How the value is sent: api-key (x-api-key), claude-token (the token 'claude "
    "setup-token' prints), github (git: Basic x-access-token; API: Bearer), bearer, or "
    "header (with --header). Default: github for GitHub's hosts, else bearer."
)


@cli.group(context_settings=CONTEXT)
def secret() -> None:
    """Manage credentials the proxy adds for a host, for all sessions or one.

    A filtered session never holds them: its companion adds each one to HTTPS requests
    for the credential's own hosts, and nowhere else.
    """


@secret.command("set", context_settings=CONTEXT)
@click.argument("name")
@click.option("--host", "hosts", multiple=True, help="A host it is for (repeatable).")
@click.option("--kind", type=str, default=None, help=KIND_HELP)
@click.option("--header", default=None, help="The header to send, with --kind header.")
@click.option("--session", default=None, help="Only for this session (default: all).")
@click.option(
    "--file",
    "value_file",
    type=click.Path(dir_okay=False, exists=True),
    help="Read the value from this file (default: standard input).",
)
def secret_set(
    name: str,
    hosts: tuple[str, ...],
    kind: str | None,
    header: str | None,
    session: str | None,
    value_file: str | None,
) -> None:
    """Store a credential and hand it to running sessions, without a restart.

    The value is read from --file or standard input, never from the command line, e.g.
    claude-cage secret set github --host github.com --host api.github.com < token
    """
    from claude_cage.operations.keys import read_value_file
    from claude_cage.operations.secret_store import set_secret

    if value_file:
        value = read_value_file(value_file, "--file")
    elif sys.stdin.isatty():
        note("paste the secret, then press Enter:")
        value = sys.stdin.readline()
    else:
        value = sys.stdin.read()
    result = set_secret(command_context(), name, value, list(hosts), kind, header, session)
    click.echo(result.name)
    live = ", ".join(result.updated) if result.updated else "none running"
    note(f"{result.kind} for {', '.join(result.hosts)} ({result.fingerprint}); now in: {live}")


@secret.command("list", context_settings=CONTEXT)
@click.option(
    "--session",
    default=None,
    help="Those for all sessions and this session's own (default: every session's own).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def secret_list(session: str | None, as_json: bool) -> None:
    """Show credentials: name, scope, kind, hosts and a fingerprint, never a value.

    Without --session: those for all sessions and every session's own."""
    from claude_cage.operations.secret_store import list_secrets

    creds = list_secrets(command_context(), session)
    if as_json:
        print_json({"secrets": creds})
        return
    if not creds:
        note("no credentials")
        return
    rows = [
        [
            c["name"],
            f"session {c['session']}" if c["session"] else c["scope"],
            c["kind"] or "(damaged)",
            " ".join(c["hosts"]),
            c["fingerprint"] or "-",
        ]
        for c in creds
    ]
    click.echo(table(rows, ["NAME", "SCOPE", "KIND", "HOSTS", "FINGERPRINT"]))
    for c in creds:
        if c["damaged"]:
            warn(c["damaged"])


@secret.command("rm", context_settings=CONTEXT)
@click.argument("name")
@click.option("--session", default=None, help="Remove this session's own credential.")
def secret_rm(name: str, session: str | None) -> None:
    """Remove a credential; running sessions stop getting it at once."""
    from claude_cage.operations.secret_store import remove_secret

    result = remove_secret(command_context(), name, session)
    click.echo(result.name)
