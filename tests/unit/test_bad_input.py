"""Every bad input is refused the same way: exit 2, one `error:` line and one `hint:`
line, no traceback, and nothing created. Each refusal happens before any engine call,
so the CLI runs in this process over a Context whose engine refuses every call: the
engine was never asked (not even to look), and the data directory is as it was. Only
the event log, kept outside it here, receives the failed start.

tests/integration/test_bad_input.py runs a few of these through the console script on
the real engine, and the refusals that need the engine's answer."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from claude_cage.context import Context
from claude_cage.eventlog.events import EventLog
from tests.conftest import Result
from tests.unit.fake_engine import EngineCalled, RefusingEngine
from tests.unit.inprocess import run_main, tree


@dataclass
class Refusals:
    """Runs the CLI in-process over a refusing engine, one Context per command."""

    capsys: pytest.CaptureFixture[str]
    monkeypatch: pytest.MonkeyPatch
    data_dir: Path
    events_db: Path
    engine: RefusingEngine

    def run(
        self, *args: str, env: dict[str, str] | None = None, input: str | None = None
    ) -> Result:
        with self.monkeypatch.context() as patch:
            for key, value in (env or {}).items():
                patch.setenv(key, value)
            events = EventLog(str(self.events_db), background_sync=False)
            ctx = Context(engine=self.engine, events=events)  # reads the environment now
            return run_main(self.capsys, patch, ctx, *args, input=input)

    def events(self, session: str) -> list[dict[str, Any]]:
        return EventLog(str(self.events_db), background_sync=False).query(session=session)

    def __call__(self, *args: str, name: str = "bad", env: dict[str, str] | None = None) -> str:
        """Run `start` with bad input and check the refusal; returns the error line."""
        before = tree(self.data_dir)
        argv = ["start", "--name", name, "--network", "none", "--detach", *args]
        result = self.run(*argv, env=env)
        assert result.code == 2, result.output
        lines = result.stderr.splitlines()
        assert len(lines) == 2, result.stderr
        assert lines[0].startswith("error: ") and lines[1].startswith("hint: "), result.stderr
        assert "Traceback" not in result.output and result.stdout == ""
        assert self.engine.calls == [], f"the engine was asked: {self.engine.calls}"
        assert tree(self.data_dir) == before, "the data directory changed"
        return lines[0]


@pytest.fixture
def refuse(
    config_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Refusals]:
    # Were anything to reach past the Context for an engine, it would find none.
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setenv("CAGE_CLAUDE_CONFIG", "off")
    for key in ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    yield Refusals(
        capsys, monkeypatch, tmp_path / "data", tmp_path / "events.sqlite3", RefusingEngine()
    )


def test_the_refusing_engine_refuses(refuse: Refusals) -> None:
    """The guard itself: a command that does ask the engine is caught."""
    with pytest.raises(EngineCalled):
        refuse.run("list")
    assert refuse.engine.calls == ["list_containers"]


@pytest.mark.parametrize("name", ["", "Bad", "-x", "a" * 64, "a/b", "a b"])
def test_bad_names(refuse: Refusals, name: str) -> None:
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
def test_forbidden_mounts(refuse: Refusals, mount: str, why: str) -> None:
    if mount.startswith("/var/lib/docker") and not Path("/var/lib/docker").exists():
        pytest.skip("no /var/lib/docker here")
    assert why in refuse("--mount", mount)


def test_home_and_its_ancestors(refuse: Refusals, tmp_path: Path) -> None:
    home = tmp_path / "home" / "user"
    (home / "project").mkdir(parents=True)
    for path in (home, home.parent, tmp_path):
        assert "home directory" in refuse("--mount", str(path), env={"HOME": str(home)})


def test_symlink_to_a_forbidden_path(refuse: Refusals, tmp_path: Path) -> None:
    link = tmp_path / "looks-harmless"
    link.symlink_to("/etc")
    assert "/etc" in refuse("--mount", str(link))


def test_nonexistent_mount(refuse: Refusals, tmp_path: Path) -> None:
    assert "no such file or directory" in refuse("--mount", str(tmp_path / "missing"))


def test_one_bad_mount_among_good_ones(refuse: Refusals, tmp_path: Path) -> None:
    (tmp_path / "a" / "src").mkdir(parents=True)
    (tmp_path / "b" / "src").mkdir(parents=True)
    refuse("--mount", str(tmp_path / "a"), "--mount", "/etc")
    refuse("--mount", str(tmp_path / "a/src"), "--mount", str(tmp_path / "b/src"))


@pytest.mark.parametrize("port", ["80", "0:80", "70000:80", "a:b", "127.0.0.1:80:80"])
def test_bad_ports(refuse: Refusals, port: str) -> None:
    assert "--port" in refuse("--port", port)


def test_port_with_host_network(refuse: Refusals) -> None:
    assert "--port" in refuse("--network", "host", "--port", "8080:80")


@pytest.mark.parametrize("inner", ["8888", "6080"])
def test_ports_the_companion_uses_are_refused(refuse: Refusals, inner: str) -> None:
    assert "companion" in refuse("--port", f"18000:{inner}")


@pytest.mark.parametrize("network", ["none", "host"])
def test_subscription_token_without_the_filtered_network(refuse: Refusals, network: str) -> None:
    token = "sk-ant-oat01-" + "t" * 40
    line = refuse("--network", network, env={"CLAUDE_CODE_OAUTH_TOKEN": token})
    assert f"--network {network} has none" in line and token not in line


@pytest.mark.parametrize(
    "env", ["ANTHROPIC_API_KEY=sk-ant-x", "CAGE_BRIDGES=x", "HOME=/tmp", "NOEQUALS", "1BAD=x"]
)
def test_bad_env(refuse: Refusals, env: str) -> None:
    line = refuse("--env", env)
    assert "--env" in line and "sk-ant-x" not in line


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--memory", "lots"), ("--memory", "0"), ("--memory", "4gb"), ("--memory", "1k"),
     ("--cpus", "0"), ("--pids", "5")],
)  # fmt: skip
def test_bad_limits(refuse: Refusals, flag: str, value: str) -> None:
    assert flag in refuse(flag, value)


def test_bad_allow_host(refuse: Refusals) -> None:
    assert "--allow-host" in refuse("--allow-host", "not a host!")


@pytest.mark.parametrize(
    ("text", "what"),
    [("memory: [unclosed\n", "YAML"), ("bogus: 1\n", "unknown key"),
     ("network: open\n", "network"), ("- a list\n", "mapping")],
)  # fmt: skip
def test_bad_config_file(refuse: Refusals, tmp_path: Path, text: str, what: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    line = refuse("--config", str(path))
    assert str(path) in line and what in line


def test_missing_config_file(refuse: Refusals, tmp_path: Path) -> None:
    assert "does not exist" in refuse("--config", str(tmp_path / "none.yaml"))


def test_bad_user_config_file(refuse: Refusals, config_dir: Path) -> None:
    user_file = config_dir / "config.yaml"
    user_file.write_text("pids: lots\n")
    assert str(user_file) in refuse()
    validate = refuse.run("config", "validate")
    assert validate.code == 2 and str(user_file) in validate.stderr
    assert refuse.engine.calls == []


def test_bad_environment_value(refuse: Refusals) -> None:
    assert "environment" in refuse(env={"CAGE_MEMORY": "lots"})


def test_bad_api_key_file(refuse: Refusals, tmp_path: Path) -> None:
    assert "--api-key-file" in refuse("--api-key-file", str(tmp_path / "nope"))
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert "empty" in refuse("--api-key-file", str(empty))


def test_usage_errors_are_one_line_and_a_hint(refuse: Refusals) -> None:
    result = refuse.run("start", "--network", "bogus")
    assert result.code == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and lines[1].startswith("hint: ")
    assert "Traceback" not in result.stderr and "Usage:" not in result.stderr
    assert refuse.engine.calls == [] and tree(refuse.data_dir) == {}


def test_a_failed_start_is_logged_under_its_name(refuse: Refusals) -> None:
    refuse("--mount", "/etc", name="logged")
    events = refuse.events("logged")
    assert [(e["key"], e["value"]["status"]) for e in events] == [("start:logged", "error")]


def test_key_set_on_a_missing_session_is_not_found(refuse: Refusals) -> None:
    result = refuse.run("key", "set", "no-such-session", input="")
    assert result.code == 3, result.output
    assert "Traceback" not in result.output
    assert refuse.engine.calls == [] and tree(refuse.data_dir) == {}
