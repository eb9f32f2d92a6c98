"""A read-write mounted repository's git: the session commits into a git directory of its
own, and nothing it writes is read by the host's git as config, hooks or commands.

Git takes what it runs from the git directory and from the files and directories that
directory names: `config` and `config.worktree`, `hooks/`, `commondir`, `worktrees/*`,
`modules/*`, the index (whose gitlinks send `git status` into other repositories), the
rebase and sequencer state (`exec` lines), and config includes and `core.hooksPath`,
which can name files anywhere. `.git` cannot be read-only in part: git writes every file
there through a lock file created beside it, so a session that can commit can create
any new name in it. So, inside the session:

- each git directory below a mount (a `.git` directory, or one a `.git` file names
  inside the mount) is covered by the session's own copy, kept in the session's data
  directory (`HOME/<target>`): its config, hooks, refs, index and logs, with its objects
  read through `objects/info/alternates` from the host's, which is bound read-only at
  `/cage/git/<target>`. The agent's commits, branches and stashes land in the copy; the
  host's git directory stays as it was.
- every gitlink in the host's index (a submodule) is pinned: its `.git` file is bound
  read-only, and the directory of one without a `.git` (not initialized) too, so the
  agent cannot give `git status` a repository to recurse into.
- config includes and `core.hooksPath` that point into a mount are bound read-only; an
  include of a file that does not exist there is refused, as the agent could create it.
- a `.git` directory that is no git directory is read-only, and a mount inside a
  repository gets an empty one at its top: git's discovery passes over it, and the
  agent cannot put a `.git` of its own where the host's git would find it first.
- every path bound or made below a mount passes Plan.host_path: inside the mount, with
  no symbolic link on the way (the engine would follow a session's link on the host).

See docs/SECURITY.md ("Mounted repositories") for the list and what is left.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from claude_cage.errors import BadInput, file_error
from claude_cage.record import Mount
from claude_cage.workdir import HOST_GIT_VIEW

HOST_VIEW = HOST_GIT_VIEW  # where the host's git directories are bound read-only inside
NOT_COPIED = {"objects", "worktrees", "lfs"}  # in a git directory: the host's, or not ours
MAX_NESTING = 8  # submodules of submodules


@dataclass
class Plan:
    """What one read-write mount needs: bind mounts, and the copies to make."""

    root: Path  # as the host resolves it (os.path.realpath)
    target: str
    home: Path
    binds: list[Mount] = field(default_factory=list)
    copies: list[tuple[Path, Path, str]] = field(default_factory=list)  # host, copy, view
    seen: set[Path] = field(default_factory=set)

    def inside(self, path: Path) -> str:
        relative = path.relative_to(self.root)
        return self.target if relative == Path() else f"{self.target}/{relative}"

    def contains(self, path: Path) -> bool:
        return path == self.root or self.root in path.parents

    def host_path(self, path: Path) -> Path:
        """The one place that turns a path the session may have written into a bind
        source or a place to create: path as the host resolves it, refused if it leaves
        the mount or if any step from the mount to it is a symbolic link (the engine and
        claude-cage follow links on the host, where the session's link could name
        anything). Steps that do not exist yet are left to make_dirs."""
        path = Path(os.path.normpath(path))
        hint = (
            f"remove the link, or the git setting or gitlink naming {path}, then start "
            "again; or mount the directory read-only (PATH:ro), or use --clone"
        )
        if not self.contains(path):
            raise BadInput(f"{path} lies outside the mount {self.root}", hint)
        here = self.root
        for part in path.relative_to(self.root).parts:
            here = here / part
            try:
                is_link = stat.S_ISLNK(os.lstat(here).st_mode)
            except FileNotFoundError:
                return path  # nothing below a missing step exists either
            except OSError as exc:
                raise file_error(exc, here) from None
            if is_link:
                raise BadInput(
                    f"{path} is reached through the symbolic link {here}: the host would "
                    "follow it, wherever a session pointed it",
                    hint,
                )
        return path

    def pin(self, path: Path, read_only: bool, source: Path | None = None) -> None:
        """Bind source (default: path itself) at path; the directories above it up to
        the mount over themselves, read-write (a mount point cannot be renamed or
        removed, so nothing can take the place of either)."""
        path = self.host_path(path)
        for step in reversed(path.relative_to(self.root).parents[:-1]):
            self.add(Mount(str(self.root / step), self.inside(self.root / step), False))
        self.add(Mount(str(source or path), self.inside(path), read_only))

    def add(self, mount: Mount) -> None:
        if all(m.target != mount.target for m in self.binds):
            self.binds.append(mount)


def git_read(*args: str) -> str:
    """The host's git, reading only: no fsmonitor, no hooks, any owner."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    try:
        run = subprocess.run(
            ["git", "-c", "safe.directory=*", "-c", "core.fsmonitor=false",
             "-c", "core.hooksPath=/dev/null", *args],
            capture_output=True, text=True, env=env, check=False,
        )  # fmt: skip
    except OSError:  # no git on this host: no git here to redirect either
        return ""
    return run.stdout if run.returncode == 0 else ""


def gitfile_target(dot_git: Path) -> Path | None:
    """The git directory a `.git` file names (relative to the file's directory)."""
    try:
        text = dot_git.read_text(errors="replace")
    except OSError:
        return None
    if not text.startswith("gitdir:"):
        return None
    return Path(os.path.normpath(dot_git.parent / text[len("gitdir:") :].strip()))


def gitlinks(worktree: Path) -> list[Path]:
    """The submodule paths in a worktree's index (mode 160000)."""
    found = []
    for entry in git_read("-C", str(worktree), "ls-files", "--stage", "-z").split("\0"):
        meta, _, path = entry.partition("\t")
        if meta.startswith("160000 "):
            found.append(worktree / path)
    return found


def add_repository(plan: Plan, worktree: Path, depth: int = 0) -> None:
    """A worktree with a `.git` entry: its git directory covered, its submodules pinned."""
    dot_git = worktree / ".git"
    if worktree in plan.seen or depth > MAX_NESTING:
        return
    plan.seen.add(worktree)
    if dot_git.is_symlink():
        raise BadInput(
            f"{dot_git} is a symbolic link: a session could point it at a git directory "
            "of its own, and the host's git would follow it",
            "mount it read-only (PATH:ro), use --clone, or replace the link with a file "
            "holding `gitdir: PATH`",
        )
    if not (dot_git.is_dir() or dot_git.is_file()):
        return
    if dot_git.is_file():
        plan.pin(dot_git, True)
        target = gitfile_target(dot_git)
        if target is not None and plan.contains(target):
            target = plan.host_path(target)
            if target.is_dir():
                cover(plan, target, worktree)
    elif not (dot_git / "HEAD").exists():  # not a git directory: it must not become one
        plan.pin(dot_git, True)
        return
    else:
        cover(plan, dot_git, worktree)
    for link in gitlinks(worktree):
        if not plan.contains(link):
            continue
        real = plan.host_path(link)
        if (real / ".git").exists() or (real / ".git").is_symlink():
            add_repository(plan, link, depth + 1)
        else:  # not initialized: nothing may appear there
            if not real.exists():
                make_dirs(plan, link, owner(worktree))
            if real.is_dir() and not real.is_symlink():
                plan.pin(link, True)


def make_dirs(plan: Plan, path: Path, uid_gid: tuple[int, int]) -> None:
    """Create path below the mount one step at a time, each step opened without following
    a symbolic link, so nothing is made outside the mount whatever the session put there."""
    fd = os.open(plan.root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in Path(os.path.normpath(path)).relative_to(plan.root).parts:
            try:
                os.mkdir(part, dir_fd=fd)
                os.chown(part, *uid_gid, dir_fd=fd, follow_symlinks=False)
            except FileExistsError:
                pass
            step = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = step
    except OSError as exc:
        raise file_error(exc, path) from None
    finally:
        os.close(fd)


def pin_root(plan: Plan) -> None:
    """A mount inside a repository (a subdirectory of it): an empty, read-only `.git` at
    the mount's top, which git's discovery passes over (not a git directory), so the
    agent cannot put one of its own where the host's git would find it first."""
    dot_git = plan.root / ".git"
    if os.path.lexists(dot_git) or not any((p / ".git").exists() for p in plan.root.parents):
        return
    try:
        dot_git.mkdir(mode=0o555)
        os.chown(dot_git, *owner(plan.root))
    except OSError as exc:
        raise file_error(exc, dot_git) from None
    plan.pin(dot_git, True)


def cover(plan: Plan, git_dir: Path, worktree: Path) -> None:
    """The host's git directory read-only at HOST_VIEW, the session's copy over it."""
    if any(git_dir == done or done in git_dir.parents for done, _, _ in plan.copies):
        return  # a submodule's, under a git directory already covered
    inside = plan.inside(git_dir)
    git_dir = plan.host_path(git_dir)
    view = HOST_VIEW + inside
    copy = plan.home / inside.lstrip("/")
    plan.copies.append((git_dir, copy, view))
    plan.add(Mount(str(git_dir), view, True))
    plan.pin(git_dir, False, source=copy)
    for config in [git_dir / "config", git_dir / "config.worktree"]:
        protect_config(plan, config, worktree)
    for config in module_configs(git_dir):  # a submodule's worktree: its core.worktree
        relative = git_read("config", "--file", str(config), "core.worktree").strip()
        protect_config(plan, config, Path(os.path.normpath(config.parent / relative)))


def module_configs(git_dir: Path) -> list[Path]:
    modules = git_dir / "modules"
    if not modules.is_dir() or modules.is_symlink():
        return []
    return sorted(p for p in modules.rglob("config") if (p.parent / "HEAD").is_file())


def protect_config(plan: Plan, config: Path, worktree: Path, depth: int = 0) -> None:
    """Includes and core.hooksPath of a host config that point into the mount: read-only;
    an include there that does not exist is refused (the agent could create it)."""
    if not config.is_file() or depth > MAX_NESTING:
        return
    text = git_read(
        "config", "--file", str(config), "--no-includes", "-z", "--get-regexp",
        r"^(include\.path|includeif\..*\.path|core\.hookspath)$",
    )  # fmt: skip
    for entry in filter(None, text.split("\0")):
        key, _, value = entry.partition("\n")
        path = Path(os.path.expanduser(value))
        # includes: relative to the including file; core.hooksPath: to the worktree
        path = config.parent / path if key.endswith(".path") else worktree / path
        path = Path(os.path.normpath(path))
        if not plan.contains(path) or any(
            c == path or c in path.parents for c, _, _ in plan.copies
        ):
            continue
        real = plan.host_path(path)
        if not real.exists():
            raise BadInput(
                f"the git config {config} names {path}, which does not exist: a session "
                f"mounting {plan.root} could create it, and the host's git would read it",
                f"create {path} (empty) or remove the setting (git config --unset {key}), "
                "then start again",
            )
        plan.pin(path, True)
        if key.endswith(".path"):
            protect_config(plan, real, worktree, depth + 1)


def owner(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_uid, info.st_gid


def make_copy(host: Path, copy: Path, view: str) -> None:
    """The session's git directory: the host's, less its objects (read through
    alternates from view) and linked worktrees. Kept once made: it is the session's."""
    if copy.exists():
        return
    partial = copy.with_name(copy.name + ".partial")
    try:
        shutil.rmtree(partial, ignore_errors=True)
        partial.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(host, partial, symlinks=True, ignore=_not_copied)
        for git_dir in [partial, *(p.parent for p in module_configs(partial))]:
            objects = git_dir / "objects"
            (objects / "info").mkdir(parents=True, exist_ok=True)
            (objects / "pack").mkdir(exist_ok=True)
            source = f"{view}/{git_dir.relative_to(partial)}/objects".replace("/./", "/")
            (objects / "info" / "alternates").write_text(source + "\n")
        uid, gid = owner(host)
        if os.geteuid() == 0:
            for path in [partial, *partial.rglob("*")]:
                os.lchown(path, uid, gid)
        partial.rename(copy)
    except OSError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise file_error(exc, exc.filename or copy) from None


def _not_copied(directory: str, names: list[str]) -> set[str]:
    here = Path(directory)
    skip = {n for n in names if n.endswith(".lock")}
    if (here / "HEAD").is_file():  # a git directory (the top one, or a submodule's)
        skip |= NOT_COPIED & set(names)
    for name in names:
        mode = os.lstat(here / name).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
            skip.add(name)  # fifos, sockets, devices: nothing git keeps
    return skip
