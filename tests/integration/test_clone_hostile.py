"""A hostile clone-mode session: it arms its copy with hooks, config, an fsmonitor,
filters, symlinks out of the repository and malformed trees. Nothing of it may run on
the host, and nothing may be written outside the user's repository."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Cage
from tests.integration.test_clone import inside, start_clone
from tests.integration.workspace_helpers import fingerprint, git, make_repo

pytestmark = pytest.mark.engine

HOOKS = (
    "post-checkout", "post-merge", "pre-commit", "commit-msg", "post-commit",
    "reference-transaction", "pre-merge-commit", "prepare-commit-msg", "post-rewrite",
    "pre-auto-gc", "post-index-change", "fsmonitor-watchman",
)  # fmt: skip


def arm(cage: Cage, name: str, mark: Path) -> None:
    """Everything git would run, pointed at a marker file on the host. Inside the session
    the marker's directory does not exist, so there they fail quietly."""
    hooks = " && ".join(
        f"printf '#!/bin/sh\\ntouch {mark}-hook-{h} 2>/dev/null\\nexit 0\\n' > .git/hooks/{h}"
        f" && chmod +x .git/hooks/{h}"
        for h in HOOKS
    )
    inside(
        cage, name,
        f"{hooks}"
        f" && git config core.fsmonitor 'touch {mark}-fsmonitor 2>/dev/null; exit 0'"
        " && git config core.hooksPath .git/hooks"
        f" && git config filter.evil.smudge 'touch {mark}-smudge 2>/dev/null; cat'"
        " && git config filter.evil.clean cat"
        f" && git config diff.external 'touch {mark}-extdiff'"
        f" && git config core.pager 'touch {mark}-pager; cat'"
        f" && printf '[core]\\n\\tfsmonitor = touch {mark}-info\\n' > .git/info/config",
    )  # fmt: skip


def marks(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("pwned"))


def test_hooks_config_and_symlinks_stay_in_the_session(cage: Cage, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "proj")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "user work")
    outside = tmp_path / "outside"
    outside.mkdir()
    mark = tmp_path / "pwned"
    name = start_clone(cage, repo)
    arm(cage, name, mark)
    inside(
        cage, name,
        f"ln -s {outside} escape && ln -s {outside}/file link && ln -s ../../.. up"
        " && echo ok > plain.txt && git add -A && git commit -qm links"
        " && echo more >> plain.txt",
    )  # fmt: skip
    for command in (["diff", name], ["diff", name, "--stat"], ["fetch", name], ["merge", name]):
        run = cage(*command)
        assert run.code == 0, (command, run.output)
    assert (repo / "escape").is_symlink() and (repo / "plain.txt").read_text() == "ok\nmore\n"
    assert list(outside.iterdir()) == []
    # The session's hooks and config never reached the host repository.
    assert not [h for h in (repo / ".git/hooks").iterdir() if not h.name.endswith(".sample")]
    assert "evil" not in (repo / ".git/config").read_text()

    # A second session replaces the symlinks with a directory and a file: applied and
    # merged, they land inside the repository, never through the old links.
    second = start_clone(cage, repo)
    arm(cage, second, mark)
    inside(
        cage, second,
        "rm escape link up && mkdir escape up && echo x > escape/pwned && echo y > link"
        " && echo z > up/pwned",
    )  # fmt: skip
    assert cage("apply", second).code == 0
    assert (repo / "escape").is_dir() and (repo / "escape/pwned").read_text() == "x\n"
    assert not (repo / "link").is_symlink() and (repo / "link").read_text() == "y\n"
    assert list(outside.iterdir()) == [] and not (tmp_path / "pwned").exists()
    git(repo, "reset", "-q", "--hard")
    git(repo, "clean", "-qfd")
    assert cage("merge", second).code == 0
    assert (repo / "escape/pwned").read_text() == "x\n"
    assert list(outside.iterdir()) == []
    assert marks(tmp_path) == [], "something the session armed ran on the host"


def test_attributes_and_malformed_trees_are_refused(cage: Cage, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "proj")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "user work")
    mark = tmp_path / "pwned"
    # The user's own git has a filter; the session's .gitattributes would switch it on.
    git(repo, "config", "filter.evil.smudge", f"touch {mark}-host-smudge; cat")
    name = start_clone(cage, repo)
    arm(cage, name, mark)
    inside(cage, name, "echo '* filter=evil diff=evil' > .gitattributes && echo a > a.txt")
    before = fingerprint(repo)
    for command in ("merge", "apply"):
        run = cage(command, name)
        assert run.code == 2, run.output
        assert ".gitattributes" in run.stderr and "hint:" in run.stderr
    assert {k: v for k, v in fingerprint(repo).items() if not k.startswith(".git/")} == {
        k: v for k, v in before.items() if not k.startswith(".git/")
    }
    assert cage("fetch", name).code == 0  # a branch alone checks nothing out
    assert marks(tmp_path) == []

    for entry in ("..", ".git", "."):
        evil = start_clone(cage, repo)
        # A tree git itself would never write: hash-object --literally skips the checks.
        inside(
            cage, evil,
            "bash -c 'blob=$(echo pwned | git hash-object -w --stdin);"
            " raw=$(echo $blob | sed \"s/../\\\\\\\\x&/g\");"
            f" tree=$( {{ printf \"100644 {entry}\\\\0\"; printf \"$raw\"; }}"
            " | git hash-object -t tree --literally -w --stdin);"
            " c=$(git commit-tree $tree -p HEAD -m evil); git reset -q --soft $c'",
        )  # fmt: skip
        before = fingerprint(repo)
        for command in ("diff", "fetch", "merge", "apply"):
            run = cage(command, evil)
            assert run.code == 2, (entry, command, run.output)
            assert "failed git's checks" in run.stderr, run.stderr
        assert fingerprint(repo) == before, "refused objects must not reach the repository"
    assert marks(tmp_path) == []


# --- bounded review: what a session sends back is capped in size and time ------------

RSS_BOUND_KB = 200 * 1024  # the claude-cage process stays under 200 MB, whatever comes


@dataclass
class Bounded:
    code: int
    stderr: str
    peak_kb: int  # the highest resident size seen (VmHWM), in KiB


def run_bounded(cage: Cage, *args: str, env: dict[str, str] | None = None,
                timeout: float = 240) -> Bounded:  # fmt: skip
    """Run claude-cage, polling its resident size; past RSS_BOUND_KB it is killed (so a
    regression fails the test instead of exhausting the machine)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "claude_cage", *args], stdin=subprocess.DEVNULL,
            stdout=out, stderr=err, env={**cage.env, **(env or {})},
        )  # fmt: skip
        peak, deadline = 0, time.monotonic() + timeout
        while proc.poll() is None:
            with contextlib.suppress(OSError):
                status = Path(f"/proc/{proc.pid}/status").read_text()
                fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
                peak = max(peak, int(fields.get("VmHWM", "0 kB").split()[0]))
            if peak > RSS_BOUND_KB or time.monotonic() > deadline:
                proc.kill()
            time.sleep(0.01)
        err.seek(0)
        return Bounded(proc.wait(), err.read().decode(errors="replace"), peak)


def host_state(repo: Path) -> tuple[str, str, str, bool]:
    """What a refused review must leave as it was: refs, objects, status, no lock."""
    objects = git(repo, "count-objects", "-v")
    return (git(repo, "for-each-ref"), objects, git(repo, "status", "--porcelain"),
            (repo / ".git/index.lock").exists())  # fmt: skip


def session_marks(cage: Cage, name: str) -> str:
    return inside(cage, name, "ls .git | grep '^ran-' || true").strip()


def test_review_runs_nothing_the_clone_configures_and_stays_bounded(
    cage: Cage, tmp_path: Path
) -> None:
    """An fsmonitor (in the repository's and the global config), a clean filter (in
    .git/info/attributes) and a hook, each of which would pour gigabytes into the
    export's output. None of them runs; the host process stays under 200 MB."""
    repo = make_repo(tmp_path / "proj")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "user work")
    name = start_clone(cage, repo)
    flood = "head -c 3000000000 /dev/zero >&2"
    tame = "git -c core.fsmonitor=false -c filter.evil.clean=cat -c core.hooksPath=/dev/null"
    inside(
        cage, name,
        f"git config core.fsmonitor 'touch .git/ran-fsmonitor; {flood}; exit 1'"
        f" && git config --global core.fsmonitor 'touch .git/ran-global; {flood}; exit 1'"
        f" && git config filter.evil.clean 'touch .git/ran-clean; {flood}; cat'"
        " && git config filter.evil.required true"
        " && echo '* filter=evil' > .git/info/attributes"
        f" && printf '#!/bin/sh\\ntouch .git/ran-hook\\n{flood}\\n' > .git/hooks/post-index-change"
        " && chmod +x .git/hooks/post-index-change"
        f" && echo agent > agent.txt && {tame} add agent.txt && {tame} commit -qm agent"
        " && echo wip >> agent.txt"
        " && rm -f .git/ran-*",
    )  # fmt: skip
    for command in (["diff", name, "--stat"], ["diff", name], ["fetch", name], ["apply", name]):
        run = run_bounded(cage, *command)
        assert run.peak_kb < RSS_BOUND_KB, (command, run.peak_kb, run.stderr[-300:])
        assert run.code == 0, (command, run.stderr)
    assert (repo / "agent.txt").read_text() == "agent\nwip\n"
    git(repo, "reset", "-q", "--hard")
    git(repo, "clean", "-qfd")
    run = run_bounded(cage, "merge", name)
    assert run.code == 0 and run.peak_kb < RSS_BOUND_KB, (run.peak_kb, run.stderr)
    assert (repo / "agent.txt").read_text() == "agent\nwip\n"
    assert session_marks(cage, name) == "", "the export ran the session's git config"

    # Stopped: the export container reads the clone's volume, with the same result.
    assert cage("stop", name).code == 0
    run = run_bounded(cage, "diff", name, "--stat")
    assert run.code == 0 and run.peak_kb < RSS_BOUND_KB, (run.peak_kb, run.stderr)
    assert "agent.txt" in cage("diff", name, "--stat").stdout
    assert cage("start", name, "-d").code == 0
    assert session_marks(cage, name) == ""


# The session's HEAD names a branch that is a FIFO: whatever reads it waits for a writer.
STALL = "git symbolic-ref HEAD refs/heads/stall && mkfifo .git/refs/heads/stall"
# Outside the export's process group (setsid), the agent finds the stalled git and pours
# zeros into its stderr: the export's own stream, without end.
POUR = (
    "setsid -f sh -c 'while :; do for p in $(pgrep -x git); do [ -e /tmp/poured-$p ] || {"
    " touch /tmp/poured-$p; cat /dev/zero > /proc/$p/fd/2 & }; done; sleep 0.05; done'"
    " >/dev/null 2>&1 </dev/null"
)


def test_an_endless_stream_is_stopped_by_the_size_cap(cage: Cage, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "proj")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "user work")
    name = start_clone(cage, repo)
    inside(cage, name, f"echo work > work.txt && {STALL} && {POUR}")
    before = host_state(repo)
    small = {"CAGE_REVIEW_MAX_SIZE": "64m"}
    for command in (["diff", name, "--stat"], ["fetch", name], ["merge", name], ["apply", name]):
        run = run_bounded(cage, *command, env=small, timeout=120)
        assert run.peak_kb < RSS_BOUND_KB, (command, run.peak_kb)
        assert run.code == 1, (command, run.code, run.stderr[-500:])
        error = [line for line in run.stderr.splitlines() if line.startswith("error:")]
        assert len(error) == 1 and "more than 64m (review_max_size)" in error[0], run.stderr
        assert host_state(repo) == before, command
    # With the default cap (2g) the stream is cut there, and the process stays small.
    run = run_bounded(cage, "diff", name, "--stat", timeout=200)
    assert run.code == 1 and "more than 2g" in run.stderr, run.stderr[-500:]
    assert run.peak_kb < RSS_BOUND_KB, run.peak_kb
    assert host_state(repo) == before
    assert list((cage.data_dir / "incoming").iterdir()) == []


def test_a_stalled_export_is_stopped_by_the_time_limit(cage: Cage, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "proj")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "user work")
    name = start_clone(cage, repo)
    inside(cage, name, f"echo work > work.txt && {STALL}")
    before = host_state(repo)
    quick = {"CAGE_REVIEW_TIMEOUT": "3"}
    for command in (["diff", name, "--stat"], ["fetch", name], ["merge", name], ["apply", name]):
        started = time.monotonic()
        run = run_bounded(cage, *command, env=quick, timeout=60)
        assert run.code == 1, (command, run.code, run.stderr[-500:])
        error = [line for line in run.stderr.splitlines() if line.startswith("error:")]
        assert len(error) == 1 and "after 3 s (review_timeout)" in error[0], run.stderr
        assert time.monotonic() - started < 30
        assert host_state(repo) == before, command
    # Nothing of the export is left waiting in the session.
    assert inside(cage, name, "pgrep -x git || true").strip() == ""
    # Stopped, the export container stalls the same way, and is removed.
    assert cage("stop", name).code == 0
    run = run_bounded(cage, "fetch", name, env=quick, timeout=60)
    assert run.code == 1 and "review_timeout" in run.stderr, run.stderr
    assert host_state(repo) == before
    containers = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"name=cage-export-{name}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert containers.strip() == ""


# --- the operator's terminal: commit text with escape sequences -----------------------


def test_commits_with_control_characters_are_refused(cage: Cage, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "proj")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "user work")
    name = start_clone(cage, repo)
    before = host_state(repo)
    commits = {
        # an OSC 52 clipboard write in the message
        "message": "git commit -qm \"$(printf 'fix\\033]52;c;cm0gLXJmIH4=\\007done')\"",
        "author": "GIT_AUTHOR_NAME=\"$(printf 'ann\\033[2Jie')\" git commit -qm ok",
        "committer": "GIT_COMMITTER_NAME=\"$(printf 'bob\\rmallory')\" git commit -qm ok",
    }
    for field, commit in commits.items():
        inside(cage, name, f"echo {field} >> work.txt && git add work.txt && {commit}")
        sha = inside(cage, name, "git rev-parse HEAD").strip()
        for command in ("fetch", "merge"):
            run = cage(command, name)
            assert run.code == 2, (field, command, run.output)
            assert f"commit {sha[:12]}" in run.stderr and f"in its {field}" in run.stderr
            assert "\x1b" not in run.stderr and "hint:" in run.stderr, run.stderr
            assert host_state(repo) == before, (field, command)
        inside(cage, name, "git reset -q --hard HEAD~1")
    # Newline and tab are fine.
    inside(
        cage, name,
        "echo fine >> work.txt && git add work.txt"
        " && git commit -qm \"$(printf 'subject\\n\\n\\tindented body\\nline two')\"",
    )  # fmt: skip
    assert cage("fetch", name).code == 0
    assert cage("merge", name).code == 0
    assert (repo / "work.txt").read_text() == "fine\n"
