"""The host's own work while a session burns every core it can get.

A fixed CPU job on the host (a Python loop, a fraction of a second on a quiet core) is
timed with no session busy (the floor); while a session at the default limits runs one
busy loop per host core; and while a session given every core (`--cpus` = nproc, the
old default on a 2-core host) does the same. Ratios against the floor, paired per
repetition: how much slower the host's work gets.
"""

from __future__ import annotations

import os
import subprocess
import time

from harness import Ratio, Row, SectionResult, paired, paired_ratios, timed

NAME = "hostshare"
TITLE = "the host's work beside a busy session"
BURN_SECONDS = 3.0
SETTLE_SECONDS = 0.5  # for the loops to start before the host's job does
JOB = "sum(i * i for i in range(2_000_000))"


def run(ctx) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    cores = os.cpu_count() or 1
    env = ctx.ws.cage_env("hostshare")
    default, every = ctx.ws.session_name("hd"), ctx.ws.session_name("ha")
    ctx.start(env, default, "--network", "none")
    ctx.start(env, every, "--network", "none", "--cpus", str(cores))
    loops = " & ".join([f"timeout {BURN_SECONDS:g} sh -c 'while :; do :; done'"] * cores)
    job = [ctx.python, "-c", JOB]

    def beside(name: str):
        def measure() -> float:
            burn = subprocess.Popen(
                [ctx.cage, "exec", name, "--", "sh", "-c", f"{loops} & wait"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                time.sleep(SETTLE_SECONDS)
                return timed(job)
            finally:
                burn.wait(timeout=BURN_SECONDS + 60)

        return measure

    labels = {
        "host job, quiet": lambda: timed(job),
        f"host job, session at the default limits ({max(1, cores - 1)} cpu)": beside(default),
        f"host job, session with every core ({cores} cpu)": beside(every),
    }
    samples = paired(labels, ctx.reps)
    quiet = samples["host job, quiet"]
    for label, values in samples.items():
        result.rows.append(Row(NAME, label, values))
        if label != "host job, quiet":
            result.ratios.append(
                Ratio(NAME, label, "host job, quiet", paired_ratios(values, quiet))
            )
    result.notes.append(
        f"The session runs {cores} busy loop(s) (one per host core) for {BURN_SECONDS:g} s; "
        f"the host's job is `python3 -c '{JOB}'`, started {SETTLE_SECONDS:g} s into them."
    )
    return result
