"""What `merge` and `apply` would write into the user's working tree is bounded by
review_max_size: a pack of a few kilobytes can name one blob of zeros (deflated to
almost nothing) under a thousand paths, and a checkout writes it once per path."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from claude_cage import hostgit
from claude_cage.errors import BadInput
from claude_cage.operations import review

MIB = 1024**2


def _git(repo: Path, *args: str, input: bytes | None = None) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=u", "-c", "user.email=u@x", "-C", str(repo), *args],
        input=input, capture_output=True, check=True,
    )  # fmt: skip
    return done.stdout.decode().strip()


def one_blob_under_many_paths(repo: Path, paths: int, size: int) -> tuple[str, str]:
    """(the base commit, a commit on it whose tree names one blob of `size` zeros under
    `paths` paths, plus a small file)."""
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "commit", "-q", "--allow-empty", "-m", "base")
    base = _git(repo, "rev-parse", "HEAD")
    blob = _git(repo, "hash-object", "-w", "--stdin", input=b"\0" * size)
    small = _git(repo, "hash-object", "-w", "--stdin", input=b"hello\n")
    lines = [f"100644 blob {blob}\tcopy{i}" for i in range(paths)]
    lines.append(f"100755 blob {small}\trun.sh")
    tree = _git(repo, "mktree", input="\n".join(lines).encode() + b"\n")
    tip = _git(repo, "commit-tree", tree, "-p", base, "-m", "work")
    return base, tip


def test_a_blob_is_counted_once_per_path(tmp_path: Path) -> None:
    base, tip = one_blob_under_many_paths(tmp_path / "proj", paths=5, size=MIB)
    repo = hostgit.find_repo(str(tmp_path / "proj"))
    with hostgit.quarantine(repo, base, base, tmp_path) as incoming:
        incoming.tip = tip
        assert incoming.written_size(base) == 5 * MIB + len("hello\n")
        assert incoming.written_size(tip) == 0


@pytest.mark.parametrize("verb", ["merge", "apply"])
def test_a_change_writing_more_than_review_max_size_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, verb: str
) -> None:
    base, tip = one_blob_under_many_paths(tmp_path / "proj", paths=3, size=MIB)
    repo = hostgit.find_repo(str(tmp_path / "proj"))
    cfg = SimpleNamespace(values={"review_max_size": "2m", "review_timeout": 120})
    monkeypatch.setattr(review, "load_config", lambda *_args: cfg)
    with hostgit.quarantine(repo, base, base, tmp_path) as incoming:
        incoming.tip = tip
        with pytest.raises(BadInput, match=f"refusing to {verb}: .* writes 3 MiB") as refused:
            review._not_too_big(SimpleNamespace(), "web", incoming, base, verb)
        assert "review_max_size" in refused.value.message
        cfg.values["review_max_size"] = "4m"
        review._not_too_big(SimpleNamespace(), "web", incoming, base, verb)  # within it
