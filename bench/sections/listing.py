"""`list` and `status` latency as the number of sessions grows.

Sessions are added (`start --network none --detach --no-persist`, all left running)
until each count is reached; at each count the candidates and both floors run in
the same rotated repetitions:

- `docker ps -a` with the same label filters `list` uses;
- bench/floor_api.py: a bare Python process making one engine API call.

A second data directory holds exactly one session throughout, so `list` at one
session is measured in the same repetitions as `list` at N (paired), with the
engine holding the same number of containers.
"""

from __future__ import annotations

import statistics

from harness import Ratio, Row, SectionResult, paired, paired_ratios, timed

NAME = "list"
TITLE = "list and status latency"


def run(ctx) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    many, one = ctx.ws.cage_env("list-many"), ctx.ws.cage_env("list-one")
    owner = ctx.ws.owner_of(many)
    names: list[str] = []
    ctx.start(one, ctx.ws.session_name("one"), "--network", "none", "--no-persist")

    def cmd(env, *args):
        return lambda: timed([ctx.cage, *args], env)

    floor_ps = [ctx.docker, "ps", "-a", "--filter", "label=managed-by=claude-cage"]
    floor_ps += ["--filter", "label=cage.role=session", "--filter", f"label=cage.owner={owner}"]
    floor_py = [ctx.python, str(ctx.bench_dir / "floor_api.py"), owner]
    for count in ctx.sessions:
        while len(names) < count:
            names.append(ctx.ws.session_name("s"))
            ctx.start(many, names[-1], "--network", "none", "--no-persist")
        runs = {
            "list": cmd(many, "list"),
            "list --json": cmd(many, "list", "--json"),
            "status": cmd(many, "status", names[0]),
            "list (1 session)": cmd(one, "list"),
            "docker ps": lambda: timed(floor_ps),
            "bare Python API call": lambda: timed(floor_py),
        }
        samples = paired(runs, ctx.reps)
        for label, values in samples.items():
            if label == "list (1 session)" and count == 1:
                continue  # the same thing as `list` at 1
            result.rows.append(Row(NAME, f"{label} @ {count}", values))
        for cand, floor, target in (
            ("list", "bare Python API call", 2.0 if count == 100 else None),
            ("list", "docker ps", None),
            ("list --json", "bare Python API call", None),
            ("status", "bare Python API call", None),
        ):
            values = paired_ratios(samples[cand], samples[floor])
            result.ratios.append(Ratio(NAME, f"{cand} @ {count}", floor, values, target))
        if count != 1:
            result.ratios.append(
                Ratio(
                    NAME,
                    f"list @ {count}",
                    "list @ 1 (paired, other data dir)",
                    paired_ratios(samples["list"], samples["list (1 session)"]),
                    1.2 if count == 100 else None,
                )
            )
    if len(ctx.sessions) > 1:
        first, last = ctx.sessions[0], ctx.sessions[-1]
        for label in ("list", "bare Python API call"):
            series = {r.label: r.samples for r in result.rows}
            growth = statistics.median(series[f"{label} @ {last}"]) / statistics.median(
                series[f"{label} @ {first}"]
            )
            result.ratios.append(
                Ratio(
                    NAME,
                    f"{label} @ {last}",
                    f"{label} @ {first} (earlier in the run)",
                    [growth],
                    paired=False,
                )
            )
    result.notes.append(
        "All sessions are running (cli, network none, no data volume). `status` includes its "
        "live in-container check (an exec into the session). Floors use the same label "
        "filters as `list` (managed-by, cage.role=session, cage.owner)."
    )
    return result
