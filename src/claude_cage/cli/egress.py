"""Network and credential commands: allow, egress, key."""

from __future__ import annotations

# Commands import what they use when they run, for start-up time: `--help` and `list`
# load only the command group (tests/unit/test_cli_registry.py).
import json
import sys
from typing import TYPE_CHECKING

import click

from claude_cage.cli.base import CONTEXT, cli, command_context
from claude_cage.render import note, print_json, sanitize, table, warn

if TYPE_CHECKING:
    from claude_cage.egress import Request


@cli.command(context_settings=CONTEXT)
@click.argument("name")
@click.argument("hosts", nargs=-1)
@click.option(
    "--port",
    "ports",
    type=int,
    multiple=True,
    help="Also allow this port (repeatable), for this session only.",
)
@click.option(
    "--preset",
    "--allow-preset",
    "presets",
    multiple=True,
    metavar="NAME",
    help="Also a package registry, to install from (GET and HEAD): python, node, rust, "
    "go, java or ruby.",
)
@click.option("--remove", is_flag=True, help="Remove the hosts (and ports) instead of adding them.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def allow(
    name: str,
    hosts: tuple[str, ...],
    ports: tuple[int, ...],
    presets: tuple[str, ...],
    remove: bool,
    as_json: bool,
) -> None:
    """Add hosts to a filtered session's allowlist (or --remove them), live.

    HOST is an exact name (api.example.com) or a suffix pattern (*.example.com,
    which matches subdomains of example.com but not example.com itself). Requests
    go out only on the session's allowed ports (allowed_ports, 80 and 443 by default);
    --port adds one for this session. --preset adds (or removes) a package
    registry's preset: its hosts for GET and HEAD only, to install, never to
    publish (docs/policy.md).
    """
    from claude_cage.errors import BadInput
    from claude_cage.operations.egress import allow as allow_op

    if not hosts and not ports and not presets:
        raise BadInput(
            "allow needs a HOST or a --port", f"e.g. claude-cage allow {name} example.com"
        )
    result = allow_op(
        command_context(),
        name,
        list(hosts),
        remove=remove,
        ports=list(ports),
        preset_names=list(presets),
    )
    for warning in result.warnings:
        warn(warning)
    if as_json:
        print_json(
            {
                "name": result.name,
                "allowed_hosts": result.allowed_hosts,
                "allowed_ports": result.allowed_ports,
                "added": result.added,
                "removed": result.removed,
                "added_ports": result.added_ports,
                "removed_ports": result.removed_ports,
                "allowed_presets": result.allowed_presets,
                "added_presets": result.added_presets,
                "removed_presets": result.removed_presets,
                "live": result.live,
                "warnings": result.warnings,
            }
        )
        return
    click.echo(result.name)
    changed = (
        [f"preset {p}" for p in (result.removed_presets if remove else result.added_presets)]
        + (result.removed if remove else result.added)
        + [f"port {p}" for p in (result.removed_ports if remove else result.added_ports)]
    )
    verb = "removed" if remove else "added"
    when = "now" if result.live else "at the next start"
    note(f"{verb}: {' '.join(changed) or 'nothing'} (applies {when})")


@cli.command(context_settings=CONTEXT)
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new requests.")
@click.option(
    "--blocked",
    is_flag=True,
    help="Only requests that never reached an allowed upstream (blocked or refused).",
)
@click.option(
    "--tail",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Only the last N lines of the proxy's log.",
)
@click.option("--all", "everything", is_flag=True, help="The whole log (up to egress_log_size).")
def egress(
    name: str, as_json: bool, follow: bool, blocked: bool, tail: int, everything: bool
) -> None:
    """Show every request a filtered session made through its proxy.

    RESULT is allowed, blocked-host (not on the allowlist), blocked-port (a port not
    allowed), blocked-rule (a deny rule of the egress policy, or its managed
    default: see `policy`), blocked-address (an allowed name at an internal address: loopback,
    private, link-local, the host's own; see allowed_address_ranges), refused (STATUS)
    when the proxy rejected the request itself, or
    failed (STATUS) when an allowed upstream failed or could not be reached.
    RULE is the policy rule that decided (user:2, session:1, default; docs/policy.md).
    Refused requests of every kind are also in the event log (events --type egress).
    """
    from claude_cage.operations.egress import follow_log, read_log

    log = read_log(command_context(), name, None if everything else tail)
    requests = [r for r in log.requests if r.refused or not blocked]
    if log.destroyed:
        follow = False  # nothing more will come
        if not as_json:
            note(f"session {name} was destroyed at {log.destroyed}: read from its archive")
    if as_json and not follow:
        print_json(
            {
                "name": name,
                "requests": [r.to_json() for r in requests],
                "more": log.more,
                "dropped": log.dropped,
                "destroyed": log.destroyed,
            },
            compact=len(requests) > 100,
        )
        return
    if not as_json:
        click.echo(table([_row(r) for r in requests], ("TIME", "HOST", "PORT", "RESULT", "RULE")))
        if log.more:
            note(f"the last {tail} lines of the log; --all for the whole of it")
        if log.dropped:
            note(f"{log.dropped} line(s) rotated out of the log before the audit filed them")
    if follow:
        try:
            for r in follow_log(command_context(), name, log.since, log.seen):
                if blocked and not r.refused:
                    continue
                if as_json:
                    click.echo(json.dumps(r.to_json()))
                else:
                    click.echo(sanitize("  ".join(_row(r))))
        except KeyboardInterrupt:
            pass


def _row(r: Request) -> tuple[str, str, str, str, str]:
    return (r.time, r.host, "" if r.port is None else str(r.port), r.label(), r.rule)


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
@click.option(
    "--force", is_flag=True, help="Set a key that does not look like an Anthropic API key."
)
def key_set(name: str, key_file: str | None, force: bool) -> None:
    """Change a running session's API key without restarting it.

    The key is read from --file or standard input, never from the command line.
    """
    from claude_cage.operations.keys import read_value_file, set_key

    if key_file:
        value = read_value_file(key_file, "--file")
    else:
        if sys.stdin.isatty():
            note("paste the API key, then press Enter:")
            value = sys.stdin.readline()
        else:
            value = sys.stdin.read()
    result = set_key(command_context(), name, value, force=force)
    click.echo(result.name)
    note(
        f"key updated ({result.credential}; "
        f"{'in effect now' if result.live else 'in effect at the next start'})"
    )
