"""Sessions on a remote engine: `list` and `start` there against the local engine, in the
same repetitions.

The remote engine is scripts/second-engine's: a second dockerd on this machine reached
over SSH (`ssh://cage-e2`), so the figures show what SSH and claude-cage add, not a
network's latency. Three data directories:

- `local`: one session on the local engine, no engines configured;
- `remote`: one session on cage-e2, and the local engine;
- `three`: as `remote`, plus a context where nothing listens (`cage-unreachable`),
  with engine_timeout 2 s.

Floors: bench/floor_api.py (one API call to the local engine from bare Python),
bench/floor_ssh.py (the same call to cage-e2 over SSH), and `list --engine cage-e2`, the
slowest engine's own time as claude-cage sees it. The target: `list` over all of them
costs at most 50 ms more than that last one.
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

from harness import BenchError, Ratio, Row, SectionResult, paired, paired_ratios, timed
from harness import run as run_command

NAME = "remote"
TITLE = "remote engines: list and start over SSH against the local engine"
REMOTE = "cage-e2"
ROOT = Path(__file__).resolve().parents[2]


def run(ctx) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    run_command([str(ROOT / "scripts/second-engine"), "up"])
    local, remote, three = (ctx.ws.cage_env(t) for t in ("r-local", "r-remote", "r-three"))
    for env, engines in ((remote, f"[{REMOTE}]"), (three, f"[{REMOTE}, cage-unreachable]")):
        Path(env["CAGE_CONFIG_DIR"]).mkdir(parents=True, exist_ok=True)
        (Path(env["CAGE_CONFIG_DIR"]) / "config.yaml").write_text(
            f"engines: {engines}\nengine_timeout: 2\n"
        )
    run_command([ctx.cage, "build", "all", "--engine", REMOTE], remote, timeout=3600)
    made: list[tuple[dict[str, str], str]] = []
    try:
        for env, where in ((local, "local"), (remote, REMOTE), (three, REMOTE)):
            name = ctx.ws.session_name("r")
            ctx.start(env, name, "--network", "none", "--no-persist", "--engine", where)
            made.append((env, name))
        owner_remote = ctx.ws.owner_of(remote)

        def cmd(env, *args):
            return lambda: timed([ctx.cage, *args], env)

        samples = paired(
            {
                "list (local engine only)": cmd(local, "list"),
                "list (local + remote)": cmd(remote, "list"),
                "list (local + remote + unreachable)": cmd(three, "list"),
                "list --engine cage-e2 (the slowest engine alone)": cmd(
                    three, "list", "--engine", REMOTE
                ),
                "bare Python API call, local": lambda: timed(
                    [ctx.python, str(ctx.bench_dir / "floor_api.py"), ctx.ws.owner_of(local)]
                ),
                "bare Python API call over SSH": lambda: timed(
                    [ctx.python, str(ctx.bench_dir / "floor_ssh.py"), REMOTE, owner_remote]
                ),
            },
            ctx.reps,
        )
        for label, values in samples.items():
            result.rows.append(Row(NAME, label, values))
        floors = {
            "bare Python API call over SSH": "the bare SSH floor (Python's start-up and one "
            "call over SSH)",
            "list --engine cage-e2 (the slowest engine alone)": "`list` of the slowest engine "
            "alone (target: at most 50 ms)",
        }
        for floor, described in floors.items():
            for label in ("list (local + remote)", "list (local + remote + unreachable)"):
                ratios = paired_ratios(samples[label], samples[floor])
                result.ratios.append(Ratio(NAME, label, floor, ratios))
                extra = sorted(c - f for c, f in zip(samples[label], samples[floor], strict=True))
                result.notes.append(
                    f"{label}: median {extra[len(extra) // 2] * 1000:.0f} ms over {described}"
                )
        result.ratios.append(
            Ratio(
                NAME,
                "list (local engine only)",
                "bare Python API call, local",
                paired_ratios(
                    samples["list (local engine only)"], samples["bare Python API call, local"]
                ),
            )
        )

        counter = iter(range(10_000))

        def start_on(env, where):
            def one() -> float:
                name = ctx.ws.session_name(f"rs{next(counter)}")
                took = timed(
                    [
                        ctx.cage,
                        "start",
                        "--detach",
                        "--name",
                        name,
                        "--network",
                        "none",
                        "--no-persist",
                        "--engine",
                        where,
                    ],
                    env,
                )
                ctx.destroy(env, name)
                return took

            return one

        starts = paired(
            {
                "start, local engine": start_on(local, "local"),
                "start, remote engine over SSH": start_on(remote, REMOTE),
            },
            ctx.reps,
        )
        for label, values in starts.items():
            result.rows.append(Row(NAME, label, values))
        result.ratios.append(
            Ratio(
                NAME,
                "start, remote engine over SSH",
                "start, local engine",
                paired_ratios(
                    starts["start, remote engine over SSH"], starts["start, local engine"]
                ),
            )
        )
    finally:
        for env, name in made:
            with contextlib.suppress(BenchError):
                ctx.destroy(env, name)
        subprocess.run([str(ROOT / "scripts/second-engine"), "down"], capture_output=True)
    return result
