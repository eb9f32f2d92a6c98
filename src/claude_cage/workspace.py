"""Host-side git for clone mode: the snapshot that goes into a session, and the work
that comes back out of it.

Into the session: `snapshot()` packs the user's HEAD (with its history) and the
uncommitted work without touching the host repository. New objects (the working tree's
blobs, a tree and commit for it) go to a temporary object directory that borrows the
repository's objects through GIT_ALTERNATE_OBJECT_DIRECTORIES, and the index is a copy.

Out of the session: the session sends a thin pack plus the commit it holds. That is data
from a hostile party, so `Quarantine` indexes it with `git index-pack --strict` (every
object fsck'ed, with tree entries such as `..` and `.git` made fatal) into a temporary
object directory, exactly as `git receive-pack` quarantines a push. Only `diff`, `fetch`,
`merge` and `apply` read it, and only `fetch` moves the checked pack into the repository.
No hook, config, attribute file or filter from the session crosses: only objects do.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from claude_cage.errors import BadInput, CageError

# Fixed identity for the commits claude-cage makes itself (never the user's config).
IDENTITY = {
    "GIT_AUTHOR_NAME": "claude-cage",
    "GIT_AUTHOR_EMAIL": "claude-cage@localhost",
    "GIT_COMMITTER_NAME": "claude-cage",
    "GIT_COMMITTER_EMAIL": "claude-cage@localhost",
    "GIT_AUTHOR_DATE": "@0 +0000",  # the same work always makes the same commit
    "GIT_COMMITTER_DATE": "@0 +0000",
}
# Tree entries git refuses to check out anyway; refusing them at the door says so early.
FSCK = "--strict=" + ",".join(
    f"{msg}=error"
    for msg in ("hasDot", "hasDotdot", "hasDotgit", "fullPathname", "nulInCommit", "badFilemode")
)
SHA = re.compile(r"^[0-9a-f]{40}$")


class GitFailed(CageError):
    """A git command failed; the message carries git's own last line."""


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(LC_ALL="C", GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0")
    env.update(extra or {})
    return env


def git(
    repo: Path | str,
    *args: str,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    run = subprocess.run(
        ["git", "-C", str(repo), *args], input=input, capture_output=True, env=_env(env)
    )
    if check and run.returncode != 0:
        why = run.stderr.decode(errors="replace").strip().splitlines()
        raise GitFailed(
            f"git {args[0]} failed: {why[-1] if why else 'exit ' + str(run.returncode)}"
        )
    return run


def _out(repo: Path | str, *args: str, env: dict[str, str] | None = None) -> str:
    return git(repo, *args, env=env).stdout.decode().strip()


@dataclass(frozen=True)
class Repo:
    top: Path  # the working tree's top directory
    objects: Path  # its object directory (shared by all worktrees)
    index: Path

    @property
    def name(self) -> str:
        return self.top.name


def find_repo(path: str) -> Repo:
    """The repository holding `path`, checked to be one a session can clone."""
    where = Path(os.path.expanduser(path))
    if not where.is_dir():
        raise BadInput(f"--clone {path}: no such directory", "give a directory in a git repository")
    probe = git(where, "rev-parse", "--is-bare-repository", check=False)
    if b"dubious ownership" in probe.stderr:
        raise BadInput(
            f"--clone {path}: git refuses a repository another user owns",
            "run claude-cage as the repository's owner (or add it to git's safe.directory)",
        )
    if probe.returncode != 0:
        raise BadInput(
            f"--clone {path}: not in a git repository",
            "use --mount for a directory that is not a git repository",
        )
    top_probe = git(where, "rev-parse", "--show-toplevel", check=False)
    if probe.stdout.strip() == b"true" or top_probe.returncode != 0:
        raise BadInput(
            f"--clone {path}: a bare repository (or a .git directory) has no working tree",
            "clone a checkout of it, e.g. 'git clone REPO DIR' then --clone DIR",
        )
    top = Path(top_probe.stdout.decode().strip()).resolve()
    if git(top, "rev-parse", "--verify", "-q", "HEAD", check=False).returncode != 0:
        raise BadInput(f"--clone {path}: the repository has no commit yet", "commit once first")
    objects = Path(_out(top, "rev-parse", "--path-format=absolute", "--git-path", "objects"))
    index = Path(_out(top, "rev-parse", "--path-format=absolute", "--git-path", "index"))
    return Repo(top, objects, index)


def check_branch(session: str) -> str:
    branch = f"cage/{session}"
    if git(".", "check-ref-format", "--branch", branch, check=False).returncode != 0:
        raise BadInput(
            f"session name {session!r} cannot name the git branch {branch}",
            "pick a --name without '..' and not ending in '.' or '.lock'",
        )
    return branch


@dataclass
class Snapshot:
    base: str  # the user's HEAD
    work: str  # a commit holding the working tree (== base when nothing is uncommitted)
    index: str  # a commit holding the user's index (== base when nothing is staged)
    pack: Path  # every object the three need, as one pack (its .idx beside it)
    tmp: Path = field(repr=False)


@contextlib.contextmanager
def snapshot(repo: Repo) -> Iterator[Snapshot]:
    """Pack HEAD, the index and the working tree, writing nothing into the repository."""
    with tempfile.TemporaryDirectory(prefix="cage-snapshot-") as tmp:
        scratch = Path(tmp)
        (scratch / "objects").mkdir()
        (scratch / "pack").mkdir()
        index = scratch / "index"
        if repo.index.exists():
            shutil.copyfile(repo.index, index)
        env = {
            **IDENTITY,
            "GIT_OBJECT_DIRECTORY": str(scratch / "objects"),
            "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(repo.objects),
            "GIT_INDEX_FILE": str(index),
        }
        base = _out(repo.top, "rev-parse", "--verify", "HEAD^{commit}", env=env)
        base_tree = _out(repo.top, "rev-parse", "HEAD^{tree}", env=env)
        # An index with conflicts has no tree: the staged state then is HEAD's.
        staged = git(repo.top, "write-tree", env=env, check=False)
        index_tree = staged.stdout.decode().strip() if staged.returncode == 0 else base_tree
        git(repo.top, "add", "-A", ".", env=env)  # the working tree, .gitignore honoured
        work_tree = _out(repo.top, "write-tree", env=env)

        def commit(tree: str, message: str) -> str:
            if tree == base_tree:
                return base
            return _out(repo.top, "commit-tree", tree, "-p", base, "-m", message, env=env)

        work = commit(work_tree, "Uncommitted work (working tree)")
        staged_commit = commit(index_tree, "Uncommitted work (index)")
        # pack-objects writes the pack and its index (so the session need not index it
        # again). --window=0: no delta search; packed objects are copied as they are.
        # Speed over size: the pack crosses a local socket once.
        run = subprocess.run(
            ["git", "-C", str(repo.top), "pack-objects", "--revs", "--window=0", "-q",
             str(scratch / "pack" / "pack")],
            input=f"{base}\n{work}\n{staged_commit}\n".encode(),
            capture_output=True,
            env=_env({**env, "GIT_CONFIG_PARAMETERS": "'pack.compression'='1'"}),
        )  # fmt: skip
        if run.returncode != 0:
            why = run.stderr.decode(errors="replace").strip()
            raise GitFailed(f"git pack-objects failed: {why}")
        pack = scratch / "pack" / f"pack-{run.stdout.decode().strip()}.pack"
        yield Snapshot(base, work, staged_commit, pack, scratch)


# --- the way back ---------------------------------------------------------------------


@dataclass
class Quarantine:
    """The session's objects, checked, in a temporary object directory beside the repo's."""

    repo: Repo
    base: str  # the user's HEAD when the session started
    start: str  # what the session started from: base plus the uncommitted work
    tip: str  # all of the session's work
    objects: Path

    @property
    def env(self) -> dict[str, str]:
        return {
            "GIT_OBJECT_DIRECTORY": str(self.objects),
            "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(self.repo.objects),
        }

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return git(self.repo.top, *args, env=self.env, check=check)

    def changed_paths(self, since: str) -> list[str]:
        out = self.git("diff", "--no-renames", "--name-only", "-z", since, self.tip).stdout
        return [p for p in out.decode(errors="replace").split("\0") if p]

    def diff(self, stat: bool = False, binary: bool = False) -> bytes:
        """What the session changed since its start. No external diff, no textconv: no
        program the change could select runs."""
        args = ["diff", "--no-ext-diff", "--no-textconv", "--no-color"]
        args += ["--stat"] if stat else []
        args += ["--binary", "--full-index"] if binary else []
        return self.git(*args, self.start, self.tip).stdout

    def migrate(self) -> None:
        """Move the checked packs into the repository (.pack first, then its .idx, which
        is what makes git see it, as receive-pack does)."""
        target = self.repo.objects / "pack"
        target.mkdir(exist_ok=True)
        for pack in sorted((self.objects / "pack").glob("*.pack")):
            for suffix in (".pack", ".idx"):
                source = pack.with_suffix(suffix)
                final = target / source.name
                if final.exists():
                    continue
                part = target / f".tmp-{source.name}"
                shutil.copyfile(source, part)
                os.chmod(part, 0o444)
                os.replace(part, final)


@contextlib.contextmanager
def quarantine(repo: Repo, base: str, start: str, tip: str, pack: bytes) -> Iterator[Quarantine]:
    """Index the session's thin pack with full checks; refuse anything malformed."""
    if not SHA.match(tip) or not SHA.match(base) or not SHA.match(start):
        raise CageError("the session sent no valid commit id", "see 'claude-cage logs NAME'")
    if git(repo.top, "cat-file", "-e", f"{base}^{{commit}}", check=False).returncode != 0:
        raise CageError(
            f"the session's base commit {base[:12]} is no longer in {repo.top}",
            "it was pruned (git gc after a rewrite?); the work stays in the session",
        )
    with tempfile.TemporaryDirectory(prefix="cage-incoming-") as tmp:
        objects = Path(tmp) / "objects"
        (objects / "pack").mkdir(parents=True)
        q = Quarantine(repo, base, start, tip, objects)
        if pack:
            run = git(
                repo.top, "index-pack", "--stdin", "--fix-thin", FSCK,
                env=q.env, input=pack, check=False,
            )  # fmt: skip
            if run.returncode != 0:
                why = run.stderr.decode(errors="replace").strip().splitlines()
                raise BadInput(
                    "refusing the session's work: its objects failed git's checks"
                    + (f" ({why[-1][:200]})" if why else ""),
                    "inspect it inside the session ('claude-cage shell NAME')",
                )
        if q.git("cat-file", "-e", f"{tip}^{{commit}}", check=False).returncode != 0:
            raise BadInput(
                "refusing the session's work: it does not hold the commit it named",
                "inspect it inside the session ('claude-cage shell NAME')",
            )
        if q.git("cat-file", "-e", f"{start}^{{commit}}", check=False).returncode != 0:
            q.start = base  # the session dropped its starting point: compare with the base
        yield q
