"""Desktop commands: open."""

from __future__ import annotations

# Commands import what they use when they run, for start-up time: `--help` and `list`
# load only the command group (tests/unit/test_cli_registry.py).
import click

from claude_cage.cli.base import CONTEXT, cli, command_context
from claude_cage.render import note


@cli.command(name="open", context_settings=CONTEXT)
@click.argument("name")
@click.option(
    "--no-browser", is_flag=True, help="Do not start a browser; print the URL and the page."
)
def open_cmd(name: str, no_browser: bool) -> None:
    """Open a desktop session in the browser, logged in.

    The VNC password never goes on a command line (so never into shell history or
    `ps`): claude-cage writes a small page, readable by you alone (0600), into the
    session's data directory and hands the browser only that file's path. The page
    sends the browser on to noVNC with the websocket token and the password in the
    URL fragment, which the browser keeps to itself: it is not sent to noVNC's
    server and is in no log, though it stays in the browser's own history.

    Without a browser (or with --no-browser), it prints the noVNC URL with the
    websocket token but no password; noVNC then asks for the password, which
    'claude-cage status NAME --json --show-password' shows.
    """
    import webbrowser

    from claude_cage.operations.desktop import open_info

    info = open_info(command_context(), name)
    browser = None
    if not no_browser:
        try:
            browser = webbrowser.get()
        except webbrowser.Error:
            note("no browser found here")
    if browser is not None and browser.open(info.launcher.as_uri()):
        click.echo(info.url)
        note(f"opened {name} in the browser")
        return
    click.echo(info.token_url)
    note(
        f"the password: claude-cage status {name} --json --show-password\n"
        f"or open {info.launcher} in a browser on this machine (it logs in by itself)"
    )
