"""Upkeep commands: reap, gc, doctor."""

from __future__ import annotations

# Commands import what they use when they run, for start-up time: `--help` and `list`
# load only the command group (tests/unit/test_cli_registry.py).
import sys
from typing import Any

import click

from claude_cage.cli.base import CONTEXT, cli, command_context
from claude_cage.render import note, print_json, sanitize, table, warn

# --- reap -----------------------------------------------------------------------------


@cli.command(context_settings=CONTEXT)
@click.option("--dry-run", is_flag=True, help="Show what would be stopped; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def reap(dry_run: bool, as_json: bool) -> None:
    """Stop idle sessions and sessions near their memory limit.

    Idle: nobody attached (no shell, attach or exec running) and no CPU use to speak
    of for longer than idle_timeout minutes. Memory: at memory_kill percent of the
    limit a session is stopped, from memory_warn percent it is reported. Run it
    regularly (from cron, say): each run keeps a CPU sample for the next.
    """
    from claude_cage.operations.reap import reap as reap_op
    from claude_cage.resources import human_duration

    verdicts = reap_op(command_context(), dry_run=dry_run)
    if as_json:
        print_json({"dry_run": dry_run, "sessions": [v.as_dict() for v in verdicts]})
        return
    if not verdicts:
        note("no session is running")
        return
    rows = []
    for v in verdicts:
        if v.action == "stop":
            action = "would stop" if dry_run else ("stopped" if v.done else "stop failed")
        else:
            action = {"warn": "warning", "keep": "kept"}[v.action]
        memory = "-" if v.memory_percent is None else f"{v.memory_percent:.0f}%"
        rows.append((v.name, action, v.reason, human_duration(v.idle_seconds), memory))
        if v.error:
            warn(f"{v.name}: {v.error}")
        if v.action == "warn":
            warn(f"{v.name} uses {memory} of its memory limit (start it with --memory 8g)")
    click.echo(table(rows, ("NAME", "ACTION", "REASON", "IDLE", "MEMORY")))


# --- gc -------------------------------------------------------------------------------


def can_ask() -> bool:
    """gc asks before removing metadata only when someone is there to answer."""
    return sys.stdin.isatty()


@cli.command(context_settings=CONTEXT)
@click.option("--dry-run", is_flag=True, help="Show what would be removed; change nothing.")
@click.option(
    "--yes", "-y", is_flag=True, help="Also remove sessions whose container is gone, unasked."
)
@click.option(
    "--purge", is_flag=True, help="Keep no archive of the sessions it removes (see history)."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def gc(dry_run: bool, yes: bool, purge: bool, as_json: bool) -> None:
    """Remove what crashed and ephemeral sessions left behind.

    Containers, volumes and networks of sessions with no metadata, starts that did not
    finish, proxies of stopped sessions, and ephemeral sessions that are not running.
    A running session without (usable) metadata is never removed: its record is rebuilt
    from the engine. The metadata of a session whose container is gone, and damaged
    metadata, is removed only after you confirm (or with --yes). Each item is named
    before anything is touched. Only objects labelled managed-by=claude-cage for this
    data directory are touched. A session's container or metadata removed is archived
    first, as destroy archives it (see history), unless --purge. Remote devcontainer
    features no start used for feature_cache_days are removed from the cache. Exits 1
    when anything could not be removed.
    """
    from claude_cage.operations.cleanup import gc as gc_op
    from claude_cage.operations.cleanup import plan_gc

    remove_stale = yes
    plan = plan_gc(command_context())
    if not yes and not dry_run and not as_json and can_ask():
        stale = plan.stale_sessions
        if stale:
            remove_stale = click.confirm(
                f"remove {len(stale)} session(s) whose container is gone "
                f"({', '.join(stale)}), with their data volumes?",
                default=False,
                err=True,
            )
    if not dry_run and not as_json:  # each item is named before anything is touched
        named = plan.leftovers + (plan.stale if remove_stale else []) + plan.archives
        for item in named + plan.features:
            verb = "adopting" if item.kind == "session" else "removing"
            note(f"{verb} {item.kind} {item.target} ({item.reason})")
    items = gc_op(command_context(), remove_stale=remove_stale, dry_run=dry_run, purge=purge)
    from claude_cage.operations.cleanup import snapshots_of_gone_sessions

    orphans = snapshots_of_gone_sessions(command_context())
    if as_json:
        print_json({"dry_run": dry_run, "items": [i.as_dict() for i in items],
                    "kept_snapshots": [s.as_dict() for s in orphans]})  # fmt: skip
        _fail_if_any_failed(items)
        return
    if orphans:
        from claude_cage.resources import human_bytes

        size = human_bytes(sum(s.snapshot.size for s in orphans))
        note(f"kept {len(orphans)} snapshot(s) of sessions that are gone ({size}): "
             + ", ".join(s.snapshot.name for s in orphans)
             + "; 'claude-cage snapshot rm SNAP' removes one")  # fmt: skip
    if not items:
        note("nothing to clean up")
        return
    words = {
        "planned": "would remove" if dry_run else "remove",
        "kept": "kept (needs --yes)",
        "unfetched": "kept (work not fetched)",
    }
    rows = [
        (i.session, i.kind, i.target, _outcome(i.kind, i.outcome, dry_run, words), i.reason)
        for i in items
    ]
    click.echo(table(rows, ("SESSION", "KIND", "OBJECT", "OUTCOME", "WHY")))
    kept = sorted({i.session for i in items if i.kind == "metadata" and i.outcome == "kept"})
    if kept:
        note(f"kept {len(kept)} session(s) whose container is gone; 'claude-cage gc --yes'")
    _fail_if_any_failed(items)


def _fail_if_any_failed(items: list[Any]) -> None:
    """gc's exit code says whether all went: 1 when an item failed (its row says why)."""
    from claude_cage.errors import CageError

    failed = [i for i in items if i.outcome == "failed"]
    if failed:
        raise CageError(
            f"gc could not remove {len(failed)} item(s): "
            + ", ".join(f"{i.kind} {i.target}" for i in failed[:3])
            + (" ..." if len(failed) > 3 else ""),
            "each failed row says why; fix that, then run 'claude-cage gc' again",
        )


def _outcome(kind: str, outcome: str, dry_run: bool, words: dict[str, str]) -> str:
    if kind == "session" and outcome == "planned":
        return "would adopt" if dry_run else "adopt"
    return words.get(outcome, outcome)


# --- doctor ---------------------------------------------------------------------------


@cli.command(context_settings=CONTEXT)
@click.option("--no-probe", is_flag=True, help="Skip the throwaway filtered-network session.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def doctor(no_probe: bool, as_json: bool) -> None:
    """Check the engine, images, egress, disk, security options, config and MongoDB.

    Each failure comes with the command that fixes it. Exits 1 when anything fails.
    """
    from claude_cage.errors import EXIT_FAILED
    from claude_cage.operations.doctor import run

    report = run(command_context(), probe=not no_probe)
    if as_json:
        print_json(report.as_dict())
    else:
        marks = {"ok": "ok", "warn": "WARN", "fail": "FAIL"}
        rows = [(marks[c.status], c.check, c.detail) for c in report.checks]
        click.echo(table(rows, ("", "check", "detail")))
        for c in report.checks:
            if c.fix and c.status != "ok":
                click.echo(sanitize(f"  fix {c.check}: {c.fix}"), err=True)
    if not report.ok:
        sys.exit(EXIT_FAILED)


# --- status: resource use -------------------------------------------------------------


def usage_lines(info: dict[str, Any]) -> list[str]:
    """Uptime, restarts and resource use, as `status` shows them."""
    from claude_cage.resources import human_bytes, human_duration

    lines = []
    if info.get("uptime_seconds") is not None:
        lines.append(f"{'uptime':12} {human_duration(info['uptime_seconds'])}")
    if info.get("restart_count"):
        lines.append(f"{'restarts':12} {info['restart_count']}")
    use = info.get("resources")
    if not use:
        return lines
    if use["cpu_percent"] is not None:
        basis = "" if use["cpu_basis"] == "sampled" else f" ({use['cpu_basis']})"
        lines.append(f"{'cpu':12} {use['cpu_percent']:.1f}%{basis}")
    memory = f"{human_bytes(use['memory_used'])} / {human_bytes(use['memory_limit'])}"
    if use["memory_percent"] is not None:
        memory += f" ({use['memory_percent']:.0f}%)"
    lines.append(f"{'memory':12} {memory}")
    if use["pids"] is not None:
        lines.append(f"{'pids':12} {use['pids']} / {use['pids_limit'] or '-'}")
    via = {"companion": " (through its proxy)", "none": " (no network of its own)"}.get(
        use["net_via"], ""
    )
    lines.append(
        f"{'net i/o':12} rx {human_bytes(use['net_rx'])}, tx {human_bytes(use['net_tx'])}{via}"
    )
    return lines
