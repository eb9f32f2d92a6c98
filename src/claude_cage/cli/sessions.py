"""Session commands: start, stop, destroy, list, status."""

from __future__ import annotations

# Commands import what they use when they run, for start-up time: `--help` and `list`
# load only the command group (tests/unit/test_cli_registry.py).
import sys
from typing import Any

import click

from claude_cage.cli.base import CONTEXT, RAW_TERMINAL_HELP, cli, command_context, directories
from claude_cage.kinds import Mode, Network, Runtime, values
from claude_cage.render import note, print_json, sanitize, warn

# --- start ----------------------------------------------------------------------------


@cli.command(context_settings=CONTEXT)
@click.argument("session", required=False, metavar="[NAME]")
@click.option("--mode", type=click.Choice(values(Mode)), help="Terminal or browser desktop.")
@click.option("--name", help="Session name (default: a generated adjective-noun-xxxx).")
@click.option(
    "--mount",
    "mounts",
    multiple=True,
    metavar="PATH[:ro]",
    shell_complete=directories,
    help="Bind PATH to /workspace/<basename> (read-only with :ro). Repeatable.",
)
@click.option(
    "--clone",
    metavar="PATH",
    shell_complete=directories,
    help="Give the session its own copy of the git repository at PATH, on branch "
    "cage/<name>, with your uncommitted changes (see diff, fetch, merge, apply).",
)
@click.option(
    "--network",
    type=click.Choice(values(Network)),
    help="filtered (default): allowlisted hosts only; none: no network; host: no isolation.",
)
@click.option(
    "--runtime",
    type=click.Choice(values(Runtime)),
    help="runc: the host's kernel; runsc: gVisor, a kernel of its own (default: config runtime).",
)
@click.option("--cpus", type=float, help="CPU limit (default: the host's cores minus one).")
@click.option("--memory", help="Memory limit, e.g. 4g (default: half the host's, at most 4g).")
@click.option("--pids", type=int, help="Process limit (default 512).")
@click.option(
    "--port",
    "ports",
    multiple=True,
    metavar="HOST:CONTAINER",
    help="Publish a session port on 127.0.0.1:HOST. Repeatable.",
)
@click.option("--env", "env", multiple=True, metavar="KEY=VAL", help="Set a variable. Repeatable.")
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    metavar="HOST",
    help="Add a host to this session's allowlist (filtered only). Repeatable.",
)
@click.option(
    "--allow-preset",
    "allow_presets",
    multiple=True,
    metavar="NAME",
    help="Allow installing from a package registry (GET and HEAD): python, node, rust, "
    "go, java or ruby. Repeatable.",
)
@click.option(
    "--api-key-file",
    type=click.Path(dir_okay=False),
    help="File holding the Anthropic API key (default: $ANTHROPIC_API_KEY).",
)
@click.option(
    "--learn",
    is_flag=True,
    help="Learn mode: allow and record what no policy rule decides (managed denies and the "
    "address guard still apply); then 'policy suggest NAME'.",
)
@click.option("--ephemeral", is_flag=True, help="Remove everything when the session stops.")
@click.option("--no-persist", is_flag=True, help="Keep no data volume (logins are not kept).")
@click.option(
    "--no-user-config",
    is_flag=True,
    help="Carry none of your Claude Code setup (~/.claude) in (default: config claude_config).",
)
@click.option(
    "--no-devcontainer",
    is_flag=True,
    help="Run the stock image even when the project has a devcontainer.json "
    "(default: config devcontainer).",
)
@click.option("--detach", "-d", is_flag=True, help="Do not attach the terminal to Claude Code.")
@click.option("--raw-terminal", is_flag=True, help="When attaching: " + RAW_TERMINAL_HELP)
@click.option("--image", help="Session image (default from config).")
@click.option(
    "--engine",
    metavar="NAME",
    help="Docker engine: a Docker context, a URL (ssh://user@host, tcp://, unix://), "
    "'local', or 'auto' (the engine with the most free capacity). Default: default_engine.",
)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="Extra config file.")
@click.option(
    "--from",
    "from_snapshot",
    metavar="SNAP",
    help="A new session NAME from a snapshot, with its settings ('claude-cage snapshot').",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def start(
    as_json: bool,
    detach: bool,
    no_persist: bool,
    raw_terminal: bool,
    no_user_config: bool,
    no_devcontainer: bool,
    **kwargs: Any,
) -> None:
    """Start a session (with no options: --mode cli --network filtered).

    A stopped session given with --name (or as NAME) starts again with its recorded
    settings; a running one whose companion died gets its companion back, alone.
    """
    from claude_cage.errors import BadInput
    from claude_cage.operations.inputs import StartOptions
    from claude_cage.operations.session import start as start_op

    session = kwargs.pop("session")
    if session and kwargs.get("name") not in (None, session):
        raise BadInput("NAME and --name name two sessions", "give one of them")
    kwargs["name"] = session or kwargs.get("name")
    from_snapshot = kwargs.pop("from_snapshot")

    if from_snapshot:  # the snapshot's settings: no flag is a setting here
        from claude_cage.operations.fork import start_from

        if not kwargs["name"]:
            raise BadInput("start --from SNAP needs a NAME for the new session",
                           "claude-cage start --from SNAP NEW")  # fmt: skip
        made = start_from(command_context(), from_snapshot, kwargs["name"])
        result = made.start
        result.warnings = made.warnings
    else:
        options = StartOptions(
            persist=not no_persist,
            user_config=not no_user_config,
            devcontainer=not no_devcontainer,
            **kwargs,
        )
        result = start_op(command_context(), options)
    for message in result.warnings:
        warn(message)
    if as_json:
        print_json(
            {
                "name": result.name,
                "container": result.container,
                "mode": result.mode,
                "network": result.network,
                "restarted": result.restarted,
                "url": result.url,
                "repo": result.repo,
                "branch": result.branch,
                "base": result.base,
                "engine": result.engine,
                "repaired": result.repaired,
                "adopted": result.adopted,
                "continued": result.continued,
                "devcontainer": result.devcontainer,
            }
        )
    elif result.repaired or result.adopted:  # it was running: nothing was started
        click.echo(f"{result.name}")
        if result.repaired:
            note(f"session {result.name} is running; repaired: {', '.join(result.repaired)}")
        return
    else:
        verb = "restarted" if result.restarted else "started"
        click.echo(f"{result.name}")
        where = f", engine {result.engine}" if result.engine != "local" else ""
        note(f"session {result.name} {verb} ({result.mode}, network {result.network}{where})")
        if result.url:
            note(f"desktop: {result.url} (open it with 'claude-cage open {result.name}')")
        if result.branch:
            note(f"clone of {result.repo} on branch {result.branch} (review: claude-cage diff)")
        if result.continued:
            note("Claude Code resumed the last conversation (claude --continue)")
        if result.devcontainer:
            note(result.devcontainer)
    from claude_cage.cli.terminal import is_terminal

    if result.mode == Mode.CLI and is_terminal() and not detach and not as_json:
        from claude_cage.cli.terminal import attach as attach_terminal

        code, exited = attach_terminal(
            command_context(), result.name, just_started=True, raw=raw_terminal
        )
        if exited and kwargs.get("ephemeral"):  # an ephemeral session ends with its Claude
            from claude_cage.operations.teardown import stop as stop_op

            stop_op(command_context(), result.name)
            note(f"ephemeral session {result.name} removed")
        sys.exit(code)


# --- stop, destroy --------------------------------------------------------------------


@cli.command(context_settings=CONTEXT)
@click.argument("name", required=False)
@click.option("--all", "stop_all", is_flag=True, help="Stop every running session.")
@click.option(
    "--purge", is_flag=True, help="An ephemeral session: keep no archive of it (see history)."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def stop(name: str | None, stop_all: bool, purge: bool, as_json: bool) -> None:
    """Stop a session (its companion proxy stops with it).

    An ephemeral session is removed as it stops; its transcripts, egress log and events
    are archived first (see history), unless --purge."""
    from claude_cage.errors import BadInput
    from claude_cage.operations.teardown import stop as stop_op
    from claude_cage.operations.views import list_sessions

    if bool(name) == stop_all:
        raise BadInput("name one session, or use --all", "e.g. 'claude-cage stop my-session'")
    targets = (
        [s["name"] for s in list_sessions(command_context()) if s["status"] == "running"]
        if stop_all
        else [name]
    )
    results = [stop_op(command_context(), target, purge) for target in targets if target]
    if as_json:
        print_json(
            {
                "stopped": [r.name for r in results],
                "removed": [r.name for r in results if r.removed],
                "archives": {r.name: r.archive for r in results if r.archive},
            }
        )
        return
    for r in results:
        click.echo(r.name)
        if r.removed:
            kept = f"; archived in {r.archive}" if r.archive else ""
            note(f"session {r.name} stopped and removed (ephemeral){kept}")
        else:
            note(f"session {r.name} {'stopped' if r.was_running else 'was already stopped'}")
    if not results:
        note("no session was running")


@cli.command(context_settings=CONTEXT)
@click.argument("name")
@click.option("--force", "-f", is_flag=True, help="Destroy even if it is running.")
@click.option("--discard", is_flag=True, help="Destroy even if its clone holds work not fetched.")
@click.option(
    "--purge", is_flag=True, help="Keep no archive of its transcripts, egress and events."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def destroy(name: str, force: bool, discard: bool, purge: bool, as_json: bool) -> None:
    """Remove a session: its containers, volumes and metadata.

    A clone-mode session whose work is not in cage/NAME yet (commits or uncommitted
    changes) is kept unless --discard; --force is about a running session only. Its
    transcripts, egress log and events are archived first (see history), unless --purge.
    """
    from claude_cage.operations.teardown import destroy as destroy_op

    result = destroy_op(command_context(), name, force=force, discard=discard, purge=purge)
    if as_json:
        print_json({"name": result.name, "removed": result.removed, "archive": result.archive})
    else:
        click.echo(result.name)
        kept = f"; archived in {result.archive}" if result.archive else ""
        note(f"session {result.name} destroyed{kept}")


# --- list, status ---------------------------------------------------------------------


@cli.command(name="list", context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--engine",
    "engine_name",
    metavar="ENGINE",
    help="Only this Docker engine (a context, a URL, or 'local'). Default: every "
    "watched engine at once.",
)
def list_cmd(as_json: bool, engine_name: str | None) -> None:
    """List sessions, running and stopped."""
    from claude_cage.cli.listing import show

    show(command_context(), as_json, engine_name)


@cli.command(context_settings=CONTEXT)
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--show-password",
    is_flag=True,
    help="Desktop sessions: add the VNC password and the noVNC websocket token.",
)
def status(name: str | None, as_json: bool, show_password: bool) -> None:
    """Show one session in detail, with a sandbox verification (default: most recent)."""
    from claude_cage.operations.views import status as status_op
    from claude_cage.render import checks_table

    name = pick_session(name)
    info = status_op(command_context(), name)
    if show_password:
        from claude_cage.operations.desktop import credentials

        info.update(credentials(command_context(), name))
    if as_json:
        print_json({"session": info})
        return
    if info.get("credential"):
        from claude_cage.operations.views import CREDENTIALS

        info = {**info, "credential": CREDENTIALS.get(info["credential"], info["credential"])}
    for key in (
        "name",
        "mode",
        "status",
        "network",
        "runtime",
        "container",
        "created",
        "image",
        "devcontainer",
        "credential",
        "url",
        "repo",
        "branch",
        "base",
        "health",
        "password",
        "token",
        "oom_killed",
    ):
        if info.get(key) not in (None, "", False):
            click.echo(f"{key:12} {sanitize(info[key])}")
    if info.get("damaged"):
        warn(f"its metadata is damaged ({info['damaged']}): {info['hint']}")
    if info.get("oom_killed"):
        warn("killed for running out of memory: start it with --memory 8g, or stop other sessions")
    if info.get("network") == Network.HOST:
        warn("network host: this session is not isolated from the network")
    for line in info.get("mcp_missing") or []:
        warn(line)
    if info.get("egress"):
        counts = info["egress"]
        extra = "".join(f", {counts[k]} {k}" for k in ("failed", "dropped") if counts.get(k))
        click.echo(
            f"{'egress':12} {counts['requests']} request(s), {counts['blocked']} blocked"
            f"{extra} (claude-cage egress {name})"
        )
    for path in info.get("protections") or []:
        click.echo(f"{'protected':12} {path} (the host's git reads nothing the agent writes there)")
    if info.get("allowed_hosts"):
        click.echo(f"{'allowlist':12} {sanitize(' '.join(info['allowed_hosts']))}")
    if info.get("allowed_presets"):
        presets = " ".join(info["allowed_presets"])
        click.echo(f"{'presets':12} {sanitize(presets)} (GET and HEAD)")
    if info.get("policy_problem"):
        warn(info["policy_problem"])
    if info.get("learn"):
        from claude_cage.operations.session import LEARN_WARNING

        warn(LEARN_WARNING.format(name=info["name"]))
    if info.get("companion"):
        click.echo(
            f"{'companion':12} {info['companion']['container']} ({info['companion']['status']})"
        )
        if info["companion"].get("problem"):
            warn(info["companion"]["problem"])
    model = info.get("model")
    if model:
        path = model["url"] + (f" -> {model['upstream']}" if model.get("upstream") else "")
        click.echo(f"{'model':12} {sanitize(path)}: {sanitize(model['detail'])}")
        if not model["ok"]:
            warn(f"Claude Code in {name} cannot reach its model: {model['detail']}")
    if info.get("settings"):
        click.echo(settings_text(info["settings"]))
    from claude_cage.cli.upkeep import usage_lines

    for line in usage_lines(info):
        click.echo(sanitize(line))
    if info.get("sandbox"):
        verdict = "PASS" if info["sandbox"]["ok"] else "FAIL"
        click.echo(f"\nsandbox: {verdict}\n" + checks_table(info["sandbox"]["checks"]))


def human(value: Any) -> str:
    """A setting as a person reads it: yes/no, lists joined, nothing for empty."""
    if isinstance(value, bool) or value in ("true", "false"):
        return "yes" if value in (True, "true") else "no"
    if isinstance(value, list | tuple):
        return " ".join(":".join(map(str, v)) if isinstance(v, list) else str(v) for v in value)
    return str(value)


def settings_text(settings: dict[str, Any], width: int = 80) -> str:
    """`key value` pairs, wrapped to `width` under a `settings` label."""
    import textwrap

    pairs = [f"{key}={human(value)}" for key, value in settings.items() if human(value)]
    return textwrap.fill(
        sanitize("  ".join(pairs)),
        width=width,
        initial_indent=f"{'settings':12} ",
        subsequent_indent=" " * 13,
        break_on_hyphens=False,
    )


def pick_session(name: str | None) -> str:
    """NAME, or the most recent running session, said out loud."""
    if name:
        return name
    from claude_cage.operations.views import most_recent_running

    picked = most_recent_running(command_context())
    note(f"using {picked} (the most recent running session)")
    return picked
