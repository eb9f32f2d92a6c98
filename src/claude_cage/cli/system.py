"""Images, configuration and version."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from claude_cage import __version__
from claude_cage.cli.base import CONTEXT, cli
from claude_cage.render import note, print_json, table

if TYPE_CHECKING:
    from claude_cage.operations.build import BuildResult

# --- build, config, version -----------------------------------------------------------


@cli.command(context_settings=CONTEXT)
@click.argument("target", type=click.Choice(["cli", "desktop", "all"]), default="all")
@click.option(
    "--base",
    help="Base image (default debian:bookworm-slim; bootstrapped offline "
    "with debootstrap when it cannot be pulled).",
)
@click.option(
    "--ca-cert",
    "ca_certs",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Extra CA certificate to trust (default: /usr/local/share/ca-certificates).",
)
@click.option(
    "--claude-code-version",
    help="Claude Code release to install, e.g. 2.1.332, or 'latest' (default: config "
    "claude_code_version, which is latest).",
)
@click.option("--engine", metavar="NAME", help="Build on this Docker engine (context or URL).")
def build(
    target: str,
    base: str | None,
    ca_certs: tuple[str, ...],
    claude_code_version: str | None,
    engine: str | None,
) -> None:
    """Build the images (cli, desktop, or all), with their companion.

    With --engine, on that engine; when it cannot pull the base image (no registry
    there), the local engine's images are sent to it instead.
    """
    import sys

    from claude_cage.operations.build import build as build_op
    from claude_cage.operations.build import build_on

    def run(progress: Callable[[str], None]) -> BuildResult:
        if engine:
            return build_on(
                engine,
                target,
                base=base,
                ca_certs=list(ca_certs),
                claude_code_version=claude_code_version,
                progress=progress,
            )
        return build_op(
            target,
            base=base,
            ca_certs=list(ca_certs),
            claude_code_version=claude_code_version,
            progress=progress,
        )

    if sys.stderr.isatty():  # a live status line on a terminal; plain lines elsewhere
        from rich.console import Console

        console = Console(stderr=True)
        with console.status("building") as status:

            def show(message: str) -> None:
                if message.startswith("  "):
                    status.update(message.strip())
                else:
                    console.print(message)

            result = run(show)
    else:
        result = run(note)
    for image in result.images:
        click.echo(image)


@cli.group(context_settings=CONTEXT)
def config() -> None:
    """Show, check or locate the configuration."""


@config.command("show", context_settings=CONTEXT)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="Extra config file.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def config_show(config_file: str | None, as_json: bool) -> None:
    """Show the merged configuration and where each value comes from."""
    from claude_cage import config as config_mod
    from claude_cage.events import mask_uri

    cfg = config_mod.load(config_file)
    values = dict(cfg.values)
    if values.get("mongodb_uri"):
        values["mongodb_uri"] = mask_uri(values["mongodb_uri"])
    if as_json:
        print_json({"config": values, "sources": cfg.sources})
        return
    rows = [
        (k, v if not isinstance(v, list) else " ".join(map(str, v)), cfg.sources[k])
        for k, v in values.items()
    ]
    click.echo(table(rows, ("KEY", "VALUE", "FROM")))


@config.command("validate", context_settings=CONTEXT)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="Extra config file.")
def config_validate(config_file: str | None) -> None:
    """Check every config layer; name each bad key or value with its file."""
    from claude_cage import config as config_mod
    from claude_cage.errors import BadInput

    cfg = config_mod.load(config_file)
    for problem in cfg.problems:
        click.echo(str(problem), err=True)
    if cfg.problems:
        raise BadInput(f"{len(cfg.problems)} problem(s) in the config", "fix the lines above")
    click.echo("config ok")


@config.command("path", context_settings=CONTEXT)
def config_path() -> None:
    """Print where the config file and the data live."""
    from claude_cage import paths

    click.echo(f"config  {paths.user_config_file()}")
    click.echo(f"data    {paths.data_dir()}")


@cli.command(context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def version(as_json: bool) -> None:
    """Print claude-cage's version."""
    if as_json:
        print_json({"claude_cage": __version__})
    else:
        click.echo(f"claude-cage {__version__}")
