"""The working loop: `attach` until Claude Code's screen is drawn, and `logs` on a
transcript of 10,000 events.

- attach: a session whose Claude Code runs (against the tests' scripted model server,
  as api.anthropic.com on the egress network, so it stays up on its first screen).
  `claude-cage attach` runs on a pseudo-terminal until Claude Code's text shows, then
  detaches with Ctrl-\\ (untimed). Floor: the same tmux attach through `docker exec -it`
  alone, which is what claude-cage adds its checks and its watch exec to.
- logs: 10,000 transcript events (prompts, tool calls, results, answers) written into
  the session's data volume; `logs` renders them all, `logs --json` re-encodes them.
  Floor: `docker exec ... cat` of the same file (the bytes alone, no parsing).

With `--baseline REV`, `attach` and `logs` of REV's src/ (exported with git, run with
the same interpreter) are measured in the same repetitions: before and after, paired.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import Ratio, Row, SectionResult, paired, paired_ratios, timed
from harness import run as run_command
from pki import make_tls

NAME = "loop"
TITLE = "attach and logs"
EVENTS = 10_000
# Claude Code's screen, as it shows (escape sequences aside: words are placed with
# cursor moves): its first question on a first run, else its prompt's bottom line.
MARKERS = ("Choose the text style", "shift+tab to cycle")
TRANSCRIPT = "/home/claude/.claude/projects/-workspace/bench.jsonl"
ATTACH_TARGET, LOGS_TARGET = 1.5, 2.0  # x their floors (paired medians)


def _drawn(argv: list[str], env: dict[str, str], timeout: float = 60) -> float:
    """Seconds from spawning `argv` on a pseudo-terminal until one of MARKERS shows; then
    Ctrl-\\ and wait for it to exit (untimed)."""
    from tests.integration.terminal import plain  # on sys.path once run() began

    master, slave = pty.openpty()
    began = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    seen, drawn = b"", None
    try:
        while time.perf_counter() - began < timeout:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    seen += os.read(master, 65536)
                except OSError:
                    break
            if any(marker in plain(seen) for marker in MARKERS):
                drawn = time.perf_counter() - began
                break
        os.write(master, b"\x1c")
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    if drawn is None:
        raise RuntimeError(f"{argv[:3]}: the screen never showed {MARKERS}: {plain(seen)[-600:]!r}")
    return drawn


def _transcript() -> bytes:
    lines = []
    for i in range(EVENTS // 4):
        ts = f"2026-11-29T10:{(i // 60) % 60:02d}:{i % 60:02d}.000Z"
        lines += [
            {"type": "user", "timestamp": ts, "message": {"role": "user", "content": f"Step {i}"}},
            {
                "type": "assistant",
                "timestamp": ts,
                "message": {
                    "content": [
                        {"type": "text", "text": f"Working on step {i}. " * 5},
                        {"type": "tool_use", "name": "Bash", "input": {"command": f"make {i}"}},
                    ]
                },
            },
            {
                "type": "user",
                "timestamp": ts,
                "message": {"content": [{"type": "tool_result", "content": "ok\n" * 40}]},
            },
            {
                "type": "assistant",
                "timestamp": ts,
                "message": {"content": [{"type": "text", "text": "Done."}]},
            },
        ]
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def _baseline(ctx, env: dict[str, str]) -> tuple[list[str], dict[str, str]] | None:
    """The command and environment that run ctx.baseline's src/, or None."""
    if not ctx.baseline:
        return None
    from ab import ENTRY, export_src

    tree = export_src(ctx.baseline, Path(tempfile.mkdtemp(dir=ctx.ws.root)))
    base, base_env = [ctx.python, "-c", ENTRY], {**env, "PYTHONPATH": str(tree)}
    run_command([*base, "--help"], base_env)  # byte-compiled once, outside the timings
    return base, base_env


def run(ctx) -> SectionResult:
    sys.path.insert(0, str(ctx.bench_dir.parent))  # the tests' scripted model server
    from tests.integration.conftest import ensure_egress_network
    from tests.integration.model import start_model_server

    result = SectionResult(NAME, TITLE)
    env = ctx.ws.cage_env("loop")
    ensure_egress_network()
    ca, tls = make_tls(ctx.ws.root / "loop-tls")
    server = start_model_server(ctx.ws.run_id, tls, ca)
    try:
        name = ctx.ws.session_name("agent")
        key = {"ANTHROPIC_API_KEY": "sk-ant-bench-0123456789abcdef", **server.session_env()}
        ctx.start({**env, **key}, name)
        container = f"cage-{name}"
        tmux = ["tmux", "-f", "/etc/cage/tmux.conf", "-S", "/run/cage/tmux.sock"]
        floor = [ctx.docker, "exec", "-it", "--detach-keys=ctrl-@,ctrl-@", container, *tmux]
        runs = {
            "attach": lambda: _drawn([ctx.cage, "attach", name], env),
            "docker exec -it tmux attach": lambda: _drawn([*floor, "attach"], env),
        }
        before = _baseline(ctx, env)
        if before:
            base, base_env = before
            runs[f"attach ({ctx.baseline})"] = lambda: _drawn([*base, "attach", name], base_env)
        samples = paired(runs, ctx.reps)
        for label, values in samples.items():
            result.rows.append(Row(NAME, f"{label}: screen drawn", values))
        for label in [label for label in samples if label.startswith("attach")]:
            result.ratios.append(
                Ratio(
                    NAME,
                    label,
                    "docker exec -it tmux attach",
                    paired_ratios(samples[label], samples["docker exec -it tmux attach"]),
                    target=ATTACH_TARGET,
                )
            )
        if before:
            result.ratios.append(
                Ratio(NAME, "attach", f"attach ({ctx.baseline})",
                      paired_ratios(samples["attach"], samples[f"attach ({ctx.baseline})"]))
            )  # fmt: skip

        data = _transcript()
        write = f"mkdir -p {Path(TRANSCRIPT).parent} && cat > {TRANSCRIPT}"
        run_command([ctx.cage, "exec", name, "--", "sh", "-c", write], env, input=data.decode())
        runs = {
            "logs": lambda: timed([ctx.cage, "logs", name], env),
            "logs --json": lambda: timed([ctx.cage, "logs", name, "--json"], env),
            "logs --tail 20": lambda: timed([ctx.cage, "logs", name, "--tail", "20"], env),
            "docker exec cat": lambda: timed([ctx.docker, "exec", container, "cat", TRANSCRIPT]),
        }
        if before:
            runs[f"logs ({ctx.baseline})"] = lambda: timed([*base, "logs", name], base_env)
        samples = paired(runs, ctx.reps)
        for label, values in samples.items():
            result.rows.append(Row(NAME, f"{label} ({EVENTS} events)", values))
        for label in [label for label in samples if label.startswith("logs")]:
            result.ratios.append(
                Ratio(
                    NAME,
                    f"{label} ({EVENTS} events)",
                    "docker exec cat",
                    paired_ratios(samples[label], samples["docker exec cat"]),
                    target=LOGS_TARGET if label == "logs" else None,
                )
            )
        if before:
            result.ratios.append(
                Ratio(NAME, "logs", f"logs ({ctx.baseline})",
                      paired_ratios(samples["logs"], samples[f"logs ({ctx.baseline})"]))
            )  # fmt: skip
        result.notes.append(
            f"The transcript is {len(data) / 1e6:.1f} MB. `logs` reads it through the engine's "
            "archive API (which also serves stopped sessions), parses every event and renders "
            "one line per prompt, call, result and answer."
        )
    finally:
        subprocess.run([ctx.docker, "rm", "-f", server.container], capture_output=True)
    return result
