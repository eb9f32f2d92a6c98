"""Images, configuration and version."""

from __future__ import annotations

# Commands import what they use when they run, for start-up time: `--help` and `list`
# load only the command group (tests/unit/test_cli_registry.py).
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from claude_cage import __version__
from claude_cage.cli.base import CONTEXT, cli, command_context
from claude_cage.render import note, print_json

if TYPE_CHECKING:
    from claude_cage.operations.build import BuildResult
    from claude_cage.operations.layer import LayerResult

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
@click.option(
    "--from",
    "from_image",
    metavar="IMAGE",
    help="Put the cage's layer on your own Debian- or Ubuntu-based image instead.",
)
@click.option("--tag", metavar="NAME", help="With --from: the new image's name (IMAGE-cage:TAG).")
def build(
    target: str,
    base: str | None,
    ca_certs: tuple[str, ...],
    claude_code_version: str | None,
    engine: str | None,
    from_image: str | None,
    tag: str | None,
) -> None:
    """Build the images (cli, desktop, or all), with their companion.

    With --engine, on that engine; when it cannot pull the base image (no registry
    there), the local engine's images are sent to it instead. With --from IMAGE, a
    session image from your own image: the stock cli image's session on top of it
    (start it with --image).
    """
    import sys

    from claude_cage.errors import BadInput
    from claude_cage.operations.build import build as build_op
    from claude_cage.operations.build import build_on

    if from_image is None and tag is not None:
        raise BadInput("--tag goes with --from", "claude-cage build --from IMAGE --tag NAME")
    if from_image is not None and (base or engine or claude_code_version or target != "all"):
        raise BadInput(
            "--from takes no target, --base, --engine or --claude-code-version",
            "the layer takes Claude Code from the stock cli image: "
            "claude-cage build --from IMAGE [--tag NAME]",
        )

    def run(progress: Callable[[str], None]) -> BuildResult | LayerResult:
        if from_image is not None:
            from claude_cage.operations.layer import build_from

            return build_from(
                command_context(), from_image, tag, ca_certs=list(ca_certs), progress=progress
            )
        if engine:
            return build_on(
                command_context(),
                engine,
                target,
                base=base,
                ca_certs=list(ca_certs),
                claude_code_version=claude_code_version,
                progress=progress,
            )
        return build_op(
            command_context(),
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


@cli.command(context_settings=CONTEXT)
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print a shell completion script: completion bash|zsh|fish.

    Session names complete for the commands that take a NAME. Install it with, e.g.,
    `claude-cage completion bash > ~/.local/share/bash-completion/completions/claude-cage`,
    or `eval "$(claude-cage completion zsh)"` in ~/.zshrc.
    """
    from click.shell_completion import get_completion_class

    from claude_cage.cli.base import cli as group

    completer = get_completion_class(shell)
    assert completer is not None  # the choice above lists the shells Click knows
    script = completer(group, {}, "claude-cage", "_CLAUDE_CAGE_COMPLETE").source()
    click.echo(script)


@cli.group(context_settings=CONTEXT)
def config() -> None:
    """Show, check or locate the configuration."""


@config.command("show", context_settings=CONTEXT)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="Extra config file.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def config_show(config_file: str | None, as_json: bool) -> None:
    """Show the merged configuration and where each value comes from."""
    from claude_cage.eventlog.events import mask_uri

    cfg = command_context().config_with(config_file)
    values = dict(cfg.values)
    if values.get("mongodb_uri"):
        values["mongodb_uri"] = mask_uri(values["mongodb_uri"])
    if as_json:
        print_json({"config": values, "sources": cfg.sources})
        return
    rows = [(k, _config_value(v), cfg.sources[k]) for k, v in values.items()]
    click.echo(config_table(rows))


def config_table(rows: list[tuple[str, str, str]], width: int = 80) -> str:
    """KEY, FROM, VALUE in `width` columns: a long value wraps under itself, a long
    source (a file's path) shows its end."""
    import textwrap

    from claude_cage.render import sanitize

    key_width = max(len("KEY"), *(len(key) for key, _, _ in rows))
    source_width = min(max(len("FROM"), *(len(source) for _, _, source in rows)), 16)
    value_width = width - key_width - source_width - 4
    lines = [f"{'KEY':<{key_width}}  {'FROM':<{source_width}}  VALUE"]
    for key, value, source in rows:
        source = sanitize(source)
        if len(source) > source_width:
            source = "…" + source[-(source_width - 1) :]
        chunks = textwrap.wrap(
            sanitize(value), value_width, break_on_hyphens=False, break_long_words=True
        )
        lines.append(f"{key:<{key_width}}  {source:<{source_width}}  {(chunks or [''])[0]}")
        lines += [" " * (key_width + source_width + 4) + chunk for chunk in chunks[1:]]
    return "\n".join(line.rstrip() for line in lines)


@config.command("validate", context_settings=CONTEXT)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="Extra config file.")
def config_validate(config_file: str | None) -> None:
    """Check every config layer; name each bad key or value with its file."""
    from claude_cage.errors import BadInput

    cfg = command_context().config_with(config_file)
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


def _config_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return " ".join(map(str, value))
    return "" if value is None else str(value)
