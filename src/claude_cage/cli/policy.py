"""Egress policy commands: policy show, check, validate, apply."""

from __future__ import annotations

# Commands import what they use when they run, for start-up time: `--help` and `list`
# load only the command group (tests/unit/test_cli_registry.py).
import sys

import click

from claude_cage.cli.base import CONTEXT, cli, command_context
from claude_cage.render import note, print_json, table


@cli.group(context_settings=CONTEXT)
def policy() -> None:
    """Show, check, validate and apply egress policy files (docs/policy.md)."""


@policy.command("show", context_settings=CONTEXT)
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(name: str | None, as_json: bool) -> None:
    """The effective egress policy of session NAME (or of a new session started here):
    each rule in the order it is checked, with its layer and the file and line it came
    from. The first rule that matches a request decides; docs/policy.md says how the
    layers combine."""
    from claude_cage.operations.netpolicy import effective

    view = effective(command_context(), name)
    if as_json:
        print_json(view.to_json())
        return
    rows = []
    for layer in view.policy.layers:
        for r in layer.rules:
            what = " ".join(r.methods) + (" " if r.methods and r.paths else "") + " ".join(r.paths)
            ports = ",".join(map(str, r.ports)) or "default"
            source = r.source + (f" (include {r.preset})" if r.preset else "")
            if r.layer == "session" and r.preset:
                source = f"preset {r.preset} (GET and HEAD)"
            rows.append((r.id, r.action, r.host, ports, what or "any", source))
    click.echo(table(rows, ("RULE", "ACTION", "HOST", "PORTS", "REQUESTS", "FROM")))
    managed = view.policy.layer("managed")
    if managed.default == "deny":
        note("managed default: deny: nothing the managed rules do not allow is allowed")
    note("ports (default): " + " ".join(map(str, view.policy.ports)) + "; anything else: denied")
    for layer in view.policy.layers:
        if layer.note:
            note(f"{layer.name}: {layer.note}")


@policy.command("check", context_settings=CONTEXT)
@click.argument("args", nargs=-1, required=True, metavar="[NAME] URL")
@click.option("--method", default="GET", show_default=True, help="The request's HTTP method.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def check(args: tuple[str, ...], method: str, as_json: bool) -> None:
    """Which rule decides a request to URL, and the answer: exit 0 when allowed, 1 when
    denied. With NAME, by that session's policy; without, by a new session's."""
    from claude_cage.errors import EXIT_FAILED, BadInput
    from claude_cage.operations.netpolicy import check as check_op

    if len(args) > 2:
        raise BadInput("policy check takes [NAME] URL", "e.g. claude-cage policy check web URL")
    name, url = (None, args[0]) if len(args) == 1 else args
    result = check_op(command_context(), name, url, method)
    if as_json:
        print_json(result.to_json())
    else:
        d = result.decision
        where = f" ({d.matched.source})" if d.matched and d.matched.source else ""
        verb = "allowed" if d.allowed else "denied"
        click.echo(f"{verb} by {d.rule}{where}")
        if d.reason:
            click.echo(f"reason: {d.reason}")
    sys.exit(0 if result.decision.allowed else EXIT_FAILED)


@policy.command("validate", context_settings=CONTEXT)
@click.argument("file")
def validate(file: str) -> None:
    """Check a policy file: one line per problem, with its line number; exit 2 when
    there is any."""
    from claude_cage.errors import EXIT_BAD_INPUT
    from claude_cage.operations.netpolicy import validate as validate_op

    problems = validate_op(file)
    for line in problems:
        click.echo(line)
    if problems:
        sys.exit(EXIT_BAD_INPUT)
    note(f"{file}: valid")


@policy.command("apply", context_settings=CONTEXT)
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def apply(name: str, as_json: bool) -> None:
    """Read the managed, user and project policy files again and apply them to session
    NAME, live (the project file from the host's copy, never the session's)."""
    from claude_cage.operations.netpolicy import apply as apply_op

    result = apply_op(command_context(), name)
    if as_json:
        print_json({"name": result.name, "live": result.live, "rules": result.rules})
        return
    click.echo(result.name)
    for text in result.notes:
        note(text)
    when = "now" if result.live else "at the next start"
    note(f"{result.rules} rule(s) from the policy files (applies {when})")


@policy.command("suggest", context_settings=CONTEXT)
@click.argument("name")
@click.option("--write", "path", metavar="PATH", help="Also write the policy to PATH.")
def suggest(name: str, path: str | None) -> None:
    """The least policy that would have allowed everything session NAME did (hosts,
    ports, and methods and paths where the companion decrypted HTTPS), as a file to
    review; run the session with 'start --learn' first."""
    from claude_cage.operations.netpolicy import suggest as suggest_op

    result = suggest_op(command_context(), name, path)
    click.echo(result.text, nl=False)
    if result.written:
        note(f"written to {result.written}")
