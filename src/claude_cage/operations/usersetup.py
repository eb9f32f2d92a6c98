"""The user's Claude Code setup at a start: the files (userconfig.write, bound read-only)
and, once the session runs, its Claude Code state: onboarding done, the project
trusted, the user's MCP servers (userconfig.seed_state), and which of their programs
the session lacks.

The session's .claude.json is untrusted (the agent can write it): the host reads it only
when it is a regular file, at most `STATE_CAP` bytes within `STATE_TIME` seconds
(`answer.ask`), and a file it cannot read or parse counts as no state."""

from __future__ import annotations

import json
from pathlib import Path

from claude_cage import metadata, userconfig, workdir
from claude_cage.engine.api import EngineAPI
from claude_cage.operations import answer
from claude_cage.render import sanitize

STATE = f"{workdir.CONFIG_DIR}/{userconfig.STATE_FILE}"
STATE_CAP = 1 << 20  # bytes: Claude Code's own state is a few KiB
STATE_TIME = 10  # seconds
# Only a regular file (not a link, a fifo, a device); exit 3 when it is something else.
READ = (
    '[ -e "$1" ] || [ -L "$1" ] || exit 0; '
    '[ -f "$1" ] && [ ! -L "$1" ] || exit 3; head -c "$2" "$1"'
)
# Written beside (a new file mktemp makes), then renamed: a Claude Code reading it never
# sees half a file, and nothing the session planted beside it is written through.
WRITE = 't=$(mktemp "$1.XXXXXX") && cat > "$t" && mv -f "$t" "$1"'
MISSING = 'for p; do command -v "$p" >/dev/null 2>&1 || echo "$p"; done'


def directory(store: metadata.SessionStore, name: str) -> Path:
    return store.dir(name) / userconfig.DIRECTORY


def _read_state(engine: EngineAPI, container: str) -> object:
    """The session's .claude.json ({} when there is none; None when it cannot be read:
    not a regular file, over STATE_CAP, too slow, not JSON or nested too deep)."""
    cmd = ["sh", "-c", READ, "sh", STATE, str(STATE_CAP + 1)]
    try:
        code, out, _err = answer.ask(engine, container, cmd, cap=STATE_CAP, limit=STATE_TIME)
    except answer.NoAnswer:
        return None
    if code != 0:
        return None
    if not out.strip():
        return {}
    try:
        return json.loads(out)
    except (ValueError, RecursionError):
        return None


def unreadable_line() -> str:
    return f"cannot read Claude Code's {STATE} in the session (not a small regular JSON file)"


def missing_programs(
    engine: EngineAPI, container: str, servers: dict[str, object]
) -> dict[str, str]:
    """The stdio MCP servers whose program the session does not have: {server: program}."""
    programs = userconfig.stdio_programs(servers)
    if not programs:
        return {}
    code, out = engine.exec_run(
        container, ["sh", "-c", MISSING, "sh", *sorted(set(programs.values()))]
    )
    missing = set(out.decode(errors="replace").split()) if code == 0 else set()
    return {server: program for server, program in sorted(programs.items()) if program in missing}


def status_lines(engine: EngineAPI, container: str) -> list[str]:
    """For `status`: the MCP servers of the running session whose program it lacks, or
    that its state file cannot be read."""
    state = _read_state(engine, container)
    if not isinstance(state, dict):
        return [unreadable_line()]
    servers = state.get("mcpServers")
    if not isinstance(servers, dict):
        return []
    return [missing_line(*pair) for pair in missing_programs(engine, container, servers).items()]


def missing_line(server: str, program: str) -> str:
    """The warning for one MCP server; its name and program come from the session's
    own .claude.json, so each is kept to one line (no forged lines in the output)."""
    server, program = sanitize(server), sanitize(program)
    return (
        f"MCP server {server}: its program {program} is not in the session's image "
        "(build one with it: --image)"
    )


def seed(
    engine: EngineAPI, container: str, carried: userconfig.Carried, projects: list[str]
) -> list[str]:
    """Write the session's ~/.claude/.claude.json; return warnings (MCP servers whose
    program the session does not have, a state file that could not be read: it is
    replaced by a new one)."""
    warnings = []
    state = _read_state(engine, container)
    if not isinstance(state, dict):
        warnings.append(f"{unreadable_line()}: it is replaced")
        state = {}
    try:
        text = json.dumps(userconfig.seed_state(state, carried, projects), indent=2) + "\n"
    except (ValueError, RecursionError):  # nested too deep to write back
        warnings.append(f"{unreadable_line()}: it is replaced")
        text = json.dumps(userconfig.seed_state({}, carried, projects), indent=2) + "\n"
    write = ["timeout", "-s", "KILL", str(STATE_TIME), "sh", "-c", WRITE, "sh", STATE]
    code, out = engine.exec_run(container, write, stdin=text.encode())
    if code != 0:
        said = sanitize(out.decode(errors="replace").strip())
        warnings.append(f"could not write {STATE} in the session: {said}")
    for server, program in missing_programs(engine, container, carried.mcp_servers).items():
        warnings.append(missing_line(server, program))
    return warnings
