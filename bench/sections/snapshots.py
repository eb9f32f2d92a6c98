"""Kept state: `snapshot`, `fork` and `restore` of a session holding 1 GiB, against
`cp --sparse=always` of the same volume's image as the floor.

One project-less session (network none) gets 1 GiB of random bytes in its scratch
/workspace, a bounded volume (an ext4 image, quota.py), so the copy has 1 GiB to move
whatever the filesystem compresses or shares. Each repetition times, in a rotated order:
`snapshot` of the running session (frozen for the copy), `fork` of it (the copy and the
new session's start), `restore` of it to a snapshot taken at the start (a stop, the
copy, a start), and `cp --sparse=always` of its volume's image file; what each made is
removed right after, untimed. Targets: snapshot and fork at most 2 s.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path

from harness import Ratio, Row, SectionResult, paired, timed
from harness import run as run_cmd

NAME = "snapshots"
TITLE = "snapshot, fork, restore of a session holding 1 GiB; cp --sparse=always as the floor"
TARGET_SECONDS = 2.0


def run(ctx) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    images = {k: v for k, v in os.environ.items() if k.startswith("CAGE_IMAGE_")}
    env = {**ctx.ws.cage_env("snapshots"), **images}
    session = ctx.ws.session_name("s")
    ctx.start(env, session, "--network", "none")
    run_cmd([ctx.cage, "exec", session, "--", "sh", "-c",
         "head -c 1073741824 /dev/urandom > /workspace/big && sync"], env)  # fmt: skip
    volume = f"cage-scratch-{session}"
    image = Path(env["CAGE_DATA_DIR"]) / "volumes" / volume / "fs.img"
    base = ctx.ws.unique("base")
    run_cmd([ctx.cage, "snapshot", session, "--name", base], env)
    copies = ctx.ws.root / "snapshot-copies"
    copies.mkdir()

    def snapshot() -> float:
        snap = ctx.ws.unique("snap")
        seconds = timed([ctx.cage, "snapshot", session, "--name", snap], env)
        run_cmd([ctx.cage, "snapshot", "rm", snap], env)
        return seconds

    def fork() -> float:
        new = ctx.ws.session_name("f")
        seconds = timed([ctx.cage, "fork", session, new], env)
        ctx.destroy(env, new)
        return seconds

    def restore() -> float:
        return timed([ctx.cage, "restore", session, base], env)

    def floor() -> float:
        target = copies / "fs.img"
        seconds = timed(["cp", "--sparse=always", str(image), str(target)])
        target.unlink()
        return seconds

    runs = {
        "claude-cage snapshot (1 GiB, running)": snapshot,
        "claude-cage fork (1 GiB, running; with the new start)": fork,
        "claude-cage restore (1 GiB; stop, copy, start)": restore,
        "cp --sparse=always of the volume image (floor)": floor,
    }
    samples = paired(runs, ctx.reps)
    for label, values in samples.items():
        result.rows.append(Row(NAME, label, values))
    snap, forked, restored, base_copy = samples.values()
    for label, values in (("snapshot", snap), ("fork", forked), ("restore", restored)):
        ratios = [a / b for a, b in zip(values, base_copy, strict=True)]
        result.ratios.append(Ratio(NAME, label, "cp --sparse=always", ratios))
    verdicts = []
    for label, values in (("snapshot", snap), ("fork", forked)):
        median = statistics.median(values)
        verdict = "met" if median <= TARGET_SECONDS else "MISSED"
        verdicts.append(f"{label} {median:.2f} s, {verdict}")
    result.notes.append(
        f"Targets: snapshot and fork of 1 GiB at most {TARGET_SECONDS:g} s: "
        + "; ".join(verdicts) + "."
    )  # fmt: skip
    run_cmd([ctx.cage, "snapshot", "rm", base], env)
    ctx.destroy(env, session)
    return result
