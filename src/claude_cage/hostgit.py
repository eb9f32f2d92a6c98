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
import fcntl
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from claude_cage import commit_text, processes
from claude_cage.bounds import Bounds
from claude_cage.errors import BadInput, CageError, file_error

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


# Where the user's git configuration is: the only GIT_* variables kept (the others,
# such as GIT_DIR or GIT_INDEX_FILE, would point claude-cage's git elsewhere).
CONFIG_LOCATION = ("GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM", "GIT_CONFIG_NOSYSTEM")


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k in CONFIG_LOCATION}
    env.update(LC_ALL="C", GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0")
    env.update(extra or {})
    return env


# What git may allocate (RLIMIT_DATA) while it reads the session's objects: a pack of a
# few kilobytes can hold a delta that expands to gigabytes, and git holds every delta's
# result, and every commit and tree, whole in memory (only plain blobs are streamed).
MEMORY_OVERHEAD = 256 * 1024**2


def memory_cap(max_size: int) -> int:
    """The memory git may take reading a session's work of at most `max_size` bytes
    (review_max_size): an object and the base it is made from, plus git's own."""
    return 2 * max_size + MEMORY_OVERHEAD


def _argv(repo: Path | str, args: Iterable[str], memory: int | None = None) -> list[str]:
    """git in `repo`; with `memory`, under that RLIMIT_DATA (set by the shell that execs
    it, so it holds from git's first allocation; its children inherit it)."""
    argv = ["git", "-C", str(repo), *args]
    if memory is None:
        return argv
    return ["/bin/sh", "-c", 'ulimit -d "$0" && exec "$@"', str(max(1, memory // 1024)), *argv]


def out_of_memory(stderr: bytes) -> bool:
    """Whether git stopped at its memory cap (xmalloc's and zlib's words for it)."""
    return b"Out of memory" in stderr or b"out of memory" in stderr


def git(
    repo: Path | str,
    *args: str,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
    check: bool = True,
    memory: int | None = None,
) -> subprocess.CompletedProcess[bytes]:
    run = subprocess.run(_argv(repo, args, memory), input=input, capture_output=True, env=_env(env))
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


def identity(repo: Path) -> dict[str, str]:
    """The user's git identity in `repo` (`name`, `email`: what git config gives), for
    the commits made for them; empty where git has none (or the repository is gone).
    Control characters are left out: the values go on a command line in the session."""
    found = {}
    for key in ("name", "email"):
        run = subprocess.run(
            ["git", "-C", str(repo), "config", "--get", f"user.{key}"],
            capture_output=True,
            env=_env(),
            check=False,
        )
        value = run.stdout.decode(errors="replace").strip()
        if run.returncode == 0 and value and value.isprintable() and len(value) <= 256:
            found[key] = value
    return found


def find_repo(path: str) -> Repo:
    """The repository holding `path`, checked to be one a session can clone."""
    where = Path(os.path.expanduser(path))
    if not where.is_dir():
        raise BadInput(f"--clone {path}: no such directory", "give a directory in a git repository")
    probe = git(where, "rev-parse", "--is-bare-repository", check=False)
    if b"dubious ownership" in probe.stderr:
        # git names the directory to trust (the top of the repository, or its .git)
        named = re.search(rb"safe\.directory (\S[^\n]*)", probe.stderr)
        top = named.group(1).decode(errors="replace").strip() if named else str(where)
        raise BadInput(
            f"--clone {path}: git refuses a repository another user owns",
            f"run claude-cage as its owner, or trust it in your git configuration: "
            f"git config --global --add safe.directory {shlex.quote(top)}",
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


@contextlib.contextmanager
def repo_lock(repo: Repo, locks: Path) -> Iterator[None]:
    """Hold `repo`'s lock while a session's work goes into it (fetch, merge, apply):
    two at once take turns instead of the second failing on git's index.lock. An
    flock in `locks`, named after the repository's object directory (its worktrees
    share one); it waits, and Ctrl-C ends the wait."""
    key = hashlib.sha256(str(repo.objects).encode()).hexdigest()[:16]
    path = locks / f"repo-{key}.lock"
    try:
        locks.mkdir(mode=0o700, parents=True, exist_ok=True)
        handle = open(path, "a")  # noqa: SIM115
    except OSError as exc:
        raise file_error(exc, path) from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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


# Taking a snapshot only reads the repository: its `git add` runs no hook
# (post-index-change) and no fsmonitor (a command, or the daemon it would start) that
# the repository's config (or one it includes) names, with command-line strength.
# Filter drivers still run: they decide the content (git-lfs's pointers).
SNAPSHOT_RUNS_NOTHING = {
    "GIT_CONFIG_COUNT": "2",
    "GIT_CONFIG_KEY_0": "core.fsmonitor",
    "GIT_CONFIG_VALUE_0": "false",
    "GIT_CONFIG_KEY_1": "core.hooksPath",
    "GIT_CONFIG_VALUE_1": "/dev/null",
}
SNAPSHOT_PREFIX, INCOMING_PREFIX = "cage-snapshot-", "cage-incoming-"
ABANDONED_AFTER = 3600  # seconds: a scratch directory named by no pid, once this old


def _scratch_dir(prefix: str, where: Path | None) -> tempfile.TemporaryDirectory[str]:
    """A temporary directory in `where` (the data directory's incoming/, not a /tmp that
    may be memory), named by this process: what a kill leaves, `gc` finds and removes
    once the process is gone (abandoned_scratch)."""
    if where is not None:
        try:
            where.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise file_error(exc, where) from None
    return tempfile.TemporaryDirectory(prefix=f"{prefix}{os.getpid()}-", dir=where)


def abandoned_scratch(where: Path) -> list[Path]:
    """The snapshot and quarantine directories in `where` whose process is gone."""
    found = []
    with contextlib.suppress(OSError):
        for entry in where.iterdir():
            if not entry.name.startswith((SNAPSHOT_PREFIX, INCOMING_PREFIX)):
                continue
            pid = entry.name.split("-")[2]
            if pid.isdigit():
                if processes.gone(int(pid)):
                    found.append(entry)
                continue
            with contextlib.suppress(OSError):  # an older claude-cage's: by its age
                if time.time() - entry.lstat().st_mtime > ABANDONED_AFTER:
                    found.append(entry)
    return sorted(found)


@contextlib.contextmanager
def snapshot(repo: Repo, scratch: Path | None = None) -> Iterator[Snapshot]:
    """Pack HEAD, the index and the working tree, writing nothing into the repository
    (the pack goes in `scratch`, see _scratch_dir)."""
    with _scratch_dir(SNAPSHOT_PREFIX, scratch) as tmp:
        scratch = Path(tmp)
        (scratch / "objects").mkdir()
        (scratch / "pack").mkdir()
        index = scratch / "index"
        if repo.index.exists():
            shutil.copyfile(repo.index, index)
        env = {
            **IDENTITY,
            **SNAPSHOT_RUNS_NOTHING,
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


FILE_MODES = (b"100644", b"100755", b"120000")  # what a checkout writes as a file or link


@dataclass
class Quarantine:
    """The session's objects, checked, in a temporary object directory beside the repo's."""

    repo: Repo
    base: str  # the user's HEAD when the session started
    start: str  # what the session started from: base plus the uncommitted work
    tip: str  # all of the session's work
    objects: Path
    memory: int | None = None  # what each git reading the objects may allocate (memory_cap)

    @property
    def env(self) -> dict[str, str]:
        return {
            "GIT_OBJECT_DIRECTORY": str(self.objects),
            "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(self.repo.objects),
        }

    def git(
        self, *args: str, check: bool = True, input: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        return git(self.repo.top, *args, env=self.env, check=check, input=input, memory=self.memory)

    def receive(self, tip: str, pack: Iterable[bytes], bounds: Bounds | None = None) -> None:
        """Index the session's thin pack with full checks as it arrives (never held
        whole); refuse anything malformed, and a pack without the commit `tip`."""
        if not SHA.match(tip):
            raise CageError("the session sent no valid commit id", "see 'claude-cage logs NAME'")
        self.tip = tip
        _index_pack(self, pack, bounds)
        if self.git("cat-file", "-e", f"{tip}^{{commit}}", check=False).returncode != 0:
            raise BadInput(
                "refusing the session's work: it does not hold the commit it named",
                "inspect it inside the session ('claude-cage shell NAME')",
            )
        if self.git("cat-file", "-e", f"{self.start}^{{commit}}", check=False).returncode != 0:
            self.start = self.base  # the session dropped its starting point: use the base

    def unsafe_commit(self) -> commit_text.Unsafe | None:
        """The first of the session's new commits (since the base) whose header or
        message holds a character that would act on a terminal, if any."""
        env, top, cap = _env(self.env), self.repo.top, self.memory
        pipe, quiet = subprocess.PIPE, subprocess.DEVNULL
        with (
            subprocess.Popen(_argv(top, ["rev-list", self.tip, f"^{self.base}"], cap),
                             stdout=pipe, stderr=quiet, env=env) as revs,
            subprocess.Popen(_argv(top, ["cat-file", "--batch"], cap),
                             stdin=revs.stdout, stdout=pipe, stderr=quiet, env=env) as batch,
        ):  # fmt: skip
            assert revs.stdout is not None and batch.stdout is not None
            revs.stdout.close()  # cat-file's now: rev-list sees its end if cat-file stops
            try:
                return _first_unsafe(batch.stdout)
            finally:
                batch.kill()
                revs.kill()

    def changed_paths(self, since: str) -> list[str]:
        out = self.git("diff", "--no-renames", "--name-only", "-z", since, self.tip).stdout
        return [p for p in out.decode(errors="replace").split("\0") if p]

    def written_size(self, since: str) -> int:
        """The bytes a checkout of the session's change since `since` writes: the size of
        each file it adds or changes, counted once per path (a pack may name one blob of
        zeros, which it carries in a few kilobytes, under a thousand paths)."""
        raw = self.git("diff-tree", "-r", "--no-renames", "-z", since, self.tip).stdout
        entries = raw.split(b"\0")[0::2]  # ":OLDMODE NEWMODE OLD NEW STATUS", then a path
        ids = [
            fields[3]
            for fields in (entry.split() for entry in entries)
            if len(fields) == 5 and fields[1] in FILE_MODES
        ]
        if not ids:
            return 0
        sizes = self.git("cat-file", "--batch-check=%(objectsize)", input=b"\n".join(ids) + b"\n")
        return sum(int(size) for size in sizes.stdout.split() if size.isdigit())

    def _diff_args(self, stat: bool = False, binary: bool = False) -> list[str]:
        """What the session changed since its start. No external diff, no textconv: no
        program the change could select runs."""
        args = ["diff", "--no-ext-diff", "--no-textconv", "--no-color"]
        args += ["--stat"] if stat else []
        args += ["--binary", "--full-index"] if binary else []
        return [*args, self.start, self.tip]

    def diff(self, stat: bool = False) -> Iterator[bytes]:
        """The diff as it comes from git, never held whole (the objects may expand to
        far more than the pack that carried them)."""
        with (
            tempfile.TemporaryFile() as errors,
            subprocess.Popen(
                _argv(self.repo.top, self._diff_args(stat=stat), self.memory),
                stdout=subprocess.PIPE, stderr=errors, env=_env(self.env),
            ) as run,
        ):  # fmt: skip
            assert run.stdout is not None
            try:
                while chunk := os.read(run.stdout.fileno(), 1 << 16):
                    yield chunk
            finally:
                if run.poll() is None:
                    run.kill()
            if run.wait() != 0:
                errors.seek(0)
                why = errors.read(4096).decode(errors="replace").strip().splitlines()
                last = why[-1] if why else f"exit {run.returncode}"
                raise GitFailed(f"git diff failed: {last}")

    def apply(self) -> subprocess.CompletedProcess[bytes]:
        """`git apply` of the whole change to the working tree, through a file beside
        the quarantined objects (git writes it; it is never in this process's memory).
        git apply applies all of it or nothing."""
        patch = self.objects.parent / "change.patch"
        self.git(*self._diff_args(binary=True)[:-2], f"--output={patch}", self.start, self.tip)
        return git(
            self.repo.top, "apply", "--whitespace=nowarn", str(patch), check=False,
            memory=self.memory,
        )  # fmt: skip

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
def quarantine(
    repo: Repo, base: str, start: str, scratch: Path | None = None, memory: int | None = None
) -> Iterator[Quarantine]:
    """A temporary object directory for the session's work (in `scratch`, the data
    directory, rather than a /tmp that may be memory); `Quarantine.receive` fills it.
    Every git that reads it may allocate at most `memory` (memory_cap)."""
    if not SHA.match(base) or not SHA.match(start):
        raise CageError("the session's record holds no valid base commit")
    if git(repo.top, "cat-file", "-e", f"{base}^{{commit}}", check=False).returncode != 0:
        raise CageError(
            f"the session's base commit {base[:12]} is no longer in {repo.top}",
            "it was pruned (git gc after a rewrite?); the work stays in the session",
        )
    with _scratch_dir(INCOMING_PREFIX, scratch) as tmp:
        objects = Path(tmp) / "objects"
        (objects / "pack").mkdir(parents=True)
        yield Quarantine(repo, base, start, "", objects, memory)


def _index_pack(q: Quarantine, pack: Iterable[bytes], bounds: Bounds | None) -> None:
    """`git index-pack --stdin --strict` fed chunk by chunk; killed at the deadline."""
    with contextlib.ExitStack() as stack:
        errors = stack.enter_context(tempfile.TemporaryFile())
        proc: subprocess.Popen[bytes] | None = None
        for chunk in pack:
            if proc is None:
                proc = subprocess.Popen(
                    _argv(q.repo.top, ["index-pack", "--stdin", "--fix-thin", FSCK], q.memory),
                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors,
                    env=_env(q.env),
                )  # fmt: skip
                stack.callback(_reap, proc)
                if bounds is not None:
                    stack.enter_context(bounds.stopping(proc.kill))
            assert proc.stdin is not None
            try:
                proc.stdin.write(chunk)
            except BrokenPipeError:
                break  # index-pack gave up (or was stopped): its exit says why
        if proc is None:
            return  # nothing but the commit id: the tip is the base
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
        code = proc.wait()
        if bounds is not None:
            bounds.check()
        if code != 0:
            errors.seek(0)
            said = errors.read(64 * 1024)
            if q.memory is not None and out_of_memory(said):
                raise BadInput(
                    "refusing the session's work: its objects expand to more than "
                    f"{q.memory // 1024**2} MiB in memory (twice review_max_size, plus "
                    f"{MEMORY_OVERHEAD // 1024**2} MiB), which git would need to check them",
                    "if the work really holds files that big, raise review_max_size; else "
                    "inspect it inside the session ('claude-cage shell NAME')",
                )
            why = said.decode(errors="replace").strip().splitlines()
            raise BadInput(
                "refusing the session's work: its objects failed git's checks"
                + (f" ({why[-1][:200]})" if why else ""),
                "inspect it inside the session ('claude-cage shell NAME')",
            )


def _reap(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    with contextlib.suppress(OSError):
        if proc.stdin is not None:
            proc.stdin.close()
    proc.wait()


def _first_unsafe(batch: IO[bytes]) -> commit_text.Unsafe | None:
    """Read `git cat-file --batch` answers ("<id> commit <size>", the object, LF)."""
    while header := batch.readline(200):
        parts = header.split()
        if len(parts) != 3 or parts[1] != b"commit":
            continue  # "<id> missing": nothing to read
        commit, size = parts[0].decode(), int(parts[2])
        scanner = commit_text.Scanner()
        while size > 0:
            chunk = batch.read(min(size, 1 << 16))
            if not chunk:
                return None
            size -= len(chunk)
            found = scanner.feed(chunk, final=size == 0)
            if found is not None:
                return commit_text.Unsafe(commit, *found)
        batch.read(1)  # the LF after the object
    return None
