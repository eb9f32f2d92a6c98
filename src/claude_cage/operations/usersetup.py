"""The user's Claude Code setup at a start: the files (userconfig.write, bound read-only)
and, once the session runs, its Claude Code state: onboarding done, the project
trusted, the user's MCP servers (userconfig.seed_state), and which of their programs
the session lacks."""

from __future__ import annotations

import json
from pathlib import Path

from claude_cage import metadata, policy, userconfig
from claude_cage.engine_api import EngineAPI

STATE = f"{policy.CONFIG_DIR}/{userconfig.STATE_FILE}"
# Written beside, then renamed: a Claude Code reading it never sees half a file.
WRITE = 'cat > "$1.cage-new" && mv -f "$1.cage-new" "$1"'
MISSING = 'for p; do command -v "$p" >/dev/null 2>&1 || echo "$p"; done'


def directory(store: metadata.SessionStore, name: str) -> Path:
    return store.dir(name) / userconfig.DIRECTORY


def seed(
    engine: EngineAPI, container: str, carried: userconfig.Carried, projects: list[str]
) -> list[str]:
    """Write the session's ~/.claude/.claude.json; return warnings (MCP servers whose
    program the session does not have, a state file that could not be read)."""
    code, out = engine.exec_run(container, ["sh", "-c", f'cat "{STATE}" 2>/dev/null || true'])
    state: object = {}
    if code == 0 and out.strip():
        try:
            state = json.loads(out)
        except ValueError:
            state = None
    if not isinstance(state, dict):
        return [f"Claude Code's {STATE} in the session is damaged: onboarding not seeded"]
    text = json.dumps(userconfig.seed_state(state, carried, projects), indent=2) + "\n"
    code, out = engine.exec_run(container, ["sh", "-c", WRITE, "sh", STATE], stdin=text.encode())
    warnings = []
    if code != 0:
        warnings.append(f"could not write {STATE} in the session: {out.decode(errors='replace')}")
    programs = userconfig.stdio_programs(carried.mcp_servers)
    if programs:
        code, out = engine.exec_run(
            container, ["sh", "-c", MISSING, "sh", *sorted(set(programs.values()))]
        )
        missing = set(out.decode(errors="replace").split()) if code == 0 else set()
        for server, program in sorted(programs.items()):
            if program in missing:
                warnings.append(
                    f"MCP server {server}: its program {program} is not in the session's "
                    "image (build one with it: --image)"
                )
    return warnings
