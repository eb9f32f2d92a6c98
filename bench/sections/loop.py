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
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from harness import Ratio, Row, SectionResult, paired, paired_ratios, timed
from harness import run as run_command
from pki import make_tls

NAME = "loop"
TITLE = "attach and logs"
EVENTS = 10_000
MARKER = b"Syntax"  # near the bottom of Claude Code's first screen: drawn last
TRANSCRIPT = "/home/claude/.claude/projects/-workspace/bench.jsonl"


def _drawn(argv: list[str], env: dict[str, str], timeout: float = 60) -> float:
    """Seconds from spawning `argv` on a pseudo-terminal until MARKER shows; then
    Ctrl-\\ and wait for it to exit (untimed)."""
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
            if MARKER in seen:
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
        raise RuntimeError(f"{argv[:3]}: the screen never showed {MARKER!r}: {seen[-300:]!r}")
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
        samples = paired(runs, ctx.reps)
        for label, values in samples.items():
            result.rows.append(Row(NAME, f"{label}: screen drawn", values))
        result.ratios.append(
            Ratio(
                NAME,
                "attach",
                "docker exec -it tmux attach",
                paired_ratios(samples["attach"], samples["docker exec -it tmux attach"]),
            )
        )

        data = _transcript()
        write = f"mkdir -p {Path(TRANSCRIPT).parent} && cat > {TRANSCRIPT}"
        run_command([ctx.cage, "exec", name, "--", "sh", "-c", write], env, input=data.decode())
        runs = {
            "logs": lambda: timed([ctx.cage, "logs", name], env),
            "logs --json": lambda: timed([ctx.cage, "logs", name, "--json"], env),
            "logs --tail 20": lambda: timed([ctx.cage, "logs", name, "--tail", "20"], env),
            "docker exec cat": lambda: timed([ctx.docker, "exec", container, "cat", TRANSCRIPT]),
        }
        samples = paired(runs, ctx.reps)
        for label, values in samples.items():
            result.rows.append(Row(NAME, f"{label} ({EVENTS} events)", values))
        for label in ("logs", "logs --json", "logs --tail 20"):
            result.ratios.append(
                Ratio(
                    NAME,
                    f"{label} ({EVENTS} events)",
                    "docker exec cat",
                    paired_ratios(samples[label], samples["docker exec cat"]),
                )
            )
        result.notes.append(
            f"The transcript is {len(data) / 1e6:.1f} MB. `logs` reads it through the engine's "
            "archive API (which also serves stopped sessions), parses every event and renders "
            "one line per prompt, call, result and answer."
        )
    finally:
        subprocess.run([ctx.docker, "rm", "-f", server.container], capture_output=True)
    return result
