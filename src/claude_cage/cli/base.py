"""The `claude-cage` command group, shared by every command module.

Commands are loaded lazily: `claude-cage --help` lists them from COMMANDS without
importing their modules, and `claude-cage NAME` imports only NAME's module. Each
module registers its commands on `cli` when imported. tests/unit/test_cli_registry.py
checks that COMMANDS matches the commands and their docstrings.
"""

from __future__ import annotations

# Commands import what they use when they run, for start-up time: `--help` and `list`
# load only the command group (tests/unit/test_cli_registry.py).
import importlib
from typing import TYPE_CHECKING

import click

from claude_cage import __version__

if TYPE_CHECKING:
    from claude_cage.context import Context

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
# The terminal paths (attach, shell, exec -t, start) share it (see terminal_filter).
RAW_TERMINAL_HELP = (
    "Show the session's output as it is, clipboard writes (OSC 52) and passthrough "
    "sequences included (by default they are dropped on the way to this terminal)."
)

# name -> (module in claude_cage.cli, the first line of the command's docstring)
COMMANDS: dict[str, tuple[str, str]] = {
    "apply": ("workspace", "Apply a clone-mode session's whole change to your working tree, "
              "uncommitted."),
    "allow": ("egress", "Add hosts to a filtered session's allowlist (or --remove them), live."),
    "attach": ("running", "Attach the terminal to the session's Claude Code "
               "(default: most recent running)."),
    "build": ("system", "Build the images (cli, desktop, or all), with their companion."),
    "completion": ("system", "Print a shell completion script: completion bash|zsh|fish."),
    "config": ("system", "Show, check or locate the configuration."),
    "destroy": ("sessions", "Remove a session: its containers, volumes and metadata."),
    "diff": ("workspace", "Show what a clone-mode session changed since its base, "
             "committed or not."),
    "doctor": ("upkeep", "Check the engine, images, egress, disk, security options, "
               "config and MongoDB."),
    "egress": ("egress", "Show every request a filtered session made through its proxy."),
    "events": ("events", "Read the event log: every operation claude-cage ran, and every "
               "blocked request."),
    "exec": ("running", "Run a command in a session and return its exit code: "
             "exec NAME -- CMD..."),
    "fetch": ("workspace", "Create or update the branch cage/NAME in your repository; "
              "nothing else changes."),
    "fork": ("snapshots", "Start a new session from another's state as it is now, "
             "running or stopped."),
    "gc": ("upkeep", "Remove what crashed and ephemeral sessions left behind."),
    "history": ("history", "List destroyed sessions kept by the flight recorder."),
    "key": ("egress", "Manage a session's Anthropic API key."),
    "list": ("sessions", "List sessions, running and stopped."),
    "log": ("events", "Add an event: log TYPE KEY [JSON] "
            "(e.g. log session \"review:web\" '{\"status\":\"ok\"}')."),
    "logs": ("running", "Show what the agent did: prompts, tool calls, results, answers "
             "(default: most recent)."),
    "merge": ("workspace", "Fetch cage/NAME, then merge it into your repository's current "
              "branch."),
    "open": ("desktop", "Open a desktop session in the browser, logged in."),
    "policy": ("policy", "Show, check, validate and apply egress policy files "
               "(docs/policy.md)."),
    "reap": ("upkeep", "Stop idle sessions and sessions near their memory limit."),
    "restore": ("snapshots", "Roll a session back to one of its snapshots; Claude Code "
                "continues."),
    "secret": ("credentials", "Manage credentials the proxy adds for a host, for all sessions "
               "or one."),
    "shell": ("running", "Open a bash shell in a session (default: the most recent "
              "running one)."),
    "snapshot": ("snapshots", "Keep a session's state: snapshot NAME [--name SNAP], "
                 "snapshot list, snapshot rm SNAP."),
    "start": ("sessions", "Start a session (with no options: --mode cli --network filtered)."),
    "status": ("sessions", "Show one session in detail, with a sandbox verification "
               "(default: most recent)."),
    "stop": ("sessions", "Stop a session (its companion proxy stops with it)."),
    "ui": ("ui", "Serve the dashboard on 127.0.0.1: sessions, transcripts, egress, review, "
           "events."),
    "version": ("system", "Print claude-cage's version."),
}  # fmt: skip


class LazyGroup(click.Group):
    """A group that imports a command's module only when the command is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            importlib.import_module(f"claude_cage.cli.{COMMANDS[cmd_name][0]}")
        command = self.commands.get(cmd_name)
        if command is not None:
            complete_session_names(command)
        return command

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """A mistyped command gets the closest one as a suggestion."""
        name = click.utils.make_str(args[0])
        if self.get_command(ctx, name) is None and not name.startswith("-"):
            import difflib

            close = difflib.get_close_matches(name, self.list_commands(ctx), n=1, cutoff=0.5)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            ctx.fail(f"no such command '{name}'{hint}")
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        # Click's own shortening of a docstring, through its public Command API (the
        # module-level helper is deprecated since Click 8.5), without importing the command.
        rows = [
            (name, click.Command(name, help=COMMANDS[name][1]).get_short_help_str(limit))
            for name in names
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="claude-cage")
def cli() -> None:
    """Run Claude Code in hardened Docker sessions.

    Sessions have no network of their own: with --network filtered (the default) they
    reach only allowlisted hosts, through a proxy outside the sandbox.
    """


def command_context(click_ctx: click.Context | None = None) -> Context:
    """This command's one Context (context.py), made when the command first asks for it
    and kept on Click's root context, so every part of the command shares it."""
    root = (click_ctx or click.get_current_context()).find_root()
    if root.obj is None:
        from claude_cage.context import Context  # start-up: `--help` needs none of it

        root.obj = Context()
    found: Context = root.obj
    return found


def session_names(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[click.shell_completion.CompletionItem]:
    """This data directory's sessions whose names start with `incomplete` (from the
    metadata files alone: completion must not wait for the engine)."""
    return [
        click.shell_completion.CompletionItem(name)
        for name in command_context(ctx).store.names()
        if name.startswith(incomplete)
    ]


def directories(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[click.shell_completion.CompletionItem]:
    """Let the shell complete directories (--clone, --mount): it lists them itself."""
    return [click.shell_completion.CompletionItem(incomplete, type="dir")]


def complete_session_names(command: click.Command) -> None:
    """Give every NAME argument (and --session option) of a command, and of its
    subcommands, the session names as completions."""
    for param in command.params:
        if param.name in ("name", "session") and param._custom_shell_complete is None:
            # Click's own attribute for a `shell_complete=` given at declaration.
            param._custom_shell_complete = session_names
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            complete_session_names(sub)


def load_all() -> click.Group:
    """Import every command module (for tests and tools that walk the command tree)."""
    for module in sorted({module for module, _ in COMMANDS.values()}):
        importlib.import_module(f"claude_cage.cli.{module}")
    return cli
