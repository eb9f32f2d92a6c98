"""CLI cold start: `claude-cage --help` and `version` against `python3 -c pass`.

All three run with the same interpreter (the console script beside it, not through a
version-manager shim). The markdown also gets `python -X importtime` of
`claude_cage.cli`: what it imports directly, and the slowest modules by self time,
leaving out what a bare `python3 -c pass` imports anyway.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sysconfig
from pathlib import Path

from harness import Ratio, Row, SectionResult, paired, paired_ratios, timed

NAME = "coldstart"
TITLE = "CLI cold start"


def run(ctx) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    env = ctx.ws.cage_env("coldstart")
    bare = {**env, "PYTHONPATH": os.pathsep.join(site_paths())}
    runs = {
        "claude-cage --help": lambda: timed([ctx.cage, "--help"], env),
        "claude-cage version": lambda: timed([ctx.cage, "version"], env),
        "python3 -c pass": lambda: timed([ctx.python, "-c", "pass"], env),
        "claude-cage --help (-S)": lambda: timed([ctx.python, "-S", ctx.cage, "--help"], bare),
        "python3 -S -c pass": lambda: timed([ctx.python, "-S", "-c", "pass"], bare),
    }
    on_path = shutil.which("claude-cage"), shutil.which("python3")
    if on_path[0] and on_path[1] and on_path[0] != ctx.cage:  # e.g. version-manager shims
        runs["claude-cage --help (via PATH)"] = lambda: timed([on_path[0], "--help"], env)
        runs["python3 -c pass (via PATH)"] = lambda: timed([on_path[1], "-c", "pass"], env)
    samples = paired(runs, ctx.reps * 2, warmup=2)
    for label, values in samples.items():
        result.rows.append(Row(NAME, label, values))
    for cand, floor, target in (
        ("claude-cage --help", "python3 -c pass", 1.5),
        ("claude-cage version", "python3 -c pass", None),
        ("claude-cage --help (-S)", "python3 -S -c pass", None),
        ("claude-cage --help (via PATH)", "python3 -c pass (via PATH)", None),
    ):
        if cand not in samples:
            continue
        values = paired_ratios(samples[cand], samples[floor])
        result.ratios.append(Ratio(NAME, cand, floor, values, target))
    result.markdown = importtime_report(ctx.python, env, max(3, ctx.reps // 2))
    result.notes.append(f"Interpreter: {ctx.python}; console script: {ctx.cage}.")
    if "claude-cage --help (via PATH)" in samples:
        result.notes.append(
            f"Rows marked (via PATH) run {on_path[0]} and {on_path[1]}, as a shell finds them."
        )
    result.notes.append(
        "(-S) rows skip site's .pth files (the same paths come from PYTHONPATH instead): "
        "they show the CLI's own cost without the start-up hooks this machine's "
        "interpreter runs for every process, which the floor `python3 -c pass` includes."
    )
    return result


def site_paths() -> list[str]:
    """site-packages and the directories its .pth files add, without running their code."""
    purelib = Path(sysconfig.get_paths()["purelib"])
    found = [str(purelib)]
    for pth in sorted(purelib.glob("*.pth")):
        for line in pth.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith(("#", "import")) and Path(line).is_dir():
                found.append(line)
    return found


def _importtime(python: str, env, code: str) -> list[tuple[int, int, int, str]]:
    """(depth, self us, cumulative us, module) for every import, in the order printed."""
    stderr = subprocess.run(
        [python, "-X", "importtime", "-c", code], env=env, capture_output=True, text=True
    ).stderr
    entries = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, cumulative, name = line[len("import time:") :].split("|")
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        entries.append((depth, int(own), int(cumulative), name.strip()))
    return entries


def importtime_report(python: str, env, reps: int) -> str:
    baseline = {e[3] for e in _importtime(python, env, "pass")}
    runs = [_importtime(python, env, "import claude_cage.cli") for _ in range(reps)]
    direct: dict[str, list[int]] = {}
    own: dict[str, list[int]] = {}
    total: list[int] = []
    for entries in runs:
        top = next(i for i, e in enumerate(entries) if e[3] == "claude_cage.cli" and e[0] == 0)
        total.append(entries[top][2])
        start = max((i for i in range(top) if entries[i][0] == 0), default=-1) + 1
        for depth, self_us, cumulative, module in entries[start:top]:
            if depth == 1:
                direct.setdefault(module, []).append(cumulative)
            if module not in baseline:
                own.setdefault(module, []).append(self_us)

    def ms(values: list[int]) -> str:
        return f"{statistics.median(values) / 1000:.1f}"

    lines = [
        f"`python -X importtime -c 'import claude_cage.cli'`, median of {reps} runs: "
        f"{ms(total)} ms in all.",
        "",
        "| imported by claude_cage.cli | cumulative ms |",
        "| --- | ---: |",
    ]
    ranked = sorted(direct.items(), key=lambda kv: -statistics.median(kv[1]))
    lines += [f"| `{m}` | {ms(v)} |" for m, v in ranked[:12]]
    lines += ["", "| slowest modules (self time, not imported by a bare python) | self ms |"]
    lines += ["| --- | ---: |"]
    ranked = sorted(own.items(), key=lambda kv: -statistics.median(kv[1]))
    lines += [f"| `{m}` | {ms(v)} |" for m, v in ranked[:12]]
    return "\n".join(lines)
