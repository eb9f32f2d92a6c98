"""A hostile session plants every redirect git honours in a `--mount`ed repository; the
owner's everyday git on the host then runs none of it (docs/SECURITY.md, "Mounted
repositories").

Each case: the host prepares a repository, a session mounts it read-write (as its owner,
uid 4242), the agent plants a redirect whose command would create a marker file outside
the mount, and the host's git runs `status`, `diff`, `log`, `commit`, `fetch`,
`checkout` and the commands the case adds. The marker must not appear. The host's git
runs with `safe.directory=*`, as the repository's owner would need nothing for it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Cage
from tests.integration.test_bindmounts import owned_dir, run_in
from tests.integration.workspace_helpers import GIT_ENV, git, make_repo

pytestmark = pytest.mark.engine

OWNER = 4242
INSIDE = "/workspace/proj"


def host_git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The owner's git on the host: failures are allowed, commands must not run."""
    return subprocess.run(
        ["git", "-c", "safe.directory=*", "-c", "protocol.file.allow=always", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
        timeout=60,
    )


def everyday(repo: Path) -> None:
    for args in (
        ["status"], ["diff"], ["diff", "--cached"], ["log", "-1", "-p"], ["add", "-u"],
        ["commit", "-qm", "host commit"], ["fetch", "-q", "origin"], ["checkout", "-q", "-b",
        "host-side"], ["stash"], ["stash", "pop"], ["status", "--ignore-submodules=none"],
    ):  # fmt: skip
        host_git(repo, *args)


def fsmonitor_config(marker: Path) -> str:
    return f'[core]\n\tfsmonitor = "touch {marker}; false"\n'


def evil_repo(path: str, marker: Path) -> str:
    """Shell: a repository at path (inside the session) whose config runs the marker."""
    return (
        f"mkdir -p {path} && git init -q {path} && git -C {path} config core.fsmonitor"
        f" 'touch {marker}; false' && printf '#!/bin/sh\\ntouch {marker}\\n' >"
        f" {path}/.git/hooks/pre-commit && chmod +x {path}/.git/hooks/pre-commit &&"
        f" git -C {path} -c user.name=a -c user.email=a@b commit -q --no-verify --allow-empty -m x"
    )


def commondir_plant(gitdir: str, common: str, marker: Path, store: str = "") -> str:
    """Shell: the issue's attack. gitdir/commondir names a directory of the agent's, with
    a config that runs the marker, its own hooks, and objects and refs linked back."""
    return (
        f"mkdir -p {common}/hooks && printf '[core]\\n\\trepositoryformatversion = 0\\n"
        f'\\tfsmonitor = "touch {marker}; false"\\n\' > {common}/config &&'
        f" printf '#!/bin/sh\\ntouch {marker}\\n' > {common}/hooks/pre-commit &&"
        f" chmod +x {common}/hooks/pre-commit &&"
        f" back=$(realpath --relative-to={common} {store or gitdir})"
        f" && ln -s $back/objects {common}/objects; ln -s $back/refs {common}/refs;"
        f" realpath --relative-to={gitdir} {common} > {gitdir}/commondir"
    )


def with_submodule(project: Path, tmp_path: Path, path: str) -> None:
    source = make_repo(tmp_path / f"source-{path.replace('/', '-')}")
    git(source, "commit", "-qam", "source")
    host_git(project, "submodule", "add", "-q", str(source), path).check_returncode()
    git(project, "commit", "-qm", f"submodule {path}")


def setup_plain(project: Path, tmp_path: Path) -> None:
    pass


def setup_worktree_config(project: Path, tmp_path: Path) -> None:
    git(project, "config", "core.repositoryformatversion", "1")
    git(project, "config", "extensions.worktreeConfig", "true")


def setup_linked_worktree(project: Path, tmp_path: Path) -> None:
    git(project, "worktree", "add", "-q", str(tmp_path / "linked"), "-b", "linked")


def setup_submodule(project: Path, tmp_path: Path) -> None:
    with_submodule(project, tmp_path, "sub")


def setup_deep_submodule(project: Path, tmp_path: Path) -> None:
    with_submodule(project, tmp_path, "a/b/c/deep")


def setup_uninitialized(project: Path, tmp_path: Path) -> None:
    with_submodule(project, tmp_path, "lib")
    host_git(project, "submodule", "deinit", "-q", "-f", "lib").check_returncode()
    assert (project / "lib").is_dir() and not (project / "lib" / ".git").exists()


def setup_include(project: Path, tmp_path: Path) -> None:
    (project / "team.gitconfig").write_text("[color]\n\tui = auto\n")
    git(project, "config", "include.path", "../team.gitconfig")
    git(project, "config", "includeIf.gitdir:/.path", "../team2.gitconfig")
    (project / "team2.gitconfig").write_text("")


def setup_hooks_path(project: Path, tmp_path: Path) -> None:
    (project / ".githooks").mkdir()
    git(project, "config", "core.hooksPath", ".githooks")


def setup_separate_gitdir(project: Path, tmp_path: Path) -> None:
    app = project / "app"
    (project / "meta").mkdir()
    git(project, "init", "-q", "--separate-git-dir", str(project / "meta" / "app.git"), "app")
    (app / "a.txt").write_text("a\n")
    git(app, "add", ".")
    git(app, "-c", "user.name=u", "-c", "user.email=u@e", "commit", "-qm", "app")


def setup_rebase(project: Path, tmp_path: Path) -> None:
    (project / "second.txt").write_text("2\n")
    git(project, "add", "second.txt")
    git(project, "commit", "-qm", "second")


Case = tuple[Callable[[Path, Path], None], Callable[[Path], str], Callable[[Path, Path], None]]

CASES: dict[str, Case] = {
    # .git/commondir moves the config and hooks lookup (setup.c: get_common_dir_noenv)
    "commondir": (
        setup_plain,
        lambda m: commondir_plant(f"{INSIDE}/.git", f"{INSIDE}/.cc", m),
        lambda repo, tmp: everyday(repo),
    ),
    # config.worktree, read when extensions.worktreeConfig is on
    "config.worktree": (
        setup_worktree_config,
        lambda m: f"printf '{fsmonitor_config(m)}' > .git/config.worktree",
        lambda repo, tmp: everyday(repo),
    ),
    # .git/worktrees/<id>/ is the git directory of a linked worktree outside the mount
    "worktrees": (
        setup_linked_worktree,
        lambda m: (
            commondir_plant(f"{INSIDE}/.git/worktrees/linked", f"{INSIDE}/.cw", m, f"{INSIDE}/.git")
            + f" && printf '{fsmonitor_config(m)}' > .git/worktrees/linked/config.worktree"
        ),
        lambda repo, tmp: everyday(tmp / "linked"),
    ),
    # a submodule's git directory under .git/modules, reached through sub/.git
    "modules": (
        setup_submodule,
        lambda m: (
            commondir_plant(f"{INSIDE}/.git/modules/sub", f"{INSIDE}/.cs", m)
            + f"; printf '{fsmonitor_config(m)}' > .git/modules/sub/config.worktree"
            f"; printf '{fsmonitor_config(m)}' > .git/modules/sub/config"
        ),
        lambda repo, tmp: (everyday(repo), everyday(repo / "sub")),
    ),
    # a gitlink the agent adds to the index, over a repository of its own
    "gitlink": (
        setup_plain,
        lambda m: (
            evil_repo("evil", m)
            + " && git update-index --add --cacheinfo 160000,$(git -C evil rev-parse HEAD),evil"
        ),
        lambda repo, tmp: everyday(repo),
    ),
    # an uninitialized submodule: its directory is empty, git status looks for .git there
    "uninitialized submodule": (
        setup_uninitialized,
        lambda m: (
            evil_repo("lib", m)
            + "; "
            + evil_repo("lib/inner", m)
            + f"; printf 'gitdir: {INSIDE}/.ev\\n' > lib/.git; mkdir -p .ev"
        ),
        lambda repo, tmp: everyday(repo),
    ),
    # a submodule deeper than the search for repositories: its .git file replaced
    "deep submodule": (
        setup_deep_submodule,
        lambda m: (
            "rm -rf a/b/c/deep/.git; "
            + evil_repo("a/b/c/deep", m)
            + "; rm -rf a/b/c/deep; "
            + evil_repo("a/b/c/deep", m)
            + "; mv a/b/c a/b/c2; mkdir -p a/b/c/deep; "
            + evil_repo("a/b/c/deep", m)
        ),
        lambda repo, tmp: everyday(repo),
    ),
    # config includes that name a file in the working tree
    "include": (
        setup_include,
        lambda m: (
            f"printf '{fsmonitor_config(m)}' >> team.gitconfig; "
            f"printf '{fsmonitor_config(m)}' > team2.gitconfig; "
            f"mv team.gitconfig t.bak; printf '{fsmonitor_config(m)}' > team.gitconfig"
        ),
        lambda repo, tmp: everyday(repo),
    ),
    # core.hooksPath in the working tree (as husky sets it)
    "hooksPath": (
        setup_hooks_path,
        lambda m: (
            f"printf '#!/bin/sh\\ntouch {m}\\n' > .githooks/pre-commit; "
            "chmod +x .githooks/pre-commit; "
            f"mv .githooks .gh2; mkdir .githooks; printf '#!/bin/sh\\ntouch {m}\\n' >"
            " .githooks/pre-commit; chmod +x .githooks/pre-commit"
        ),
        lambda repo, tmp: everyday(repo),
    ),
    # a worktree whose git directory is elsewhere inside the mount (--separate-git-dir)
    "separate gitdir": (
        setup_separate_gitdir,
        lambda m: (
            f"printf '{fsmonitor_config(m)}' >> meta/app.git/config; "
            + commondir_plant(f"{INSIDE}/meta/app.git", f"{INSIDE}/.ca", m)
        ),
        lambda repo, tmp: (everyday(repo / "app"), everyday(repo)),
    ),
    # a rebase left stopped with an `exec` line still to do
    "rebase todo": (
        setup_rebase,
        lambda m: (
            "git stash -q && git -c user.name=a -c user.email=a@b"
            " -c sequence.editor=\"sed -i '1i break'\""
            f" rebase -q -i --exec 'touch {m}' HEAD~1"
        ),
        lambda repo, tmp: (
            host_git(repo, "status"),
            host_git(repo, "rebase", "--continue"),
            host_git(repo, "cherry-pick", "--continue"),
            everyday(repo),
        ),
    ),
}


def mounted_project(tmp_path: Path, setup: Callable[[Path, Path], None]) -> Path:
    project = make_repo(tmp_path / "proj")
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(project, "remote", "add", "origin", str(origin))
    git(project, "push", "-q", "origin", "main")
    setup(project, tmp_path)
    owned_dir(project, OWNER)
    return project


@pytest.mark.parametrize("case", list(CASES))
def test_a_planted_redirect_never_runs_on_the_host(cage: Cage, tmp_path: Path, case: str) -> None:
    setup, plant, host = CASES[case]
    project = mounted_project(tmp_path, setup)
    marker = tmp_path / "marker"
    name = cage.name()
    started = cage("start", "--name", name, "--network", "none", "-d", "--mount", str(project))
    assert started.code == 0, started.output
    planted = cage("exec", name, "--", "sh", "-c", f"cd {INSIDE} && {{ {plant(marker)}; }}")
    assert not marker.exists(), f"the plant itself ran on the host? {planted.output}"
    host(project, tmp_path)
    assert not marker.exists(), f"{case}: the host's git ran the agent's command"


def test_a_subdirectory_mount_of_a_repository_gets_no_git_of_the_agents(
    cage: Cage, tmp_path: Path
) -> None:
    project = make_repo(tmp_path / "proj")
    src = owned_dir(project / "src", OWNER)
    marker = tmp_path / "marker"
    name = cage.name()
    started = cage("start", "--name", name, "--network", "none", "-d", "--mount", str(src))
    assert started.code == 0, started.output
    planted = cage("exec", name, "--", "sh", "-c", "cd /workspace/src && " + evil_repo(".", marker))
    assert not marker.exists(), planted.output
    for _ in range(2):  # and again after a restart
        everyday(src)
        assert not marker.exists(), "the host's git ran the agent's command"
        assert git(src, "rev-parse", "--show-toplevel").strip() == str(project)
        assert cage("stop", name).code == 0 and cage("start", "--name", name, "-d").code == 0
        cage("exec", name, "--", "sh", "-c", "cd /workspace/src && " + evil_repo(".", marker))


def include_missing(project: Path) -> str:
    git(project, "config", "include.path", "../local.gitconfig")
    return "local.gitconfig"


def hooks_path_missing(project: Path) -> str:
    git(project, "config", "core.hooksPath", ".husky/_")
    return ".husky/_"


def dot_git_symlink(project: Path) -> str:
    (project / ".git").rename(project / "real.git")
    (project / ".git").symlink_to("real.git")
    return "symbolic link"


@pytest.mark.parametrize("layout", [include_missing, hooks_path_missing, dot_git_symlink])
def test_a_layout_that_cannot_be_kept_apart_is_refused(
    cage: Cage, tmp_path: Path, layout: Callable[[Path], str]
) -> None:
    project = make_repo(tmp_path / "proj")
    named = layout(project)
    owned_dir(project, OWNER)
    refused = cage("start", "--name", cage.name(), "-d", "--mount", str(project))
    assert refused.code == 2, refused.output
    assert named in refused.stderr and "hint:" in refused.stderr
    assert "Traceback" not in refused.output


def test_the_agents_git_workflow_works_and_stays_in_the_session(cage: Cage, tmp_path: Path) -> None:
    project = mounted_project(tmp_path, setup_submodule)
    head = git(project, "rev-parse", "HEAD")
    name = cage.name()
    started = cage("start", "--name", name, "--network", "none", "-d", "--mount", str(project))
    assert started.code == 0, started.output
    out = run_in(
        cage, name,
        f"cd {INSIDE} && git status --porcelain && git config user.name agent"
        " && git add -A && git commit -qm agent && git checkout -q -b feature"
        " && echo more > more.txt && git stash -q -u && git stash list | wc -l"
        " && git stash pop -q && git add more.txt && git commit -qm more"
        " && git log --format=%s && git -C sub log --format=%s -1"
        " && git -C sub checkout -q -b sub-feature && git branch --show-current"
        " && git config core.fsmonitor 'echo agent-only' && echo done",
    )  # fmt: skip
    lines = [line for line in out.rstrip("\n").split("\n") if line != "Already up to date."]
    assert {" M unstaged.txt", "?? untracked.txt"} <= set(lines), out
    assert lines[-8:] == ["1", "more", "agent", "submodule sub", "first", "source",
                          "feature", "done"], out  # fmt: skip
    # The working tree is shared; the host's git directory is the host's own.
    assert (project / "more.txt").read_text() == "more\n"
    assert git(project, "rev-parse", "HEAD") == head
    assert "fsmonitor" not in (project / ".git" / "config").read_text()
    assert git(project, "branch", "--list", "feature") == ""
    # A restart keeps the session's history.
    assert cage("stop", name).code == 0
    assert cage("start", "--name", name, "-d").code == 0
    assert run_in(cage, name, f"cd {INSIDE} && git log --format=%s -1").strip() == "more"
    status = cage("status", name, "--json").json()["session"]
    assert {f"{INSIDE}/.git", f"{INSIDE}/sub/.git"} <= set(status["protections"]), status
    checks = {c["check"]: c for c in status["sandbox"]["checks"]}
    assert checks["mounts"]["ok"] and checks["mounts writable"]["ok"], checks


def host_read(outside: Path) -> str:
    """Shell, in a fresh repository `sub`: an include and core.hooksPath through links to
    a host file and a host directory outside the mount."""
    return (
        "mkdir sub && cd sub && git init -q && ln -s ../../secret leak"
        " && ln -s ../../hostdir updir && git config include.path ../leak"
        " && git config core.hooksPath updir"
    )


def host_write(outside: Path) -> str:
    """Shell: an include under a link to a host directory (its parents were bound rw)."""
    return (
        "mkdir sub3 && cd sub3 && git init -q && ln -s ../../hostdir homelink"
        " && git config include.path ../homelink/f"
    )


def root_mkdir(outside: Path) -> str:
    """Shell: a gitlink through a link to a host directory, which claude-cage would make."""
    return (
        "mkdir sub2 && cd sub2 && git init -q && git -c user.name=a -c user.email=a@b"
        f" commit -q --allow-empty -m x && ln -s {outside / 'victimroot'} esc"
        " && git update-index --add --cacheinfo 160000,$(git rev-parse HEAD),esc/newdir"
    )


@pytest.mark.parametrize("plant", [host_read, host_write, root_mkdir])
def test_links_a_session_plants_never_reach_outside_the_mount(
    cage: Cage, tmp_path: Path, plant: Callable[[Path], str]
) -> None:
    project = mounted_project(tmp_path, setup_plain)
    (tmp_path / "secret").write_text("host secret\n")
    (tmp_path / "hostdir").mkdir()
    (tmp_path / "hostdir" / "f").write_text("[color]\n")
    (tmp_path / "victimroot").mkdir()
    before = sorted(os.listdir(tmp_path / "hostdir"))
    name = cage.name()
    started = cage("start", "--name", name, "--network", "none", "-d", "--mount", str(project))
    assert started.code == 0, started.output
    run_in(cage, name, f"cd {INSIDE} && {plant(tmp_path)}")
    assert cage("stop", name).code == 0
    # the next session on the directory (a restart keeps the binds made before the plant)
    refused = cage("start", "--name", cage.name(), "-d", "--mount", str(project))
    assert refused.code == 2, refused.output
    assert "symbolic link" in refused.stderr and "hint:" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 2, refused.stderr
    assert "Traceback" not in refused.output
    assert not (tmp_path / "victimroot" / "newdir").exists()
    assert sorted(os.listdir(tmp_path / "hostdir")) == before
    assert (tmp_path / "hostdir" / "f").read_text() == "[color]\n"
