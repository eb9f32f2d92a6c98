#!/usr/bin/env python3
"""Benchmark claude-cage on the real engine against the floors under it.

    python3 bench/run.py [--quick] [--only list,start,coldstart,memory,proxy]
                         [--sessions 1,10,50,100] [--reps N] [--output PATH]

Prints a table and writes docs/benchmarks.md. Everything it creates on the engine is
removed at the end, also after Ctrl-C or a failure (see workspace.py).
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import time
import traceback
from pathlib import Path

import report
from context import Context
from harness import SectionResult
from sections import ALL
from workspace import Workspace

DEFAULT_REPS = 15
QUICK_REPS = 3


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_REPS} repetitions")
    parser.add_argument("--reps", type=int, help=f"repetitions (default {DEFAULT_REPS})")
    parser.add_argument(
        "--only", default=",".join(ALL), help=f"sections to run (default: {','.join(ALL)})"
    )
    parser.add_argument(
        "--sessions", default="1,10,50,100", help="session counts for list (default 1,10,50,100)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=report.REPO / "docs" / "benchmarks.md",
        help="markdown report (default docs/benchmarks.md)",
    )
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="loop: also run REV's src/ in the same repetitions (before/after, paired)",
    )
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in args.sections if s not in ALL]
    if unknown:
        parser.error(f"unknown section(s) {','.join(unknown)}; choose from {','.join(ALL)}")
    try:
        args.counts = sorted({int(n) for n in args.sessions.split(",") if n.strip()})
    except ValueError:
        parser.error("--sessions takes numbers, e.g. 1,10,50,100")
    if not args.counts or args.counts[0] < 1:
        parser.error("--sessions needs counts of at least 1")
    args.reps = args.reps or (QUICK_REPS if args.quick else DEFAULT_REPS)
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    # Clean up on SIGTERM as on Ctrl-C, and take SIGINT even when started in the background.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    info = report.machine()
    results: list[SectionResult] = []
    failed = False
    with Workspace() as ws:
        ctx = Context(ws=ws, reps=args.reps, sessions=args.counts, baseline=args.baseline)
        print(f"bench: run {ws.run_id}, {args.reps} repetitions, sections {args.sections}")
        for name in args.sections:
            began = time.monotonic()
            print(f"bench: {name} ...", flush=True)
            try:
                results.append(ALL[name].run(ctx))
            except Exception as exc:
                failed = True
                traceback.print_exc()
                results.append(SectionResult(name, ALL[name].TITLE, notes=[f"FAILED: {exc}"]))
            finally:
                ws.release()  # the next section starts on an engine without this one's
            print(f"bench: {name} took {time.monotonic() - began:.0f} s", flush=True)
    print(f"bench: removed what run {ws.run_id} made", flush=True)
    leftovers = ws.leftovers()
    if leftovers:
        failed = True
        print(f"bench: left on the engine: {' '.join(leftovers)}", file=sys.stderr)
    info["load average (1/5/15 min) at end"] = report.load_average()
    print()
    print(report.text(results))
    command = "python3 bench/run.py" + "".join(f" {shlex.quote(a)}" for a in argv)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report.markdown(results, info, command))
    print(f"bench: wrote {args.output}")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
