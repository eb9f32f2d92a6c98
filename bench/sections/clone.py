"""Clone mode: what `start --clone` adds to a plain start, for a repository of 10,000
files and 100 MiB, against `git clone --local` of the same repository as the floor.

The repository is made once: 10,000 files of 10 KiB of hex text in 100 directories, one
commit, packed (`git gc`, as a repository that has lived a while is), plus a few
uncommitted changes so the snapshot's working-tree path runs too. Each repetition runs
`start --detach --network none` with and without `--clone`, and `git clone --local` into
a fresh directory (hard links: the cheapest whole copy git can make), each removed
right after, untimed. The target: the paired difference clone - plain under 3 s.

Both starts run twice: with the default volume size limits (loop-mounted ext4 images,
quota.py; needs root) and with them off (workspace_size, data_size, socket_size 0), so
the limits' own cost at start shows as a paired difference too.
"""

from __future__ import annotations

import os
import shutil
import statistics
from pathlib import Path

from harness import Ratio, Row, SectionResult, paired, timed
from harness import run as run_cmd

NAME = "clone"
TITLE = "start --clone of a 10,000-file, 100 MiB repository; volume size limits"
FILES, DIRS, SIZE = 10_000, 100, 10 * 1024
TARGET_SECONDS = 3.0


def make_repo(root) -> None:
    root.mkdir(parents=True)
    for d in range(DIRS):
        (root / f"d{d:03}").mkdir()
    for i in range(FILES):
        text = os.urandom(SIZE // 2).hex()
        (root / f"d{i % DIRS:03}" / f"f{i:05}.txt").write_text(text)
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b"}  # fmt: skip
    steps = (["init", "-q"], ["add", "."], ["commit", "-qm", "bench"], ["gc", "-q"])
    for argv in steps:  # gc.auto=0: no background gc racing the explicit one
        run_cmd(["git", "-C", str(root), "-c", "gc.auto=0", *argv], env)
    (root / "d000" / "f00000.txt").write_text("changed\n")
    (root / "new.txt").write_text("untracked\n")


def run(ctx) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    repo = ctx.ws.root / "clone-repo"
    make_repo(repo)
    # The images this run tests (CAGE_TEST_TAG's, via tests.isolation) when set.
    images = {k: v for k, v in os.environ.items() if k.startswith("CAGE_IMAGE_")}
    env = {**ctx.ws.cage_env("clone"), **images}
    plain_env = {**ctx.ws.cage_env("clone-nolimits"), **images}
    config = Path(plain_env["CAGE_CONFIG_DIR"]) / "config.yaml"
    config.write_text("workspace_size: 0\ndata_size: 0\nsocket_size: 0\n")
    copies = ctx.ws.root / "clone-copies"
    copies.mkdir()

    def start(*flags: str, limits: bool = True) -> float:
        name = ctx.ws.session_name("c")
        use = env if limits else plain_env
        seconds = timed(
            [ctx.cage, "start", "--detach", "--network", "none", "--name", name, *flags], use
        )
        ctx.destroy(use, name)
        return seconds

    def git_clone() -> float:
        target = copies / ctx.ws.unique()
        seconds = timed(["git", "clone", "-q", "--local", str(repo), str(target)])
        shutil.rmtree(target)
        return seconds

    runs = {
        "claude-cage start --clone": lambda: start("--clone", str(repo)),
        "claude-cage start (plain)": lambda: start(),
        "git clone --local (floor)": git_clone,
        "claude-cage start --clone, no size limits": lambda: start(
            "--clone", str(repo), limits=False
        ),
        "claude-cage start (plain), no size limits": lambda: start(limits=False),
    }
    samples = paired(runs, ctx.reps)
    for label, values in samples.items():
        result.rows.append(Row(NAME, label, values))
    clone, plain, floor, clone_free, plain_free = samples.values()
    for label, with_limits, without in (
        ("size limits' cost at a plain start (paired)", plain, plain_free),
        ("size limits' cost at a --clone start (paired)", clone, clone_free),
    ):
        cost = [a - b for a, b in zip(with_limits, without, strict=True)]
        result.rows.append(Row(NAME, label, cost))
    extra = [c - p for c, p in zip(clone, plain, strict=True)]
    result.rows.append(Row(NAME, "--clone's extra time (clone - plain, paired)", extra))
    ratios = [e / f for e, f in zip(extra, floor, strict=True)]
    result.ratios.append(Ratio(NAME, "--clone's extra time", "git clone --local", ratios))
    median = statistics.median(extra)
    verdict = "met" if median < TARGET_SECONDS else "MISSED"
    result.notes.append(
        f"Target: --clone adds under {TARGET_SECONDS:g} s to a plain start: median "
        f"{median:.2f} s, {verdict}. The repository: {FILES} files, {FILES * SIZE // 2**20} MiB, "
        "packed, with one changed and one untracked file."
    )
    return result
