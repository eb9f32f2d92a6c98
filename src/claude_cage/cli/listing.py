"""`list`: the sessions of every watched engine, as a table or as JSON.

The Click command (cli/sessions.py) runs `show`; so does `list` or `list --json` alone,
without Click (cli/quick.py), since a listing is asked for often and should be instant.
"""

from __future__ import annotations

import sys
import time

from claude_cage.context import Context
from claude_cage.render import note, print_json, table, warn

HEADERS = ("NAME", "MODE", "STATUS", "NETWORK", "RUNTIME", "AGE", "PROJECT", "URL", "ENGINE")


def show(ctx: Context, as_json: bool, engine_name: str | None) -> None:
    from claude_cage.operations.views import survey  # start-up: `--help` needs none of it
    from claude_cage.resources import parse_time

    found = survey(ctx, engine_name)
    sessions = found.sessions
    for engine in found.engines:
        if not engine["reachable"] and not as_json:
            warn(f"engine {engine['name']} is unreachable: {engine['error']}")
    if as_json:
        print_json({"sessions": sessions, "engines": found.engines})
        return
    if not sessions:
        note("no sessions; start one with 'claude-cage start'")
        return
    now = time.time()
    rows = [
        (
            s["name"] + (" (damaged)" if s["damaged"] else " (orphan)" if s["orphan"] else ""),
            s["mode"],
            s["status"],
            s["network"],
            s.get("runtime") or "",
            age(now - created) if (created := parse_time(s["created"])) else "",
            (s["project"] or "") + (f" ({s['branch']})" if s.get("branch") else ""),
            s["url"] or "",
            s["engine"],
        )
        for s in sessions
    ]
    sys.stdout.write(table(rows, HEADERS) + "\n")
    sys.stdout.flush()
    for s in sessions:
        if s.get("damaged"):
            warn(
                f"session {s['name']}: its metadata is damaged ({s['damaged']}); see "
                f"'claude-cage status {s['name']}'"
            )


def age(seconds: float) -> str:
    """How long ago, as a person says it: 40 s, 5 min, 3 h, 2 days."""
    if seconds < 60:
        return f"{max(int(seconds), 0)} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h"
    days = int(seconds // 86400)
    return f"{days} day" if days == 1 else f"{days} days"
