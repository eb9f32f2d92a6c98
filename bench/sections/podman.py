"""Sessions on a rootful Podman (scripts/ensure-podman), against Podman's own floors and
beside Docker, in the same repetitions:

- `start --detach` (cli, network none) on Podman and on Docker, against `podman run -d`
  and `docker run -d` of the same image (the bare container, no hardening);
- `list` of one session on Podman, against `podman ps -a` with the same label filter;
- `exec NAME true` on each, against `podman exec` and `docker exec`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

from harness import BenchError, Ratio, Row, SectionResult, paired, paired_ratios, timed
from harness import run as run_command

NAME = "podman"
TITLE = "Podman: start, list and exec against its own floors, beside Docker"
ROOT = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("CAGE_IMAGE_CLI", "claude-cage-cli:latest")
COMPANION = os.environ.get("CAGE_IMAGE_COMPANION", "claude-cage-companion:latest")
# Both limits named, as a session names them (Podman's defaults can exceed the host's).
LIMITS = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]


def run(ctx) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    url = run_command([str(ROOT / "scripts/ensure-podman"), IMAGE, COMPANION], timeout=1800)
    url = url.strip()
    env = ctx.ws.cage_env("podman")
    counter = iter(range(100_000))
    made: list[str] = []

    def start_on(where: str):
        def one() -> float:
            name = ctx.ws.session_name(f"ps{next(counter)}")
            argv = [ctx.cage, "start", "--detach", "--name", name, "--network", "none"]
            took = timed([*argv, "--no-persist", "--engine", where], env)
            ctx.destroy(env, name)
            return took

        return one

    def bare(tool: str):
        def one() -> float:
            name = f"{ctx.ws.prefix}{tool}{next(counter)}"
            argv = [tool, "run", "-d", "--name", name, "--label", ctx.ws.label, *LIMITS]
            try:
                return timed([*argv, "--entrypoint", "sleep", IMAGE, "infinity"])
            finally:  # also when it failed: a created container stays until removed
                subprocess.run([tool, "rm", "-f", "-t", "0", name], capture_output=True)

        return one

    try:
        starts = paired(
            {
                "start, Podman": start_on(url),
                "start, Docker": start_on("local"),
                "podman run -d": bare("podman"),
                "docker run -d": bare("docker"),
            },
            ctx.reps,
        )
        for label, values in starts.items():
            result.rows.append(Row(NAME, label, values))
        pairs = (("start, Podman", "podman run -d"), ("start, Docker", "docker run -d"))
        for label, floor in pairs:
            result.ratios.append(
                Ratio(NAME, label, floor, paired_ratios(starts[label], starts[floor]))
            )

        on_podman, on_docker = ctx.ws.session_name("pl"), ctx.ws.session_name("dl")
        ctx.start(env, on_podman, "--network", "none", "--no-persist", "--engine", url)
        made.append(on_podman)
        ctx.start(env, on_docker, "--network", "none", "--no-persist")
        made.append(on_docker)
        label = f"label=cage.owner={ctx.ws.owner_of(env)}"

        def cage(*args: str):
            return lambda: timed([ctx.cage, *args], env)

        def tool(*argv: str):
            return lambda: timed(list(argv))

        samples = paired(
            {
                "list --engine podman": cage("list", "--engine", url),
                "podman ps -a (same filter)": tool("podman", "ps", "-a", "--filter", label),
                "exec true, Podman": cage("exec", on_podman, "--", "true"),
                "podman exec true": tool("podman", "exec", f"cage-{on_podman}", "true"),
                "exec true, Docker": cage("exec", on_docker, "--", "true"),
                "docker exec true": tool("docker", "exec", f"cage-{on_docker}", "true"),
            },
            ctx.reps,
        )
        for label_, values in samples.items():
            result.rows.append(Row(NAME, label_, values))
        for candidate, floor in (
            ("list --engine podman", "podman ps -a (same filter)"),
            ("exec true, Podman", "podman exec true"),
            ("exec true, Docker", "docker exec true"),
        ):
            result.ratios.append(
                Ratio(NAME, candidate, floor, paired_ratios(samples[candidate], samples[floor]))
            )
    finally:
        for name in made:
            with contextlib.suppress(BenchError):
                ctx.destroy(env, name)
    return result
