"""Every bad input is refused the same way: exit 2, one `error:` line and one `hint:`
line, no traceback, and nothing created (no container, volume or metadata)."""

from __future__ import annotations

import functools
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Cage, Result, inspect, owned

pytestmark = pytest.mark.engine


Run = Callable[[list[str], dict[str, str]], Result]


def refused(
    cage: Cage, *args: str, name: str | None = None, env: dict | None = None,
    run: Run | None = None, existing: tuple[str, ...] = (),
) -> str:  # fmt: skip
    """Run `start` with bad input; check the refusal and that nothing was created (but
    the `existing` containers). Returns the error line."""
    name = name if name is not None else cage.name("bad")
    argv = ["start", "--name", name, "--network", "none", "--detach", *args]
    result = run(argv, env or {}) if run else cage(*argv, env=env)
    assert result.code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("error: ") and lines[1].startswith("hint: "), result.stderr
    assert "Traceback" not in result.output and result.stdout == ""
    assert owned(cage.owner()) == ([], [])
    sessions = cage.data_dir / "sessions"
    assert not sessions.exists() or not any(sessions.iterdir())
    if name and "/" not in name:
        for kind, objects in (
            ("container", [f"cage-{name}", f"companion-cage-{name}"]),
            ("volume", [f"cage-data-{name}", f"cage-scratch-{name}", f"cage-sock-{name}"]),
        ):
            found = subprocess.run(
                ["docker", kind, "inspect", "--format", "{{.Name}}", *objects],
                capture_output=True,
                text=True,
            ).stdout.split()
            assert [f.lstrip("/") for f in found] == [o for o in objects if o in existing]
    return lines[0]


@pytest.fixture
def refuse(
    cage_module: Cage, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., str]:
    """`refused`, running the CLI's entry point in this process: the same code as the
    console script without a Python start-up per case (the tests below marked
    `subprocess` run the real command)."""
    from claude_cage.cli import main

    def run(argv: list[str], env: dict[str, str]) -> Result:
        capsys.readouterr()
        with monkeypatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            patch.setattr(sys, "argv", ["claude-cage", *argv])
            try:
                main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return functools.partial(refused, cage_module, run=run)


# --- through the real console script -------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["--name", "Bad"], ["--mount", "/"], ["--memory", "lots"], ["--port", "80"]],
    ids=["name", "mount", "memory", "port"],
)
def test_subprocess(cage_module: Cage, args: list[str]) -> None:
    flag, value = args
    if flag == "--name":
        refused(cage_module, name=value)
    else:
        refused(cage_module, flag, value)


# --- each kind of bad input -----------------------------------------------------------


@pytest.mark.parametrize("name", ["", "Bad", "-x", "a" * 64, "a/b", "a b"])
def test_bad_names(refuse: Callable[..., str], name: str) -> None:
    assert "invalid session name" in refuse(name=name)


@pytest.mark.parametrize(
    ("mount", "why"),
    [
        ("/", "root of the filesystem"),
        ("/:ro", "root of the filesystem"),
        ("~", "home directory"),
        ("/etc", "system directory"),
        ("/etc/ssl:ro", "system directory"),
        ("/proc", "system directory"),
        ("/sys", "system directory"),
        ("/dev", "system directory"),
        ("/var/run/docker.sock", "Docker socket"),
        ("/run", "Docker socket"),
        ("/var/lib/docker", "system directory"),
        ("/var", "system directory"),
    ],
)
def test_forbidden_mounts(refuse: Callable[..., str], mount: str, why: str) -> None:
    if mount.startswith("/var/lib/docker") and not Path("/var/lib/docker").exists():
        pytest.skip("no /var/lib/docker here")
    assert why in refuse("--mount", mount)


def test_home_and_its_ancestors(refuse: Callable[..., str], tmp_path: Path) -> None:
    home = tmp_path / "home" / "user"
    (home / "project").mkdir(parents=True)
    for path in (home, home.parent, tmp_path):
        assert "home directory" in refuse("--mount", str(path), env={"HOME": str(home)})


def test_symlink_to_a_forbidden_path(refuse: Callable[..., str], tmp_path: Path) -> None:
    link = tmp_path / "looks-harmless"
    link.symlink_to("/etc")
    assert "/etc" in refuse("--mount", str(link))


def test_nonexistent_mount(refuse: Callable[..., str], tmp_path: Path) -> None:
    assert "no such file or directory" in refuse("--mount", str(tmp_path / "missing"))


def test_one_bad_mount_among_good_ones(refuse: Callable[..., str], tmp_path: Path) -> None:
    (tmp_path / "a" / "src").mkdir(parents=True)
    (tmp_path / "b" / "src").mkdir(parents=True)
    refuse("--mount", str(tmp_path / "a"), "--mount", "/etc")
    refuse("--mount", str(tmp_path / "a/src"), "--mount", str(tmp_path / "b/src"))


@pytest.mark.parametrize("port", ["80", "0:80", "70000:80", "a:b", "127.0.0.1:80:80"])
def test_bad_ports(refuse: Callable[..., str], port: str) -> None:
    assert "--port" in refuse("--port", port)


def test_port_with_host_network(refuse: Callable[..., str]) -> None:
    assert "--port" in refuse("--network", "host", "--port", "8080:80")


@pytest.mark.parametrize("network", ["none", "host"])
def test_subscription_token_without_the_filtered_network(
    refuse: Callable[..., str], network: str
) -> None:
    token = "sk-ant-oat01-" + "t" * 40
    line = refuse("--network", network, env={"CLAUDE_CODE_OAUTH_TOKEN": token})
    assert f"--network {network} has none" in line and token not in line


@pytest.mark.parametrize(
    "env", ["ANTHROPIC_API_KEY=sk-ant-x", "CAGE_BRIDGES=x", "HOME=/tmp", "NOEQUALS", "1BAD=x"]
)
def test_bad_env(refuse: Callable[..., str], env: str) -> None:
    line = refuse("--env", env)
    assert "--env" in line and "sk-ant-x" not in line


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--memory", "lots"), ("--memory", "0"), ("--memory", "4gb"), ("--memory", "1k"),
     ("--cpus", "0"), ("--pids", "5")],
)  # fmt: skip
def test_bad_limits(refuse: Callable[..., str], flag: str, value: str) -> None:
    assert flag in refuse(flag, value)


def test_bad_allow_host(refuse: Callable[..., str]) -> None:
    assert "--allow-host" in refuse("--allow-host", "not a host!")


@pytest.mark.parametrize(
    ("text", "what"),
    [("memory: [unclosed\n", "YAML"), ("bogus: 1\n", "unknown key"),
     ("network: open\n", "network"), ("- a list\n", "mapping")],
)  # fmt: skip
def test_bad_config_file(refuse: Callable[..., str], tmp_path: Path, text: str, what: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    line = refuse("--config", str(path))
    assert str(path) in line and what in line


def test_missing_config_file(refuse: Callable[..., str], tmp_path: Path) -> None:
    assert "does not exist" in refuse("--config", str(tmp_path / "none.yaml"))


def test_bad_user_config_file(refuse: Callable[..., str], cage_module: Cage) -> None:
    user_file = cage_module.config_dir / "config.yaml"
    user_file.write_text("pids: lots\n")
    try:
        assert str(user_file) in refuse()
        validate = cage_module("config", "validate")
        assert validate.code == 2 and str(user_file) in validate.stderr
    finally:
        user_file.unlink()


def test_bad_environment_value(refuse: Callable[..., str]) -> None:
    assert "environment" in refuse(env={"CAGE_MEMORY": "lots"})


def test_bad_api_key_file(refuse: Callable[..., str], tmp_path: Path) -> None:
    assert "--api-key-file" in refuse("--api-key-file", str(tmp_path / "nope"))
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert "empty" in refuse("--api-key-file", str(empty))


# --- names taken by containers that are not ours ---------------------------------------


def test_name_of_a_container_claude_cage_does_not_manage(refuse: Callable[..., str]) -> None:
    name = f"t{uuid.uuid4().hex[:6]}-foreign"
    container = f"cage-{name}"
    subprocess.run(
        ["docker", "create", "--name", container, "claude-cage-base:bookworm", "true"],
        check=True,
        capture_output=True,
    )
    try:
        before = inspect(container)["Id"]
        assert "not managed by claude-cage" in refuse(name=name, existing=(container,))
        assert inspect(container)["Id"] == before  # left alone
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True)


def test_name_of_another_data_dirs_session(cage_module: Cage, cage: Cage) -> None:
    """A session of another data directory is not ours to restart or replace."""
    name = f"t{uuid.uuid4().hex[:6]}-theirs"
    assert cage("start", "--name", name, "--network", "none", "--detach").code == 0
    before = inspect(f"cage-{name}")["Id"]
    theirs = (f"cage-{name}", f"cage-data-{name}", f"cage-scratch-{name}")
    line = refused(cage_module, name=name, existing=theirs)
    assert "another data directory" in line
    assert inspect(f"cage-{name}")["Id"] == before


def test_usage_errors_are_one_line_and_a_hint(cage) -> None:
    result = cage("start", "--network", "bogus")
    assert result.code == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and lines[1].startswith("hint: ")
    assert "Traceback" not in result.stderr and "Usage:" not in result.stderr


@pytest.mark.engine
def test_a_setting_the_engine_refuses_is_bad_input_and_leaves_nothing(cage) -> None:
    name = cage.name("cpus")
    result = cage("start", "--name", name, "--detach", "--network", "none", "--cpus", "200")
    assert result.code == 2, result.output
    assert "hint: " in result.stderr
    assert (
        subprocess.run(["docker", "inspect", f"cage-{name}"], capture_output=True).returncode != 0
    )
    assert not (cage.data_dir / "sessions" / name).exists()


@pytest.mark.parametrize("inner", ["8888", "6080"])
def test_ports_the_companion_uses_are_refused(cage, inner: str) -> None:
    result = cage("start", "--detach", "--network", "none", "--port", f"18000:{inner}")
    assert result.code == 2 and "companion" in result.stderr
    assert cage("list", "--json").json()["sessions"] == []


def test_key_set_on_a_missing_session_is_not_found(cage) -> None:
    result = cage("key", "set", "no-such-session", input="")
    assert result.code == 3, result.output


def test_a_failed_start_is_logged_under_its_name(cage) -> None:
    assert cage("start", "--name", "logged", "--mount", "/etc").code == 2
    events = cage("events", "--session", "logged", "--json").json()["events"]
    assert [(e["key"], e["value"]["status"]) for e in events] == [("start:logged", "error")]


@pytest.mark.engine
def test_commands_leave_namesakes_alone(cage, tmp_path) -> None:
    """A container named like a session but not ours (not claude-cage's, or another data
    directory's) is invisible: not found, and never stopped or removed."""
    name = cage.name("twin")
    foreign = f"cage-{name}"
    try:  # the namesake goes, even when it never started
        subprocess.run(
            ["docker", "create", "--name", foreign, "--label", "cage-test=1",
             "claude-cage-base:bookworm", "sleep", "60"],
            check=True,
            capture_output=True,
        )  # fmt: skip
        subprocess.run(["docker", "start", foreign], check=True, capture_output=True)
        for args in (
            ("stop", name),
            ("destroy", "--force", name),
            ("status", name),
            ("logs", name),
            ("exec", name, "--", "true"),
        ):
            result = cage(*args)
            assert result.code == 3, (args, result.output)
        assert inspect(foreign)["State"]["Running"]
    finally:
        subprocess.run(["docker", "rm", "-f", foreign], capture_output=True)
    # Another data directory's session is just as invisible.
    mine = cage.name("mine")
    assert cage("start", "--name", mine, "--detach", "--network", "none").code == 0
    other = {"CAGE_DATA_DIR": str(tmp_path / "other-data")}
    for args in (
        ("stop", mine),
        ("destroy", "--force", mine),
        ("exec", mine, "--", "true"),
        ("status", mine),
    ):
        assert cage(*args, env=other).code == 3, args
    assert inspect(f"cage-{mine}")["State"]["Running"]
