"""Memory per idle session: the session container and its companion, if it has one.

One session of each kind is started and left idle; then the engine's one-shot stats
are sampled a few times. Usage is counted as `docker stats` counts it: the cgroup's
usage minus its inactive page cache.
"""

from __future__ import annotations

import time

import floor_api
from harness import Row, SectionResult

from sections.start import KINDS

NAME = "memory"
TITLE = "memory per idle session"
SETTLE_SECONDS = 3.0
MIB = 1 / 2**20


def usage(container: str) -> int:
    stats = floor_api.get(f"/containers/{container}/stats", {"stream": "false", "one-shot": "true"})
    mem = stats["memory_stats"]
    detail = mem.get("stats") or {}
    cache = detail.get("inactive_file", detail.get("total_inactive_file", 0))
    return int(mem["usage"]) - int(cache)


def run(ctx) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    started = []
    for kind, image, flags, _target in KINDS:
        if not ctx.image_exists(image):
            result.notes.append(f"{kind}: skipped, image {image} is not built.")
            continue
        env = ctx.ws.cage_env(f"memory-{kind.replace('/', '-')}")
        name = ctx.ws.session_name("m")
        ctx.start(env, name, *flags)
        started.append((kind, name))
    time.sleep(SETTLE_SECONDS)  # idle means: after the entrypoints have settled
    samples: dict[str, list[float]] = {}
    for _ in range(max(3, ctx.reps // 3)):
        for kind, name in started:
            for role, container in (
                ("session", f"cage-{name}"),
                ("companion", f"companion-cage-{name}"),
            ):
                if ctx.inspect(container) is not None:
                    samples.setdefault(f"{kind} {role}", []).append(usage(container))
        time.sleep(1.0)
    for kind, _name in started:
        parts = [v for k, v in samples.items() if k.startswith(f"{kind} ")]
        if len(parts) > 1:
            samples[f"{kind} total"] = [sum(vals) for vals in zip(*parts, strict=True)]
    for label, values in samples.items():
        result.rows.append(Row(NAME, label, values, unit="MiB", scale=MIB))
    result.notes.append(
        f"Sampled {SETTLE_SECONDS:g} s after start, once a second; usage minus inactive "
        "page cache, as `docker stats` shows it."
    )
    return result
