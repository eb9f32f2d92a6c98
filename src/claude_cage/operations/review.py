"""Reviewing a clone-mode session's work and bringing it back: diff, fetch, merge, apply.

Each one exports the session's work (running or stopped) as a thin pack, checks it in
quarantine (`hostgit.quarantine`), and only then lets the host's git read it. What
reaches the user's repository is objects and one branch, `cage/NAME`; checkouts are
git's own (`git merge`, `git apply`), which never write through a symlink or outside
the working tree. A change to a `.gitattributes` or `.lfsconfig` file is refused by merge
and apply: attributes pick filters and drivers, programs the user's git would run on
checkout, and `.lfsconfig` tells one of them (git-lfs) which server to ask.

What the session sends is bounded (bounds.py: review_max_size, review_timeout) and
streamed, never held whole; fetch and merge refuse commits whose text would act on a
terminal (commit_text.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from claude_cage import hostgit, paths
from claude_cage.bounds import Bounds
from claude_cage.errors import BadInput, CageError
from claude_cage.operations import operation
from claude_cage.operations.clone import clone_meta, export, host_repo
from claude_cage.operations.inputs import StartOptions, load_config
from claude_cage.record import SessionRecord

if TYPE_CHECKING:
    from claude_cage.context import Context


@dataclass
class FetchResult:
    name: str
    branch: str
    tip: str
    base: str
    repo: str

    def event_details(self) -> dict[str, Any]:
        return {"branch": self.branch, "tip": self.tip, "repo": self.repo}


@dataclass
class ApplyResult:
    name: str
    repo: str
    paths: list[str] = field(default_factory=list)
    merged: bool = False  # merge: whether a merge happened (False: already up to date)

    def event_details(self) -> dict[str, Any]:
        return {"repo": self.repo, "paths": len(self.paths)}


@contextlib.contextmanager
def _incoming(ctx: Context, name: str) -> Iterator[hostgit.Quarantine]:
    """The session's work, checked, in quarantine: received within review_max_size
    and review_timeout (bounds.py), or not at all."""
    meta = clone_meta(ctx, name)
    repo = hostgit.find_repo(str(host_repo(meta)))
    assert meta.base  # clone_meta checked it
    engine = ctx.engine_for(name)
    scratch = paths.incoming_dir()
    with (
        Bounds.from_config(name, load_config(ctx, StartOptions()).values) as bounds,
        hostgit.quarantine(
            repo, meta.base, meta.start or meta.base, scratch, hostgit.memory_cap(bounds.max_size)
        ) as incoming,
    ):
        with export(ctx, engine, name, meta, bounds) as work:
            incoming.receive(work.tip, work.pack, bounds)
        yield incoming


def diff(ctx: Context, name: str, stat: bool = False) -> Iterator[bytes]:
    """Everything the session changed since it started: commits and uncommitted work,
    as chunks while git makes them (the work is fetched and checked on the first)."""
    with _incoming(ctx, name) as incoming:
        yield from incoming.diff(stat=stat)


def _branch(meta: SessionRecord, repo: hostgit.Repo) -> str:
    branch = meta.branch or f"cage/{meta.name}"
    current = hostgit.git(repo.top, "symbolic-ref", "-q", "HEAD", check=False)
    if current.stdout.decode().strip() == f"refs/heads/{branch}":
        raise BadInput(
            f"{branch} is checked out in {repo.top}: fetching would change your working tree",
            "switch to another branch first (git switch -), then fetch again",
        )
    return branch


def _no_unsafe_commit(name: str, incoming: hostgit.Quarantine) -> None:
    unsafe = incoming.unsafe_commit()
    if unsafe is not None:
        raise BadInput(
            f"refusing the session's work: {unsafe}, which git log would print to your "
            "terminal as it is (only newline and tab are let through)",
            f"reword it inside the session ('claude-cage shell {name}', then git commit "
            f"--amend or git rebase -i), or take the change without its commits: "
            f"'claude-cage apply {name}'",
        )


def _fetch(ctx: Context, name: str, incoming: hostgit.Quarantine) -> FetchResult:
    meta = clone_meta(ctx, name)
    branch = _branch(meta, incoming.repo)
    _no_unsafe_commit(name, incoming)
    incoming.migrate()
    hostgit.git(
        incoming.repo.top, "update-ref", "-m", f"claude-cage fetch {name}",
        f"refs/heads/{branch}", incoming.tip,
    )  # fmt: skip
    return FetchResult(name, branch, incoming.tip, incoming.base, str(incoming.repo.top))


@operation("fetch")
def fetch(ctx: Context, name: str) -> FetchResult:
    """Create or update the branch cage/NAME in the user's repository."""
    with _incoming(ctx, name) as incoming, _turn(incoming.repo):
        return _fetch(ctx, name, incoming)


def _turn(repo: hostgit.Repo) -> contextlib.AbstractContextManager[None]:
    """The repository to ourselves: fetches, merges and applies of any sessions into
    one repository take turns (each exports and checks its work in parallel first)."""
    return hostgit.repo_lock(repo, paths.locks_dir())


# Files a checkout reads to decide what runs on the session's content: attributes select
# filters (the user's git-lfs, say), and git-lfs takes its server's URL from .lfsconfig,
# so a smudge on the host would send requests (and what their URL carries) wherever the
# session says. Compared without case, as a case-insensitive filesystem opens them.
CHECKOUT_CONFIG = (".gitattributes", ".lfsconfig")


def _no_attributes(name: str, paths: list[str], verb: str) -> None:
    touched = [p for p in paths if p.rsplit("/", 1)[-1].casefold() in CHECKOUT_CONFIG]
    if touched:
        raise BadInput(
            f"refusing to {verb}: the session changed {', '.join(touched)}, which can make "
            "your git run filters on checkout, or send their requests elsewhere",
            f"review it ('claude-cage diff {name}'), then 'claude-cage fetch {name}' "
            "and merge the branch yourself",
        )


def _not_too_big(
    ctx: Context, name: str, incoming: hostgit.Quarantine, since: str, verb: str
) -> None:
    """The files a change writes into the user's working tree come to at most
    review_max_size: a small pack can name one huge, highly compressible blob under
    many paths."""
    limit = Bounds.from_config(name, load_config(ctx, StartOptions()).values).max_size
    written = incoming.written_size(since)
    if written > limit:
        raise BadInput(
            f"refusing to {verb}: the session's change writes {written >> 20} MiB of files "
            f"into your working tree, more than review_max_size ({limit >> 20} MiB)",
            f"see what it holds with 'claude-cage diff {name} --stat'; if it is meant, raise "
            "review_max_size",
        )


def _no_merge_in_progress(repo: hostgit.Repo) -> None:
    for ref in ("MERGE_HEAD", "CHERRY_PICK_HEAD", "REVERT_HEAD", "REBASE_HEAD"):
        if hostgit.git(repo.top, "rev-parse", "-q", "--verify", ref, check=False).returncode == 0:
            raise BadInput(
                f"{repo.top} has a {ref.split('_')[0].lower()} in progress",
                "finish it (git commit) or abort it (git merge --abort) first",
            )


@operation("merge")
def merge(ctx: Context, name: str) -> ApplyResult:
    """Fetch, then merge cage/NAME into the user's current branch."""
    meta = clone_meta(ctx, name)
    repo = hostgit.find_repo(str(host_repo(meta)))
    _no_merge_in_progress(repo)
    with _incoming(ctx, name) as incoming:
        changed = incoming.changed_paths(incoming.base)
        _no_attributes(name, changed, "merge")
        _not_too_big(ctx, name, incoming, incoming.base, "merge")
        with _turn(repo):
            _no_merge_in_progress(repo)  # again: one may have stopped while this waited
            fetched = _fetch(ctx, name, incoming)
            return _merge(name, repo, fetched, changed, incoming.memory)


def _merge(
    name: str, repo: hostgit.Repo, fetched: FetchResult, changed: list[str], memory: int | None
) -> ApplyResult:
    before = hostgit.git(repo.top, "rev-parse", "HEAD").stdout
    # The session's blobs are read as bounded in memory as when they were checked (a
    # plain blob is streamed then, but a three-way merge or rename search loads it).
    run = hostgit.git(
        repo.top, "merge", "--no-edit", "-m", f"Merge {fetched.branch}", fetched.branch,
        check=False, memory=memory,
    )  # fmt: skip
    said = (run.stdout + run.stderr).decode(errors="replace")
    if run.returncode != 0:
        if "would be overwritten" in said or "untracked working tree files" in said:
            raise BadInput(
                f"merging {fetched.branch} would overwrite your uncommitted changes in {repo.top}",
                "commit or stash them first (git stash), then merge again",
            )
        if "CONFLICT" in said:
            raise CageError(
                f"merging {fetched.branch} stopped with conflicts in {repo.top}",
                "resolve them and 'git commit', or 'git merge --abort'",
            )
        if "index.lock" in said:  # a git of the user's own (claude-cage's take turns)
            raise CageError(
                f"another git process is working in {repo.top}: merging {fetched.branch} "
                "did not start",
                "merge again once it is done; if none runs, remove its .git/index.lock",
            )
        last = said.strip().splitlines()[-1:] or [""]
        raise CageError(f"git merge {fetched.branch} failed: {last[0]}", "see 'git status'")
    after = hostgit.git(repo.top, "rev-parse", "HEAD").stdout
    return ApplyResult(name, str(repo.top), changed, merged=before != after)


@operation("apply")
def apply(ctx: Context, name: str) -> ApplyResult:
    """Apply the session's whole change to the user's working tree, uncommitted."""
    with _incoming(ctx, name) as incoming:
        paths = incoming.changed_paths(incoming.start)
        _no_attributes(name, paths, "apply")
        _not_too_big(ctx, name, incoming, incoming.start, "apply")
        if not paths:
            return ApplyResult(name, str(incoming.repo.top), [])
        # git apply refuses paths outside the tree and writes beyond a symlink; it
        # applies all of the patch or none of it.
        with _turn(incoming.repo):
            run = incoming.apply()
    if run.returncode != 0:
        why = run.stderr.decode(errors="replace").strip().splitlines()
        raise CageError(
            f"the session's change does not apply to {incoming.repo.top}: "
            + (why[0] if why else "git apply failed"),
            f"your files changed since the session started: use 'claude-cage merge {name}'",
        )
    return ApplyResult(name, str(incoming.repo.top), paths)
