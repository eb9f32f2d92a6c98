"""The egress audit under a flood: what a flood of blocked requests costs the operator.

Two filtered sessions of one data directory: a quiet one (one blocked request) and one
that just made FLOOD blocked requests (curl, 32 in parallel, to a host not on its
allowlist). `status` and `egress` are timed on both, paired; then `stop` and `destroy`
of each, once per repetition, on fresh sessions. The floor is the same command on the
quiet session. Also: how long a blocked request takes to reach the event log, from the
moment the request returned inside the session to the event in the SQLite file, with no
claude-cage command running (the audit's follower files it).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from harness import Ratio, Row, SectionResult, paired, paired_ratios, timed
from harness import run as run_cmd

NAME = "audit"
TITLE = "egress audit under a flood of blocked requests"
FLOOD = 30000
CURL = "curl -s -o /dev/null -Z --parallel-max 32 'http://flood.invalid.test/[1-{n}]'"


def run(ctx) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    env = ctx.ws.cage_env("audit")
    data = Path(env["CAGE_DATA_DIR"])
    reps = max(3, ctx.reps // 2)

    def pair() -> tuple[str, str]:
        quiet, flood = ctx.ws.session_name("quiet"), ctx.ws.session_name("flood")
        for name in (quiet, flood):
            ctx.start(env, name, "--network", "filtered", "--no-persist")
        session_exec(ctx, quiet, CURL.format(n=1))
        session_exec(ctx, flood, CURL.format(n=FLOOD))
        return quiet, flood

    quiet, flood = pair()
    for command in (("status",), ("egress",), ("egress", "--blocked", "--json")):
        label = " ".join(command)
        flooded = f"{label}, after {FLOOD} blocked"
        samples = paired(
            {
                f"{label}, quiet": lambda c=command: timed([ctx.cage, *c, quiet], env),
                flooded: lambda c=command: timed([ctx.cage, *c, flood], env),
            },
            reps,
        )
        _add(result, samples, flooded, f"{label}, quiet")

    stops: dict[str, list[float]] = {}
    for _ in range(reps):
        quiet, flood = pair()
        for command in ("stop", "destroy"):
            for kind, name in (("quiet", quiet), (f"after {FLOOD} blocked", flood)):
                argv = [ctx.cage, command, *(["--force"] if command == "destroy" else []), name]
                stops.setdefault(f"{command}, {kind}", []).append(timed(argv, env))
    for command in ("stop", "destroy"):
        pick = {k: v for k, v in stops.items() if k.startswith(command)}
        _add(result, pick, f"{command}, after {FLOOD} blocked", f"{command}, quiet")

    name = ctx.ws.session_name("late")
    ctx.start(env, name, "--network", "filtered", "--no-persist")
    delays = []
    for i in range(reps * 2):
        host = f"late-{i}.invalid.test"
        session_exec(ctx, name, f"curl -s -o /dev/null http://{host}/")
        sent = time.perf_counter()
        while not _filed(data, name, host):
            if time.perf_counter() - sent > 30:
                raise RuntimeError(f"{host} never reached the event log")
            time.sleep(0.01)
        delays.append(time.perf_counter() - sent)
    result.rows.append(Row(NAME, "blocked request -> event log (no command running)", delays))
    result.notes.append(
        f"The flooded session made {FLOOD} blocked requests (curl, 32 in parallel) just "
        "before; its proxy log is capped at egress_log_size (16m). Ratios are flooded / "
        "quiet, per repetition; the promise is at most 2 s more than quiet."
    )
    return result


def _add(result: SectionResult, samples: dict[str, list[float]], flood: str, quiet: str) -> None:
    for label, values in samples.items():
        result.rows.append(Row(NAME, label, values))
    result.ratios.append(Ratio(NAME, flood, quiet, paired_ratios(samples[flood], samples[quiet])))


def session_exec(ctx, name: str, script: str) -> None:
    run_cmd([ctx.docker, "exec", f"cage-{name}", "bash", "-c", script])


def _filed(data: Path, name: str, host: str) -> bool:
    path = data / "events.sqlite3"
    if not path.exists():
        return False
    with sqlite3.connect(path) as db:
        row = db.execute(
            "SELECT 1 FROM events WHERE session = ? AND type = 'egress' AND value_json LIKE ?",
            (name, f'%"{host}"%'),
        ).fetchone()
    return row is not None
