"""Layered configuration: defaults < user file < --config < CAGE_* env < flags, with the
source of every value recorded, and `validate` naming every bad key or value with its file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from claude_cage import config
from claude_cage.cli import cli
from claude_cage.context import Context
from claude_cage.errors import BadInput
from claude_cage.operations.inputs import StartOptions, load_config


@pytest.fixture(autouse=True)
def isolated(config_dir: Path) -> Path:
    return config_dir


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_have_the_seed_keys() -> None:
    seed_keys = {
        "mode", "network", "cpus", "memory", "pids", "allowed_hosts", "image_cli",
        "image_desktop", "desktop_port", "read_only_root", "seccomp_profile", "max_sessions",
        "idle_timeout",
    }  # fmt: skip
    assert seed_keys <= config.DEFAULTS.keys()
    cfg = config.load(environ={})
    assert cfg["mode"] == "cli" and cfg["network"] == "filtered"
    limits = (config.default_cpus(config.host_cpus()), config.default_memory(config.host_memory()))
    assert (cfg["cpus"], cfg["memory"], cfg["pids"]) == (*limits, 512)
    assert cfg["max_sessions"] == config.default_max_sessions(
        config.host_cpus(), config.host_memory()
    )
    assert {k for k, v in cfg.sources.items() if v == "machine"} == config.FROM_MACHINE
    assert set(cfg.sources.values()) == {"default", "machine"}
    assert cfg.problems == []


def test_every_default_passes_its_own_validator() -> None:
    for key, value in config.DEFAULTS.items():
        if value is not None:
            config.VALIDATORS[key](value)


def test_layers_override_in_order(isolated: Path, tmp_path: Path) -> None:
    user = write(isolated / "config.yaml", "memory: 1g\ncpus: 1\npids: 100\nmax_sessions: 3\n")
    extra = write(tmp_path / "extra.yaml", "cpus: 1.5\npids: 200\nmax_sessions: 4\n")
    environ = {"CAGE_PIDS": "300", "CAGE_MAX_SESSIONS": "6"}
    cfg = config.load(extra, environ=environ)
    assert cfg["memory"] == "1g" and cfg.sources["memory"] == str(user)
    assert cfg["cpus"] == 1.5 and cfg.sources["cpus"] == str(extra)
    assert cfg["pids"] == 300 and cfg.sources["pids"] == "environment"
    assert cfg["max_sessions"] == 6 and cfg.sources["max_sessions"] == "environment"
    assert cfg["network"] == "filtered" and cfg.sources["network"] == "default"
    assert cfg.problems == []


def test_flags_override_everything(
    isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(isolated / "config.yaml", "memory: 1g\nnetwork: none\n")
    extra = write(tmp_path / "extra.yaml", "memory: 2g\n")
    monkeypatch.setenv("CAGE_MEMORY", "3g")
    cfg = load_config(Context(), StartOptions(config_file=str(extra), memory="5g", network="host"))
    assert cfg["memory"] == "5g" and cfg.sources["memory"] == "flags"
    assert cfg["network"] == "host" and cfg.sources["network"] == "flags"
    # With no flag, the environment wins.
    cfg = load_config(Context(), StartOptions(config_file=str(extra)))
    assert cfg["memory"] == "3g" and cfg.sources["memory"] == "environment"
    assert cfg["network"] == "none" and cfg.sources["network"] == str(isolated / "config.yaml")


def test_env_layer_reads_only_known_keys() -> None:
    layer = config.env_layer({"CAGE_MEMORY": "2g", "CAGE_DATA_DIR": "/x", "HOME": "/root"})
    assert layer == {"memory": "2g"}


def test_env_values_are_converted() -> None:
    cfg = config.load(
        environ={
            "CAGE_CPUS": "0.5",
            "CAGE_READ_ONLY_ROOT": "yes",
            "CAGE_ALLOWED_HOSTS": "a.io,*.b.io",
        }
    )
    assert cfg["cpus"] == 0.5
    assert cfg["read_only_root"] is True
    assert cfg["allowed_hosts"] == ["a.io", "*.b.io"]


def test_validate_names_every_problem_with_its_file(isolated: Path, tmp_path: Path) -> None:
    user = write(isolated / "config.yaml", "memory: lots\nbogus_key: 1\n")
    extra = write(tmp_path / "extra.yaml", "network: open\ncpus: 0\npids: many\n")
    cfg = config.load(extra, environ={"CAGE_MODE": "gui"})
    found = {(p.source, p.key) for p in cfg.problems}
    assert found == {
        (str(user), "memory"),
        (str(user), "bogus_key"),
        (str(extra), "network"),
        (str(extra), "cpus"),
        (str(extra), "pids"),
        ("environment", "mode"),
    }
    # A bad value never replaces a good one.
    assert cfg["memory"] == config.DEFAULTS["memory"]
    assert cfg["network"] == "filtered" and cfg["mode"] == "cli"
    assert next(p for p in cfg.problems if p.key == "bogus_key").message == "unknown key"


def test_validate_command_lists_every_problem(isolated: Path, tmp_path: Path) -> None:
    user = write(isolated / "config.yaml", "memory: lots\n")
    extra = write(tmp_path / "extra.yaml", "network: open\n")
    result = CliRunner().invoke(cli, ["config", "validate", "--config", str(extra)])
    assert isinstance(result.exception, BadInput) and result.exception.exit_code == 2
    lines = result.output.splitlines()
    assert any(str(user) in line and "memory" in line for line in lines)
    assert any(str(extra) in line and "network" in line for line in lines)


def test_validate_command_passes_a_good_config(isolated: Path) -> None:
    write(isolated / "config.yaml", "memory: 8g\nallowed_hosts: [example.com, '*.example.org']\n")
    result = CliRunner().invoke(cli, ["config", "validate"])
    assert result.exit_code == 0, result.output
    assert "config ok" in result.output


@pytest.mark.parametrize(
    "text", ["memory: [unclosed\n", "key: value\n  - broken: [\n", ":\n  - : :\n\t- x"]
)
def test_bad_yaml(tmp_path: Path, text: str) -> None:
    path = write(tmp_path / "bad.yaml", text)
    cfg = config.load(path, environ={})
    assert cfg.problems and cfg.problems[0].source == str(path)
    assert "YAML" in cfg.problems[0].message
    with pytest.raises(BadInput) as err:
        cfg.raise_problems()
    assert err.value.exit_code == 2 and str(path) in err.value.message


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_yaml_that_is_not_a_mapping(tmp_path: Path, text: str) -> None:
    path = write(tmp_path / "list.yaml", text)
    problems = config.load(path, environ={}).problems
    assert [(p.source, p.message) for p in problems] == [
        (str(path), "must be a mapping of key: value")
    ]


def test_empty_file_is_fine(tmp_path: Path) -> None:
    assert config.load(write(tmp_path / "empty.yaml", ""), environ={}).problems == []


def test_missing_config_file_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput) as err:
        config.load(tmp_path / "nope.yaml", environ={})
    assert "nope.yaml" in err.value.message and err.value.hint


def test_raise_problems_names_the_first_and_counts_the_rest(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "memory: x\ncpus: y\nnope: 1\n")
    with pytest.raises(BadInput) as err:
        config.load(path, environ={}).raise_problems()
    assert str(path) in err.value.message and "memory" in err.value.message
    assert "2 more" in err.value.message
    assert "config validate" in (err.value.hint or "")


def test_bad_flag_is_named_as_a_flag() -> None:
    with pytest.raises(BadInput) as err:
        load_config(Context(), StartOptions(memory="lots"))
    assert "--memory" in err.value.message and "lots" in err.value.message
    assert "config validate" not in (err.value.hint or "")


@pytest.mark.parametrize(
    ("text", "size"),
    [("4g", 4 * 1024**3), ("512m", 512 * 1024**2), ("64K", 64 * 1024), ("100", 100),
     ("1.5g", int(1.5 * 1024**3)), ("2048b", 2048), (" 8G ", 8 * 1024**3)],
)  # fmt: skip
def test_parse_size(text: str, size: int) -> None:
    assert config.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "g", "4gb", "four", "-1g", "4 g", "1e3", "4t", "0x10"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        config.parse_size(text)


@pytest.mark.parametrize("key", ["memory", "tmp_size", "home_size"])
@pytest.mark.parametrize("value", ["0", "0m", "0g", "1b"])
def test_sizes_that_would_mean_no_limit_are_refused(key: str, value: str) -> None:
    """Docker and tmpfs read a zero size as 'unlimited'; a tiny one cannot run anything."""
    cfg = config.load(environ={f"CAGE_{key.upper()}": value})
    assert [p.key for p in cfg.problems] == [key]


def test_size_is_normalised_to_lower_case() -> None:
    assert config.load(environ={"CAGE_MEMORY": "8G"})["memory"] == "8g"


@pytest.mark.parametrize(
    ("cores", "gib", "expected"),
    [(2, 24, 8), (8, 16, 14), (64, 256, 254), (1, 4, 4), (4, 0, 6), (0, 2, 4)],
)
def test_max_sessions_follows_the_machine(cores: int, gib: int, expected: int) -> None:
    assert config.default_max_sessions(cores, gib * 1024**3) == expected


@pytest.mark.parametrize(
    ("key", "value"),
    [("cpus", "0"), ("cpus", "abc"), ("cpus", True), ("pids", "8"), ("pids", "2000000"),
     ("mode", "gui"), ("network", "open"), ("read_only_root", "maybe"),
     ("allowed_hosts", "bad host!"), ("allowed_ports", "0"), ("desktop_port", "80"),
     ("desktop_bind", "localhost"), ("vnc_resolution", "big"), ("image_cli", ""),
     ("allowed_address_ranges", "10.0.0.0/33"), ("allowed_address_ranges", "intranet")],
)  # fmt: skip
def test_bad_values(key: str, value: object) -> None:
    cfg = config.Config()
    cfg.apply({key: value}, "test")
    assert [(p.source, p.key) for p in cfg.problems] == [("test", key)]
    assert cfg[key] == config.DEFAULTS[key] and cfg.sources[key] in ("default", "machine")


def test_range_message_is_readable() -> None:
    cfg = config.Config()
    cfg.apply({"pids": "8"}, "test")
    assert cfg.problems[0].message == "must be between 16 and 1000000"


@pytest.mark.parametrize(("cores", "cpus"), [(1, 1.0), (2, 1.0), (3, 2.0), (16, 15.0)])
def test_default_cpus_leave_the_host_a_core(cores: int, cpus: float) -> None:
    assert config.default_cpus(cores) == cpus


GIB = 1024**3


@pytest.mark.parametrize(
    ("total", "memory"),
    [(24 * GIB, "4g"), (8 * GIB, "4g"), (6 * GIB, "3g"), (3 * GIB, "1536m"), (GIB, "512m"),
     (GIB // 2, "512m"), (0, "4g")],
)  # fmt: skip
def test_default_memory_is_half_the_host_at_most_4g(total: int, memory: str) -> None:
    assert config.default_memory(total) == memory


def test_default_limits_follow_this_host_and_stay_config_keys(isolated: Path) -> None:
    assert config.DEFAULTS["cpus"] == max(1, len(os.sched_getaffinity(0)) - 1)
    host = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert config.parse_size(config.DEFAULTS["memory"]) <= max(host // 2, 512 * 1024**2)
    write(isolated / "config.yaml", "cpus: 0.5\nmemory: 1g\n")
    cfg = config.load(environ={"CAGE_CPUS": "1.5"})
    assert (cfg["cpus"], cfg["memory"]) == (1.5, "1g")


@pytest.mark.parametrize(
    "host",
    ["*.com", "*.co.uk", "com", "co.uk", "*.github.io", "localhost", "10.0.0.1", "127.1",
     "::1", "*.10.0.0.1"],
)  # fmt: skip
def test_allowlist_entries_must_be_under_a_registrable_domain(host: str) -> None:
    with pytest.raises(ValueError):
        config.validate_host(host)


@pytest.mark.parametrize(
    "host", ["example.com", "*.example.co.uk", "api.anthropic.com", "a.b.github.io", "x.test"]
)
def test_names_under_a_registrable_domain_pass(host: str) -> None:
    assert config.validate_host(host) == host


def test_a_config_file_with_a_broad_entry_is_refused(isolated: Path) -> None:
    write(isolated / "config.yaml", "allowed_hosts: [example.com, '*.com']\n")
    cfg = config.load()
    assert [p.key for p in cfg.problems] == ["allowed_hosts"]
    assert "public suffix" in cfg.problems[0].message


def test_allowed_address_ranges_take_cidrs_from_a_file_or_the_environment() -> None:
    assert config.DEFAULTS["allowed_address_ranges"] == []
    loaded = config.load(environ={"CAGE_ALLOWED_ADDRESS_RANGES": "172.18.0.0/16, fd00::/8"})
    assert loaded["allowed_address_ranges"] == ["172.18.0.0/16", "fd00::/8"]
    assert config.load(environ={"CAGE_ALLOWED_ADDRESS_RANGES": ""})["allowed_address_ranges"] == []
    cfg = config.Config()
    cfg.apply({"allowed_address_ranges": ["10.1.2.3/8", "192.168.1.7"]}, "test")
    assert cfg["allowed_address_ranges"] == ["10.0.0.0/8", "192.168.1.7/32"]
