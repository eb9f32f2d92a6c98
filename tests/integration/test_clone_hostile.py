"""A hostile clone-mode session: it arms its copy with hooks, config, an fsmonitor,
filters, symlinks out of the repository and malformed trees. Nothing of it may run on
the host, and nothing may be written outside the user's repository."""

from __future__ import annotations

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
