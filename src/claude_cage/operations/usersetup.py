"""The user's Claude Code setup at a start: the files (userconfig.write, bound read-only)
and, once the session runs, its Claude Code state: onboarding done, the project
trusted, the user's MCP servers (userconfig.seed_state), and which of their programs
the session lacks.

The session's .claude.json is untrusted (the agent can write it): the host reads it only
when it is a regular file, at most `STATE_CAP` bytes within `STATE_TIME` seconds
(`answer.ask`), and a file it cannot read or parse counts as no state."""

from __future__ import annotations

import json
from dataclasses import dataclass
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
MISSING = 'for p; do command -v "$p" >/dev/null 2>&1 || echo "$p"; done'
# At a start, READ and MISSING and the write in one exec ($1: the state, $2: the most
# bytes to send, then the programs, up to a "--"): a line with the state's size ("-":
# not a regular file), the state (copied first into a new file beside, which mktemp
# makes, so the size is what follows), then the new state is taken on stdin into that
# file and renamed over the old (none given: the old stays). A Claude Code reading it
# never sees half a file, and nothing the session planted beside it is written through.
# Then the programs missing, one a line.
SEED = (
    'f=$1 n=$2; shift 2; t=$(mktemp "$f.XXXXXX") || exit 4; '
    'if [ -f "$f" ] && [ ! -L "$f" ]; then head -c "$n" "$f" > "$t"; wc -c < "$t"; cat "$t"; '
    'elif [ -e "$f" ] || [ -L "$f" ]; then echo -; else echo 0; fi; '
    'w=0; { cat > "$t" && [ -s "$t" ] && mv -f "$t" "$f"; } || { rm -f "$t"; w=5; }; '
    'for p; do [ "$p" = -- ] && break; command -v "$p" >/dev/null 2>&1 || echo "$p"; done; '
    "exit $w"
)
# SEED within its time ($1: SEED, $2: seconds, then SEED's arguments), its exit code on
# a line "=CODE", then the command after the "--" (if any) in its place, its stderr
# in its stdout: what comes next at a start (Claude Code's) takes no exec of its own.
SEED_THEN = (
    's=$1 l=$2; shift 2; timeout -s KILL "$l" sh -c "$s" sh "$@"; w=$?; '
    'while [ $# -gt 0 ] && [ "$1" != -- ]; do shift; done; '
    'echo "=$w"; [ $# -gt 1 ] || exit $w; shift; exec "$@" 2>&1'
)
WRITE_FAILED = 5  # SEED's exit code when the new state could not be put in place
HEADER_CAP = 16  # bytes of SEED's size line
THEN_PATIENCE = 300.0  # seconds of silence from the command after SEED (as exec_run)


@dataclass
class Seeded:
    warnings: list[str]
    then: tuple[int, bytes] | None = None  # the command after: its exit code and output


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
    cmd = ["sh", "-c", MISSING, "sh", *sorted(set(programs.values()))]
    code, out = answer.probe(engine, container, cmd)
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
    try:
        missing = missing_programs(engine, container, servers)
    except answer.NoAnswer as exc:
        return [f"cannot ask the session which MCP programs it has: {sanitize(exc.message)}"]
    return [missing_line(*pair) for pair in missing.items()]


def missing_line(server: str, program: str) -> str:
    """The warning for one MCP server; its name and program come from the session's
    own .claude.json, so each is kept to one line (no forged lines in the output)."""
    server, program = sanitize(server), sanitize(program)
    return (
        f"MCP server {server}: its program {program} is not in the session's image "
        "(build one with it: --image)"
    )


def seed(
    engine: EngineAPI,
    container: str,
    carried: userconfig.Carried,
    projects: list[str],
    then: list[str] | None = None,
) -> Seeded:
    """Write the session's ~/.claude/.claude.json, then run `then` in the same exec
    (SEED_THEN). Warnings: MCP servers whose program the session does not have, a
    state file that could not be read (it is replaced by a new one); and what `then`
    gave (None when it did not run: the seed did not finish)."""
    warnings = []
    programs = userconfig.stdio_programs(carried.mcp_servers)
    replied = 0  # the length of the header and state the reply was made from

    def reply(out: bytes) -> bytes | None:
        nonlocal replied
        read = _framed(out)
        if read is None:
            return None
        replied, state = read
        if not isinstance(state, dict):
            warnings.append(f"{unreadable_line()}: it is replaced")
            state = {}
        try:
            text = json.dumps(userconfig.seed_state(state, carried, projects), indent=2)
        except (ValueError, RecursionError):  # nested too deep to write back
            warnings.append(f"{unreadable_line()}: it is replaced")
            text = json.dumps(userconfig.seed_state({}, carried, projects), indent=2)
        return (text + "\n").encode()

    args = [STATE, str(STATE_CAP + 1), *sorted(set(programs.values()))]
    cmd = ["sh", "-c", SEED_THEN, "sh", SEED, str(STATE_TIME), *args, "--", *(then or [])]
    try:
        code, out, err = answer.exchange(
            engine, container, cmd, reply,
            cap=STATE_CAP + (64 << 10), limit=STATE_TIME, patience=THEN_PATIENCE,
        )  # fmt: skip
    except answer.NoAnswer as exc:
        return Seeded([*warnings, f"could not write {STATE} in the session: {exc.message}"])
    rest = out[replied:].decode(errors="replace") if replied else ""
    listed, marker, after = rest.partition("\n=")
    if not marker and rest.startswith("="):
        listed, marker, after = "", "=", rest[1:]
    status, _, output = after.partition("\n")
    seeded = int(status) if marker and status.isdigit() else code
    if not replied or seeded != 0:
        said = sanitize(err.decode(errors="replace").strip() or f"exit {seeded}")
        warnings.append(f"could not write {STATE} in the session: {said}")
    if replied and seeded in (0, WRITE_FAILED):
        missing = set(listed.split())
        for server, program in sorted(programs.items()):
            if program in missing:
                warnings.append(missing_line(server, program))
    ran = then is not None and marker and status.isdigit()
    return Seeded(warnings, (code, output.encode()) if ran else None)


def _framed(out: bytes) -> tuple[int, object] | None:
    """SEED's first answer, once it is whole: (its length, the state as `_read_state`
    gives it); None while more is to come."""
    head, newline, body = out.partition(b"\n")
    if not newline:
        return (len(out), None) if len(out) > HEADER_CAP else None
    size = head.strip()
    if not size.isdigit() or len(size) > HEADER_CAP:  # "-": not a regular file
        return len(head) + 1, None
    length = int(size)
    if len(body) < length:
        return None
    if length > STATE_CAP:
        return len(head) + 1 + length, None
    text = body[:length]
    if not text.strip():
        return len(head) + 1 + length, {}
    try:
        return len(head) + 1 + length, json.loads(text)
    except (ValueError, RecursionError):
        return len(head) + 1 + length, None
