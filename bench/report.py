"""The results: a plain table on stdout and docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from harness import Ratio, SectionResult

REPO = Path(__file__).resolve().parent.parent


def _out(*argv: str) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def machine() -> dict[str, str]:
    meminfo = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()
    commit = _out("git", "rev-parse", "--short", "HEAD")
    if _out("git", "status", "--porcelain", "--untracked-files=no"):
        commit += " (with uncommitted changes)"
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit,
        "nproc": str(os.cpu_count()),
        "memory": f"{int(meminfo[1]) / 2**20:.1f} GiB",
        "kernel": platform.release(),
        "docker": _out("docker", "version", "--format", "{{.Server.Version}}"),
        "python": platform.python_version(),
        "load average (1/5/15 min) at start": load_average(),
        "other containers running at start": str(
            len(_out("docker", "ps", "-q").split()) if _out("docker", "ps", "-q") else 0
        ),
    }


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def num(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _verdict(ratio: Ratio) -> str:
    if ratio.target is None:
        return ""
    return f"<= {ratio.target:g}: {'met' if ratio.met else 'MISSED'}"


def _ratio_cells(r: Ratio) -> list[str]:
    spread = f"{num(min(r.values))}-{num(max(r.values))}" if len(r.values) > 1 else "-"
    kind = "paired" if r.paired else "medians"
    return [r.candidate, r.floor, f"{r.median:.2f}", spread, kind, _verdict(r)]


def _row_cells(row) -> list[str]:
    return [
        row.label,
        num(row.median),
        num(row.low),
        num(row.high),
        row.unit,
        str(len(row.samples)),
    ]


ROW_HEAD = ["measurement", "median", "min", "max", "unit", "n"]
RATIO_HEAD = ["candidate", "floor", "ratio", "min-max", "kind", "target"]


def _plain(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [head, *rows]
    )


def text(results: list[SectionResult]) -> str:
    parts = []
    for res in results:
        parts.append(f"== {res.title} ==")
        parts.append(_plain(ROW_HEAD, [_row_cells(r) for r in res.rows]))
        if res.ratios:
            parts.append("")
            parts.append(_plain(RATIO_HEAD, [_ratio_cells(r) for r in res.ratios]))
        parts += [f"note: {n}" for n in res.notes]
        parts.append("")
    return "\n".join(parts)


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def markdown(results: list[SectionResult], info: dict[str, str], command: str) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Written by `{command}` (see bench/README.md). Each measurement shows the median, "
        "min and max over n runs. Candidates and their floors run in the same repetitions, "
        "in an order rotated every repetition; a paired ratio is the median of the "
        "per-repetition ratios.",
        "",
        "## Machine",
        "",
        _md_table(["", ""], [[k, v] for k, v in info.items()]),
        "",
        "A load average above nproc means other work shared the machine during the run: "
        "medians are then noisy, paired ratios less so.",
        "",
    ]
    targets = [r for res in results for r in res.ratios if r.target is not None]
    if targets:
        lines += ["## Targets", ""]
        lines.append(_md_table(RATIO_HEAD, [_ratio_cells(r) for r in targets]))
        lines.append("")
    for res in results:
        lines += [f"## {res.title}", ""]
        lines.append(_md_table(ROW_HEAD, [_row_cells(r) for r in res.rows]))
        lines.append("")
        if res.ratios:
            lines.append(_md_table(RATIO_HEAD, [_ratio_cells(r) for r in res.ratios]))
            lines.append("")
        lines += [f"- {n}" for n in res.notes] + ([""] if res.notes else [])
        if res.markdown:
            lines += [res.markdown, ""]
    return "\n".join(lines)
