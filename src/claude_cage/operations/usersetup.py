"""The user's Claude Code setup at a start: the files (userconfig.write, bound read-only)
and, once the session runs, its Claude Code state: onboarding done, the project
trusted, the user's MCP servers (userconfig.seed_state), and which of their programs
the session lacks."""

from __future__ import annotations

import json
from pathlib import Path

from claude_cage import metadata, policy, userconfig
from claude_cage.engine_api import EngineAPI
from claude_cage.render import sanitize

STATE = f"{policy.CONFIG_DIR}/{userconfig.STATE_FILE}"
# Written beside, then renamed: a Claude Code reading it never sees half a file.
WRITE = 'cat > "$1.cage-new" && mv -f "$1.cage-new" "$1"'
MISSING = 'for p; do command -v "$p" >/dev/null 2>&1 || echo "$p"; done'


def directory(store: metadata.SessionStore, name: str) -> Path:
    return store.dir(name) / userconfig.DIRECTORY


def _read_state(engine: EngineAPI, container: str) -> object:
    """The session's .claude.json ({} when there is none; None when it is damaged)."""
    code, out = engine.exec_run(container, ["sh", "-c", f'cat "{STATE}" 2>/dev/null || true'])
    if code != 0 or not out.strip():
        return {}
    try:
        return json.loads(out)
    except ValueError:
        return None


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


def missing_now(engine: EngineAPI, container: str) -> dict[str, str]:
    """For `status`: the MCP servers of the running session whose program it lacks."""
    state = _read_state(engine, container)
    servers = state.get("mcpServers") if isinstance(state, dict) else None
    return missing_programs(engine, container, servers) if isinstance(servers, dict) else {}


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
    program the session does not have, a state file that could not be read)."""
    state = _read_state(engine, container)
    if not isinstance(state, dict):
        return [f"Claude Code's {STATE} in the session is damaged: onboarding not seeded"]
    text = json.dumps(userconfig.seed_state(state, carried, projects), indent=2) + "\n"
    code, out = engine.exec_run(container, ["sh", "-c", WRITE, "sh", STATE], stdin=text.encode())
    warnings = []
    if code != 0:
        said = sanitize(out.decode(errors="replace"))
        warnings.append(f"could not write {STATE} in the session: {said}")
    for server, program in missing_programs(engine, container, carried.mcp_servers).items():
        warnings.append(missing_line(server, program))
    return warnings
