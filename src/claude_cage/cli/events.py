"""The event log: read it (events), add to it (log)."""

from __future__ import annotations

# Commands import what they use when they run, for start-up time: `--help` and `list`
# load only the command group (tests/unit/test_cli_registry.py).
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from claude_cage.cli.base import CONTEXT, cli, command_context
from claude_cage.errors import BadInput
from claude_cage.render import print_json, sanitize, table

_RELATIVE = re.compile(r"^(\d+)([smhd])$")


def parse_since(text: str) -> datetime:
    """'10m', '2h', '1d' (ago) or an ISO 8601 time."""
    match = _RELATIVE.match(text.strip())
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        return datetime.now(UTC) - timedelta(**{unit: int(match.group(1))})
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(
            f"--since {text!r} is not a time", "use e.g. 10m, 2h, 1d or 2026-11-24T09:00:00Z"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _line(event: dict[str, Any]) -> tuple[str, str, str, str, str]:
    value = dict(event["value"])
    status = str(value.pop("status", ""))
    return (
        event["_ts"][:19] + "Z",
        event["type"],
        event["key"],
        status,
        json.dumps(value, separators=(",", ":")) if value else "",
    )


@cli.group(context_settings=CONTEXT, invoke_without_command=True)
@click.option("--session", help="Only this session's events.")
@click.option("--type", "type_", help="Only events of this type (session, egress, ...).")
@click.option("--since", help="Only events since WHEN: 10m, 2h, 1d or an ISO time.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the last N events.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events.")
@click.option("--sync", "do_sync", is_flag=True, help="Send pending events to MongoDB now.")
@click.option(
    "--status",
    "show_status",
    is_flag=True,
    help="Show the sink, the pending count and the last error.",
)
@click.pass_context
def events(
    ctx: click.Context,
    session: str | None,
    type_: str | None,
    since: str | None,
    limit: int | None,
    as_json: bool,
    follow: bool,
    do_sync: bool,
    show_status: bool,
) -> None:
    """Read the event log: every operation claude-cage ran, and every blocked request.

    Events live in SQLite in the data directory, and are mirrored to MongoDB when
    mongodb_uri (or MONGODB_URI) is set. 'events export' writes them for a SIEM.
    """
    if ctx.invoked_subcommand is not None:
        return
    log = command_context().events  # opened here: `--help` and `list` need no event log
    if do_sync:
        sent = log.sync()
        if as_json:
            print_json({"sent": sent, **log.status()})
        else:
            click.echo(f"sent {sent} event(s); {log.status()['pending']} pending")
        return
    if show_status:
        status = log.status()
        if as_json:
            print_json({"status": status})
        else:
            for key, value in status.items():
                click.echo(sanitize(f"{key:14} {'' if value is None else value}"))
        return
    when = parse_since(since) if since else None
    if follow:
        try:
            for event in log.follow(session=session, type=type_, since=when, backlog=limit or 10):
                click.echo(json.dumps(event) if as_json else sanitize("  ".join(_line(event))))
        except KeyboardInterrupt:
            pass
        return
    found = log.query(session=session, type=type_, since=when, limit=limit)
    if as_json:
        print_json({"events": found})
    else:
        click.echo(table([_line(e) for e in found], ("TIME", "TYPE", "KEY", "STATUS", "VALUE")))


@events.command("export", context_settings=CONTEXT)
@click.option("--session", help="Only this session's records (live or destroyed).")
@click.option("--since", help="Only records since WHEN: 10m, 2h, 1d or an ISO time.")
@click.option(
    "--format",
    "format_",
    type=click.Choice(["jsonl", "otlp"]),
    required=True,
    help="JSON lines, or OpenTelemetry logs in OTLP JSON (one ExportLogsServiceRequest).",
)
@click.option("--transcripts", is_flag=True, help="Also Claude Code's transcript turns.")
def export(session: str | None, since: str | None, format_: str, transcripts: bool) -> None:
    """Write the events (and transcript turns) for a SIEM or a tracing backend.

    Destroyed sessions are read from their archives (see history). Secrets are masked,
    as everywhere else.
    """
    from claude_cage.operations.export import collect, to_otlp

    records = collect(
        command_context(), session, parse_since(since) if since else None, transcripts
    )
    if format_ == "otlp":
        click.echo(json.dumps(to_otlp(records), separators=(",", ":")))
        return
    for record in records:
        click.echo(json.dumps(record.to_json(), separators=(",", ":")))


@cli.command(context_settings=CONTEXT)
@click.argument("type_", metavar="TYPE")
@click.argument("key")
@click.argument("value", required=False, default="{}")
def log(type_: str, key: str, value: str) -> None:
    """Add an event: log TYPE KEY [JSON] (e.g. log session "review:web" '{"status":"ok"}').

    The same interface as the seed's `store.js log`, for scripts and agents. Prints the
    event's id; exits 1 when the event could not be recorded.
    """
    try:
        data = json.loads(value)
    except (ValueError, RecursionError):
        raise BadInput("VALUE is not valid JSON", 'quote it, e.g. \'{"status": "ok"}\'') from None
    if not isinstance(data, dict):
        raise BadInput("VALUE must be a JSON object", 'e.g. \'{"status": "ok"}\'')
    event = command_context().events.record(
        type_, key, data, strict=True
    )  # exit 1 when not recorded
    click.echo(event["id"])
