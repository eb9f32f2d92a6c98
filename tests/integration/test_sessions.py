"""The session lifecycle on the real engine: start, list, status, stop, start again,
destroy; exec; the data volume, --no-persist and --ephemeral; JSON output."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Cage, inspect, owned

pytestmark = [pytest.mark.engine, pytest.mark.podman]

GENERATED = re.compile(r"^[a-z]+-[a-z]+-[0-9a-f]{4}$")
SESSION_KEYS = {"name", "mode", "status", "network", "container", "created"}
DATA_DIR = "/home/claude/.claude"


def objects_of(cage: Cage, name: str) -> tuple[list[str], list[str]]:
    """The containers and volumes labelled as this data dir's session `name`."""
    containers, volumes = owned(cage.owner())
    mine = {f"cage-{name}", f"companion-cage-{name}"}
    mine |= {f"cage-{kind}-{name}" for kind in ("data", "sock", "scratch")}
    return [c for c in containers if c in mine], [v for v in volumes if v in mine]


def assert_gone(cage: Cage, name: str) -> None:
    assert objects_of(cage, name) == ([], [])
    assert not (cage.data_dir / "sessions" / name).exists()
    assert name not in [s["name"] for s in cage("list", "--json").json()["sessions"]]


def listed(cage: Cage, name: str) -> dict:
    [entry] = [s for s in cage("list", "--json").json()["sessions"] if s["name"] == name]
    return entry


def metadata_of(cage: Cage, name: str) -> dict[str, str]:
    text = (cage.data_dir / "sessions" / name / "metadata").read_text()
    return dict(line.split("=", 1) for line in text.splitlines())


def running(container: str) -> bool:
    return bool(inspect(container)["State"]["Running"])


@pytest.fixture(scope="module")
def shared(cage_module: Cage) -> str:
    """One running session (no network) for the tests that only read."""
    name = cage_module.name("shared")
    result = cage_module("start", "--name", name, "--network", "none", "--detach")
    assert result.code == 0, result.output
    return name


# --- the lifecycle --------------------------------------------------------------------


def test_lifecycle(cage: Cage) -> None:
    started = cage("start")  # no options: cli, filtered; not a TTY, so it returns at once
    assert started.code == 0, started.output
    name = started.stdout.strip()
    assert GENERATED.match(name), started.stdout

    info = inspect(f"cage-{name}")
    assert info["State"]["Running"] and info["Config"]["Hostname"] == f"cage-{name}"
    labels = info["Config"]["Labels"]
    assert labels["managed-by"] == "claude-cage"
    assert (labels["cage.session"], labels["cage.mode"], labels["cage.network"]) == (
        name,
        "cli",
        "filtered",
    )
    assert running(f"companion-cage-{name}")
    meta = metadata_of(cage, name)
    assert (meta["name"], meta["mode"], meta["status"], meta["container"]) == (
        name,
        "cli",
        "running",
        f"cage-{name}",
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["created"])

    entry = listed(cage, name)
    assert (entry["mode"], entry["status"], entry["network"]) == ("cli", "running", "filtered")
    assert entry["created"] == meta["created"]
    status = cage("status", name, "--json").json()["session"]
    assert status["status"] == "running" and status["sandbox"]["ok"] is True, status["sandbox"]
    text = cage("status", name)
    assert text.code == 0 and "sandbox: PASS" in text.stdout

    stopped = cage("stop", name)
    assert stopped.code == 0 and stopped.stdout.strip() == name
    assert not running(f"cage-{name}") and not running(f"companion-cage-{name}")
    assert listed(cage, name)["status"] == "stopped"
    assert metadata_of(cage, name)["status"] == "stopped"
    assert cage("status", name, "--json").json()["session"]["status"] == "stopped"

    again = cage("start", "--name", name)
    assert again.code == 0, again.output
    assert again.stdout.strip() == name and "restarted" in again.stderr
    assert running(f"cage-{name}") and running(f"companion-cage-{name}")
    assert listed(cage, name)["status"] == "running"
    assert metadata_of(cage, name)["created"] == meta["created"]

    refused = cage("destroy", name)  # running: needs --force
    assert refused.code == 2 and "error:" in refused.stderr
    assert running(f"cage-{name}")
    destroyed = cage("destroy", "--force", name)
    assert destroyed.code == 0 and destroyed.stdout.strip() == name
    assert_gone(cage, name)
    assert cage("status", name).code == 3


def test_restart_keeps_settings_and_data(cage: Cage, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "hello.txt").write_text("hi")
    name = cage.name("keep")
    first = cage(
        "start", "--name", name, "--network", "none", "--detach", "--mount", f"{project}:ro",
        "--memory", "256m", "--pids", "100", "--cpus", "1",
    )  # fmt: skip
    assert first.code == 0, first.output

    def settings() -> tuple:
        host = inspect(f"cage-{name}")["HostConfig"]
        binds = [
            (m["Source"], m["Destination"], m["RW"])
            for m in inspect(f"cage-{name}")["Mounts"]
            if m["Type"] == "bind" and m["Destination"] != "/etc/claude-code"
        ]
        return host["NetworkMode"], host["Memory"], host["PidsLimit"], host["NanoCpus"], binds

    expected = ("none", 256 * 1024**2, 100, 10**9, [(str(project), "/workspace/project", False)])
    assert settings() == expected
    write = cage("exec", name, "--", "sh", "-c", f"echo kept > {DATA_DIR}/marker")
    assert write.code == 0, write.output

    assert cage("stop", name).code == 0
    assert cage("start", "--name", name).code == 0
    assert settings() == expected
    assert cage("exec", name, "--", "cat", f"{DATA_DIR}/marker").stdout == "kept\n"
    assert cage("exec", name, "--", "cat", "/workspace/project/hello.txt").stdout == "hi"

    # Even when the container is removed behind our back, a start rebuilds it from
    # the metadata, and the login data is still in its volume.
    assert cage("stop", name).code == 0
    subprocess.run(["docker", "rm", f"cage-{name}"], check=True, capture_output=True)
    assert listed(cage, name)["status"] == "removed"
    assert metadata_of(cage, name)["status"] == "removed"
    assert cage("start", "--name", name).code == 0
    assert settings() == expected
    assert cage("exec", name, "--", "cat", f"{DATA_DIR}/marker").stdout == "kept\n"


def test_start_refuses_a_running_sessions_name(cage_module: Cage, shared: str) -> None:
    before = inspect(f"cage-{shared}")["Id"]
    result = cage_module("start", "--name", shared, "--network", "none", "--detach")
    assert result.code == 2 and "already running" in result.stderr
    assert f"claude-cage attach {shared}" in result.stderr
    assert inspect(f"cage-{shared}")["Id"] == before


def test_orphan_is_listed(cage: Cage) -> None:
    name = cage.name("orphan")
    assert cage("start", "--name", name, "--network", "none", "--detach").code == 0
    subprocess.run(["rm", "-r", str(cage.data_dir / "sessions" / name)], check=True)
    entry = listed(cage, name)
    assert entry["orphan"] is True and entry["status"] == "running"
    assert "(orphan)" in cage("list").stdout
    assert cage("destroy", "--force", name).code == 0
    assert_gone(cage, name)


def test_no_persist_has_no_data_volume(cage: Cage) -> None:
    name = cage.name("nopersist")
    result = cage("start", "--name", name, "--network", "none", "--no-persist", "--detach")
    assert result.code == 0, result.output
    assert objects_of(cage, name) == ([f"cage-{name}"], [])
    assert [m for m in inspect(f"cage-{name}")["Mounts"] if m["Type"] == "volume"] == []
    assert cage("destroy", "--force", name).code == 0


def test_ephemeral_removes_everything_at_stop(cage: Cage) -> None:
    name = cage.name("ephemeral")
    result = cage("start", "--name", name, "--ephemeral", "--detach")  # filtered: a companion
    assert result.code == 0, result.output
    containers, volumes = objects_of(cage, name)
    assert sorted(containers) == [f"cage-{name}", f"companion-cage-{name}"]
    assert sorted(volumes) == [f"cage-data-{name}", f"cage-scratch-{name}", f"cage-sock-{name}"]
    stopped = cage("stop", name)
    assert stopped.code == 0 and "removed" in stopped.stderr
    assert_gone(cage, name)


def test_stop_all(cage: Cage) -> None:
    names = [cage.name("all1"), cage.name("all2")]
    for name in names:
        assert cage("start", "--name", name, "--network", "none", "--detach").code == 0
    result = cage("stop", "--all")
    assert result.code == 0 and sorted(result.stdout.split()) == sorted(names)
    assert all(listed(cage, n)["status"] == "stopped" for n in names)


def test_network_host_warns(cage: Cage) -> None:
    name = cage.name("host")
    result = cage("start", "--name", name, "--network", "host", "--detach")
    assert result.code == 0, result.output
    assert re.search(r"^warning: .*host", result.stderr, re.MULTILINE)
    assert inspect(f"cage-{name}")["HostConfig"]["NetworkMode"] == "host"
    assert "warning" in cage("status", name).stderr


def test_unknown_session(cage: Cage) -> None:
    for command in (["status", "nope"], ["stop", "nope"], ["destroy", "nope"]):
        result = cage(*command)
        assert result.code == 3, (command, result.output)
        assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert cage("exec", "nope", "--", "true").code == 3


# --- exec -----------------------------------------------------------------------------


def test_exec_runs_claude_code(cage_module: Cage, shared: str) -> None:
    result = cage_module("exec", shared, "--", "claude", "--version")
    assert result.code == 0, result.output
    assert "(Claude Code)" in result.stdout


def test_exec_returns_the_exit_code(cage_module: Cage, shared: str) -> None:
    assert cage_module("exec", shared, "--", "sh", "-c", "exit 7").code == 7
    assert cage_module("exec", shared, "--", "false").code == 1
    missing = cage_module("exec", shared, "--", "no-such-command")
    assert missing.code not in (0, 1)


def test_exec_keeps_stdout_and_stderr_apart(cage_module: Cage, shared: str) -> None:
    result = cage_module("exec", shared, "--", "sh", "-c", "echo out; echo err >&2")
    assert (result.stdout, result.stderr) == ("out\n", "err\n")


def test_exec_passes_options_to_the_command(cage_module: Cage, shared: str) -> None:
    result = cage_module("exec", shared, "--", "ls", "-d", "--", "/workspace")
    assert result.code == 0 and result.stdout == "/workspace\n"


def test_exec_in_a_stopped_session(cage: Cage) -> None:
    name = cage.name("stopped")
    assert cage("start", "--name", name, "--network", "none", "--detach").code == 0
    assert cage("stop", name).code == 0
    result = cage("exec", name, "--", "true")
    assert result.code == 2 and "not running" in result.stderr and "hint:" in result.stderr


# --- JSON on real output --------------------------------------------------------------


def test_list_json_contract(cage_module: Cage, shared: str) -> None:
    payload = cage_module("list", "--json").json()
    assert payload["version"] == 1 and set(payload) == {"version", "sessions", "engines"}
    assert payload["engines"] == [{"name": "local", "reachable": True, "error": None}]
    entry = next(s for s in payload["sessions"] if s["name"] == shared)
    assert entry.keys() >= SESSION_KEYS
    assert (entry["mode"], entry["status"], entry["network"], entry["container"]) == (
        "cli",
        "running",
        "none",
        f"cage-{shared}",
    )


def test_status_json_contract(cage_module: Cage, shared: str) -> None:
    payload = cage_module("status", shared, "--json").json()
    assert payload["version"] == 1 and set(payload) == {"version", "session"}
    session = payload["session"]
    assert session.keys() >= SESSION_KEYS | {"sandbox"}
    entry = next(s for s in cage_module("list", "--json").json()["sessions"] if s["name"] == shared)
    assert {k: session[k] for k in SESSION_KEYS} == {k: entry[k] for k in SESSION_KEYS}
    assert session["sandbox"]["ok"] is True
    assert {c["check"] for c in session["sandbox"]["checks"]} >= {
        "read-only root",
        "capabilities",
        "no-new-privileges",
        "seccomp",
        "non-root user",
        "limits",
        "network policy",
        "inside",
    }


def test_start_json(cage: Cage) -> None:
    name = cage.name("json")
    payload = cage("start", "--name", name, "--network", "none", "--json").json()
    assert payload["version"] == 1 and payload["name"] == name
