"""The conventions a command-line user expects: shell completion (with session names),
a suggestion for a mistyped command, colour only on a terminal and never with NO_COLOR,
`config show` within 80 columns, `list`'s AGE, `status` values a person reads."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from claude_cage import metadata
from claude_cage.engine.answers import Network
from claude_cage.record import SessionRecord
from tests.unit.fake_engine import UnusedEngine


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    data, conf = tmp_path / "data", tmp_path / "config"
    conf.mkdir()
    base = {k: v for k, v in os.environ.items() if not k.startswith("CAGE_")}
    return {**base, "CAGE_DATA_DIR": str(data), "CAGE_CONFIG_DIR": str(conf)}


def run(env: dict[str, str], *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "claude_cage", *args],
        capture_output=True,
        text=True,
        env={**env, **extra},
        timeout=60,
    )


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_a_script_for_each_shell(env: dict[str, str], shell: str) -> None:
    result = run(env, "completion", shell)
    assert result.returncode == 0, result.stderr
    assert "_CLAUDE_CAGE_COMPLETE" in result.stdout
    assert run(env, "completion", "tcsh").returncode == 2


def completions(env: dict[str, str], words: str) -> list[str]:
    """Click's bash protocol lines, `type,value`, for `words`."""
    result = run(
        env,
        COMP_WORDS=words,
        COMP_CWORD=str(len(words.split()) - (0 if words.endswith(" ") else 1)),
        _CLAUDE_CAGE_COMPLETE="bash_complete",
    )
    return result.stdout.splitlines()


def complete(env: dict[str, str], words: str) -> list[str]:
    """What bash completion offers after `words` (the values alone)."""
    return [line.split(",", 1)[1] for line in completions(env, words) if "," in line]


def test_session_names_complete_for_commands_that_take_a_name(
    env: dict[str, str], tmp_path: Path
) -> None:
    store = metadata.SessionStore(tmp_path / "data" / "sessions")
    for name in ("web", "worker", "api"):
        store.save(SessionRecord(name=name, created="2026-11-29T10:00:00Z"))
    assert "attach" in complete(env, "claude-cage att")
    for words in ("claude-cage attach w", "claude-cage logs w", "claude-cage key set w"):
        assert sorted(complete(env, words)) == ["web", "worker"], words
    assert sorted(complete(env, "claude-cage stop ")) == ["api", "web", "worker"]


def test_clone_mount_and_key_file_complete_paths(env: dict[str, str]) -> None:
    # The shell lists the directories (`compgen -d`) when Click answers type "dir".
    assert completions(env, "claude-cage start --clone ./pro") == ["dir,./pro"]
    assert completions(env, "claude-cage start --mount ") == ["dir,"]
    assert completions(env, "claude-cage start --api-key-file k") == ["file,k"]


def test_a_mistyped_command_gets_a_suggestion(env: dict[str, str]) -> None:
    result = run(env, "lsit")
    assert result.returncode == 2
    assert "error: no such command 'lsit'; did you mean 'list'?" in result.stderr
    assert "did you mean 'status'" in run(env, "stauts").stderr
    far = run(env, "xyzzy")
    assert far.returncode == 2 and "did you mean" not in far.stderr


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_terminal_and_never_with_no_color(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from claude_cage.render import RED, colour

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert colour("error:", RED, Terminal()) == "\x1b[31merror:\x1b[0m"
    assert colour("error:", RED, io.StringIO()) == "error:"  # a pipe or a file
    monkeypatch.setenv("NO_COLOR", "1")
    assert colour("error:", RED, Terminal()) == "error:"


def test_errors_in_a_pipe_have_no_colour(env: dict[str, str]) -> None:
    assert run(env, "status", "nope").stderr.startswith("error: ")


def test_config_show_fits_80_columns(env: dict[str, str], tmp_path: Path) -> None:
    deep = tmp_path / ("a-rather-long-directory-name" * 3) / "config.yaml"
    deep.parent.mkdir(parents=True)
    hosts = " ".join(f"host{i}.example-with-a-long-name.com" for i in range(12))
    deep.write_text(f"allowed_hosts: [{', '.join(hosts.split())}]\nmemory: 2g\n")
    result = run(env, "config", "show", "--config", str(deep))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, max(lines, key=len)
    text = result.stdout
    assert "host11.example-with-a-long-name.com" in text  # wrapped, nothing lost
    assert "read_only_root" in text and "True" not in text  # true, not a Python repr


def test_age_reads_as_a_person_says_it() -> None:
    from claude_cage.cli.listing import age

    assert [age(s) for s in (5, 300, 7200, 86400, 3 * 86400)] == [
        "5 s", "5 min", "2 h", "1 day", "3 days",
    ]  # fmt: skip


def test_status_settings_are_human_and_fit_80_columns() -> None:
    from claude_cage.cli.sessions import settings_text

    text = settings_text(
        {
            "cpus": "2",
            "ephemeral": False,
            "ports": [[8080, 80]],
            "allowed_ports": [80, 443],
            "anthropic_upstream": "https://api.anthropic.com",
            "seccomp_profile": "default",
        }
    )
    assert "ephemeral=no" in text and "ports=8080:80" in text and "allowed_ports=80 443" in text
    assert "False" not in text and "[" not in text
    assert max(len(line) for line in text.splitlines()) <= 80


class Networks(UnusedEngine):
    """Just enough of an engine for the egress network's name change."""

    def __init__(self, legacy: Network | None) -> None:
        self.nets = {"cage-egress": legacy} if legacy is not None else {}
        self.removed: list[str] = []

    def network(self, name: str) -> Network | None:
        return self.nets.get(name)

    def remove_network(self, name: str) -> None:
        self.removed.append(name)
        del self.nets[name]

    def ensure_network(self, name: str, labels: dict) -> None:
        self.nets[name] = Network(name, labels)


def test_the_companions_network_is_cage_filtered_and_the_old_one_goes_when_unused() -> None:
    from claude_cage import config
    from claude_cage.operations.bringup import ensure_egress_network

    assert config.DEFAULTS["egress_network"] == "cage-filtered"
    ours = {"managed-by": "claude-cage"}
    unused = Networks(Network("cage-egress", ours))
    ensure_egress_network(unused, "cage-filtered")
    assert unused.removed == ["cage-egress"] and "cage-filtered" in unused.nets
    in_use = Networks(Network("cage-egress", ours, containers=("abc",)))
    ensure_egress_network(in_use, "cage-filtered")
    assert in_use.removed == [] and {"cage-egress", "cage-filtered"} <= set(in_use.nets)
    foreign = Networks(Network("cage-egress", {}))
    ensure_egress_network(foreign, "cage-filtered")
    assert foreign.removed == []
    custom = Networks(Network("cage-egress", ours))
    ensure_egress_network(custom, "my-net")
    assert custom.removed == []  # only the default name retires the old one
