"""Start-to-ready latency: `claude-cage start --detach` against a raw `docker run -d`.

For each kind of session, a reference session is started once (untimed) and
inspected; the raw floor is `docker run -d` of the same image with the flags read
back from that inspect (dockerrun.py). claude-cage's start returns once the session
runs and its companion's proxy answers; `docker run -d` returns once the container
runs. Each session or container is removed right after it is measured, untimed.

For kinds with a companion, a second floor starts both containers raw (companion,
then session, sharing the socket volume), which is what claude-cage has to do.
"""

from __future__ import annotations

from pathlib import Path

import dockerrun
from harness import Ratio, Row, SectionResult, paired, paired_ratios, timed
from harness import run as run_cmd

NAME = "start"
TITLE = "start-to-ready latency"

KINDS = (
    ("cli/none", "claude-cage-cli:latest", ("--network", "none"), 2.0),
    ("cli/filtered", "claude-cage-cli:latest", ("--network", "filtered"), 3.0),
    ("desktop", "claude-cage-desktop:latest", ("--mode", "desktop"), None),
)


def run_kind(ctx, result: SectionResult, kind: str, flags: tuple[str, ...], target) -> None:
    slug = kind.replace("/", "-")
    env = ctx.ws.cage_env(f"start-{slug}")
    ref = ctx.ws.session_name("ref")
    ctx.start(env, ref, *flags)
    workdir = ctx.ws.root / f"start-{slug}"
    data = Path(env["CAGE_DATA_DIR"])
    session_info = dockerrun.keep_binds(ctx.inspect(f"cage-{ref}"), data, workdir)
    companion_info = ctx.inspect(f"companion-cage-{ref}")
    if companion_info is not None:
        companion_info = dockerrun.keep_binds(companion_info, data, workdir)
    ctx.destroy(env, ref)

    def cage_start() -> float:
        name = ctx.ws.session_name("s")
        seconds = timed([ctx.cage, "start", "--detach", "--name", name, *flags], env)
        ctx.destroy(env, name)
        return seconds

    def raw(*infos) -> float:
        volumes: dict[str, str] = {}
        names = [ctx.ws.unique() for _ in infos]
        argvs = [
            dockerrun.run_args(info, name, ctx.ws.label, volumes, ctx.ws.unique, workdir, False)
            for info, name in zip(infos, names, strict=True)
        ]
        seconds = sum(timed([ctx.docker, "run", "-d", *argv]) for argv in argvs)
        run_cmd([ctx.docker, "rm", "-f", *names])
        if volumes:
            run_cmd([ctx.docker, "volume", "rm", "-f", *volumes.values()])
        return seconds

    runs = {
        f"claude-cage start ({kind})": cage_start,
        f"docker run -d ({kind} session)": lambda: raw(session_info),
    }
    if companion_info is not None:
        runs[f"docker run -d x2 ({kind} companion + session)"] = lambda: raw(
            companion_info, session_info
        )
    samples = paired(runs, ctx.reps)
    for label, values in samples.items():
        result.rows.append(Row(NAME, label, values))
    labels = list(samples)
    for floor in labels[1:]:
        values = paired_ratios(samples[labels[0]], samples[floor])
        result.ratios.append(
            Ratio(NAME, labels[0], floor, values, target if floor == labels[1] else None)
        )


def run(ctx) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    for kind, image, flags, target in KINDS:
        if not ctx.image_exists(image):
            result.notes.append(f"{kind}: skipped, image {image} is not built.")
            continue
        run_kind(ctx, result, kind, flags, target)
    result.notes.append(
        "Sessions keep their default data volume (persist). Raw floors create their volumes "
        "in `docker run` too (--mount), and drop published ports. The raw floor's flags come "
        "from a real session's `docker inspect`, seccomp profile included."
    )
    return result
