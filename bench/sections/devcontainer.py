"""A dev container session: its first start (the project's image built, then the cage's
layer) and its second (the image found by its content key), against a start of the same
project with the stock image (`--no-devcontainer`).

The project is a git repository whose `.devcontainer/devcontainer.json` builds a
Dockerfile FROM the stock CLI image (Debian, and on every machine that runs the
benchmark) with one RUN step. Every repetition changes a build argument that step uses,
so the first start builds (the project's step and the cage's layer on it) and the
second, a new session of the same project, finds the image. Sessions: cli, network
none, no data volume, clone mode.
"""

from __future__ import annotations

import json
import subprocess

from harness import Ratio, Row, SectionResult, paired_ratios, timed
from harness import run as run_cmd

NAME = "devcontainer"
TITLE = "devcontainer: first start (build) and second start (cached) of a project's image"
FLAGS = ("--detach", "--network", "none", "--no-persist")


def make_project(ctx, image: str):
    project = ctx.ws.root / "devcontainer-project"
    (project / ".devcontainer").mkdir(parents=True)
    (project / "README").write_text("a project\n")
    (project / ".devcontainer" / "Dockerfile").write_text(
        f'FROM {image}\nUSER root\nARG NONCE\nRUN echo "$NONCE" > /etc/project-nonce\n'
    )
    git = ["git", "-C", str(project), "-c", "user.email=b@b", "-c", "user.name=b"]
    run_cmd([*git, "init", "-q"])
    run_cmd([*git, "add", "-A"])
    run_cmd([*git, "commit", "-qm", "project"])
    return project


def write_config(project, nonce: str) -> None:
    config = {
        "build": {"dockerfile": "Dockerfile", "args": {"NONCE": nonce}},
        "containerEnv": {"PROJECT": "bench"},
    }
    (project / ".devcontainer" / "devcontainer.json").write_text(json.dumps(config))


def run(ctx) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    env = ctx.ws.cage_env("devcontainer")
    cfg = ctx.config(env)
    project = make_project(ctx, cfg["image_cli"])
    reps = max(3, ctx.reps // 3)
    first, second, stock = [], [], []
    try:
        for rep in range(reps + 1):  # the first repetition warms the engine up, untimed
            write_config(project, f"{ctx.ws.unique('n')}-{rep}")
            names = [ctx.ws.session_name(f"dc{rep}{k}") for k in "abc"]
            start = [ctx.cage, "start", *FLAGS, "--clone", str(project)]
            t_first = timed([*start, "--name", names[0]], env)
            t_second = timed([*start, "--name", names[1]], env)
            t_stock = timed([*start, "--name", names[2], "--no-devcontainer"], env)
            for name in names:
                ctx.destroy(env, name)
            if rep:
                first.append(t_first)
                second.append(t_second)
                stock.append(t_stock)
    finally:
        out = subprocess.run([ctx.docker, "images", "--format", "{{.Repository}}:{{.Tag}}"],
                             capture_output=True, text=True).stdout.split()  # fmt: skip
        made = [i for i in out if i.startswith("claude-cage-dev-devcontainer-project")]
        if made:
            subprocess.run([ctx.docker, "rmi", "-f", *made], capture_output=True)
    labels = (
        "start, devcontainer: first (builds)",
        "start, devcontainer: second (cached)",
        "start, --no-devcontainer",
    )
    for label, samples in zip(labels, (first, second, stock), strict=True):
        result.rows.append(Row(NAME, label, samples, unit="s", scale=1.0))
    result.ratios.append(Ratio(NAME, labels[0], labels[2], paired_ratios(first, stock)))
    result.ratios.append(Ratio(NAME, labels[1], labels[2], paired_ratios(second, stock)))
    result.notes.append(
        "Each repetition changes a build argument of the project's Dockerfile, so its "
        "first start builds the project's step and the cage's layer; the second is a new "
        "session of the same project. Repetitions run one after another (sequential, not "
        "rotated): a cached start needs the build before it."
    )
    return result
