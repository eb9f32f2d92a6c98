"""Is this checkout slower than an earlier one? `list`, `status` and `start`, paired.

    python3 bench/ab.py REV [--reps N] [--sessions N]

Runs the commands of this checkout (src/) and of revision REV (its src/, exported from
git into a temporary folder) against the same data directory and engine, in the same
repetitions, in an order rotated every repetition. Prints each median and the paired
ratio this/REV: above 1 means this checkout is slower. Refactors that must not cost
anything are checked with it (for example `python3 bench/ab.py main~5`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from harness import paired, run, timed
from workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
ENTRY = "import sys; from claude_cage.cli import main; sys.exit(main())"


def export_src(rev: str, into: Path) -> Path:
    """REV's src/ as a folder (git archive, no checkout touched)."""
    archive = into / "src.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src"], stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the revision to compare with (e.g. main~3)")
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--sessions", type=int, default=10, help="sessions `list` sees")
    args = parser.parse_args(argv)
    with Workspace() as ws, tempfile.TemporaryDirectory(prefix="cage-ab-") as tmp:
        trees = {"this": ROOT / "src", args.rev: export_src(args.rev, Path(tmp))}
        env = ws.cage_env("ab")

        env.pop("PYTHONDONTWRITEBYTECODE", None)

        def cage(tree: Path, *cmd: str) -> list[str]:
            return [sys.executable, "-c", ENTRY, *cmd]

        def env_of(tree: Path) -> dict[str, str]:
            return {**env, "PYTHONPATH": str(tree)}

        for tree in trees.values():
            where = run([sys.executable, "-c", "import claude_cage; print(claude_cage.__file__)"],
                        env_of(tree))  # fmt: skip
            if not where.startswith(str(tree)):
                sys.exit(f"ab: {tree} is not what Python imports ({where.strip()})")
            run(cage(tree, "--help"), env_of(tree))  # byte-compiled once, outside the timings
        names = [ws.session_name("ab") for _ in range(args.sessions)]
        for name in names:
            run(cage(trees["this"], "start", "--detach", "--name", name,
                     "--network", "none", "--no-persist"), env_of(trees["this"]))  # fmt: skip
        counter = iter(range(100_000))

        def start(tree: Path) -> float:
            name = ws.session_name(f"s{next(counter)}")
            took = timed(cage(tree, "start", "--detach", "--name", name,
                              "--network", "none", "--no-persist"), env_of(tree))  # fmt: skip
            run(cage(tree, "destroy", "--force", name), env_of(tree))
            return took

        measures = {
            "list": lambda tree: timed(cage(tree, "list"), env_of(tree)),
            "list --json": lambda tree: timed(cage(tree, "list", "--json"), env_of(tree)),
            "status NAME": lambda tree: timed(cage(tree, "status", names[0]), env_of(tree)),
            "start --detach": start,
        }
        print(f"{'command':16} {'this':>9} {args.rev:>12} {'ratio':>7}   ({args.reps} reps)")
        for label, measure in measures.items():
            samples = paired(
                {side: (lambda t=tree, m=measure: m(t)) for side, tree in trees.items()},
                args.reps,
            )
            ratios = [a / b for a, b in zip(samples["this"], samples[args.rev], strict=True)]
            print(
                f"{label:16} {statistics.median(samples['this']) * 1000:7.0f}ms "
                f"{statistics.median(samples[args.rev]) * 1000:10.0f}ms "
                f"{statistics.median(ratios):7.2f}"
            )
        load = os.getloadavg()
        print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
