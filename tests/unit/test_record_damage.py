"""Damage is caught wherever a record is decoded: any value in any field of a session's
metadata either reads back as a value that fits its field, or makes the record damaged,
naming the field, in one line. `list` then marks that session damaged and shows the
others; `status` names the field; nothing ends in a traceback. A metadata file over
1 MiB is damaged, and not read whole."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from claude_cage import config, metadata, paths, policy, record
from claude_cage.cli import cli
from claude_cage.engine import fleet
from claude_cage.errors import CageError
from claude_cage.operations import inputs
from tests.unit.fake_engine import FakeEngine

GOOD = {
    "name": "hurt",
    "mode": "cli",
    "status": "running",
    "created": "2026-01-02T03:04:05Z",
    "container": "cage-hurt",
    "companion": "companion-cage-hurt",
    "network": "filtered",
    "runtime": "runc",
    "image": "claude-cage-cli:latest",
    "cpus": "2",
    "memory": "4g",
    "pids": "512",
    "mounts": '["/srv/p:/workspace/p:rw"]',
    "ports": "[[8080,80]]",
    "env_keys": '["A"]',
    "ephemeral": "false",
    "persist": "true",
    "credential": "none",
    "allowed_hosts": '["api.anthropic.com"]',
    "allowed_ports": "[443]",
    "desktop_port": "6080",
    "desktop_bind": "127.0.0.1",
    "seccomp_profile": "default",
    "read_only_root": "true",
    "tmp_size": "512m",
    "nofile": "4096",
    "uid": "1000",
    "repo": "/srv/p",
    "schema": metadata.SCHEMA,
}
FIELDS = sorted(record.field_types())
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
).map(json.dumps)
KNOWN_BAD = st.sampled_from(
    ['[{"x":1}]', "[[]]", "[null]", "[1]", "abc", "1e309", "-1", "nan", "inf", "0",
     "default\x00x", "\x00", "[" * 5000, '["a\\u0000b"]', "[[1,2,3]]", "[[70000,1]]",
     "99999999999999999999999", "true", "", "/workspace/p:/x:rw"]
)  # fmt: skip
VALUES = st.one_of(KNOWN_BAD, JSON, st.text(max_size=20))


def write(directory: Path, values: dict[str, str]) -> None:
    (directory / "sessions" / values["name"]).mkdir(parents=True, exist_ok=True)
    lines = [f"{k}={v}" for k, v in values.items() if k != "schema"] + [
        f"schema={values['schema']}"
    ]
    (directory / "sessions" / values["name"] / "metadata").write_text("\n".join(lines) + "\n")


@pytest.fixture
def engine(config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    fake = FakeEngine(paths.owner_id())
    monkeypatch.setattr(
        fleet, "engine_named", lambda name=None, timeout=None, setting="", **_: fake
    )
    fake.add_session("hurt")
    fake.add_session("fine")
    write(paths.data_dir(), {**GOOD, "name": "fine", "container": "cage-fine"})
    return fake


@pytest.mark.parametrize("key", FIELDS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=VALUES)
def test_any_value_of_any_field_reads_back_fitting_or_damaged(key: str, value: str) -> None:
    data = {**GOOD, key: value} if key != "name" else GOOD
    text = "\n".join(f"{k}={v}" for k, v in data.items()) + "\n"
    with tempfile.TemporaryDirectory() as root:
        store = metadata.SessionStore(Path(root))
        (Path(root) / "hurt").mkdir()
        (Path(root) / "hurt" / "metadata").write_text(text, errors="surrogatepass")
        records, damaged = store.load_scan()
        assert set(records) ^ set(damaged) == {"hurt"}
        if "hurt" in damaged:
            message = damaged["hurt"].message
            assert "\n" not in message and "\x00" not in message
            return
        session = records["hurt"]
    # What reads back fits its field: no NUL in any text, finite numbers, and each
    # setting the config also has passes the config's own check.
    for name in FIELDS:
        for leaf in record._leaves(getattr(session, name)):
            assert not isinstance(leaf, str) or "\x00" not in leaf
            assert not isinstance(leaf, float) or math.isfinite(leaf)
    for name in record.CHECKED_AS_CONFIG:
        if getattr(session, name) is not None:
            config.VALIDATORS[name](record.encode(getattr(session, name)))
    # What reads back fits its field: a restart's request is built from it, and checked.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CAGE_DATA_DIR", "/nonexistent-data")
        with contextlib.suppress(CageError):
            policy.check(inputs.request_from_record(session, config.load(environ={})))
    assert metadata.render(record.to_fields(session))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(key=st.sampled_from([f for f in FIELDS if f != "name"]), value=KNOWN_BAD | JSON)
@example(key="user_config", value="true")  # status then reads Claude Code's state
def test_list_and_status_mark_the_damaged_session_and_show_the_others(
    engine: FakeEngine, key: str, value: str
) -> None:
    write(paths.data_dir(), {**GOOD, key: value})
    listed = CliRunner().invoke(cli, ["list", "--json"])
    assert listed.exception is None or isinstance(listed.exception, SystemExit), listed.output
    assert listed.exit_code == 0, listed.output
    sessions = {s["name"]: s for s in json.loads(listed.stdout)["sessions"]}
    assert sessions.keys() == {"hurt", "fine"} and not sessions["fine"]["damaged"]
    shown = CliRunner().invoke(cli, ["status", "hurt", "--json"])
    assert shown.exception is None or isinstance(shown.exception, SystemExit), shown.output
    if sessions["hurt"]["damaged"]:
        assert sessions["hurt"]["damaged"].split(" ", 1)[0] in (key, "cut", "unknown"), sessions
        assert shown.exit_code == 0, shown.output
        assert json.loads(shown.stdout)["session"]["damaged"] == sessions["hurt"]["damaged"]
    else:
        assert shown.exit_code in (0, 1), shown.output


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("mounts", '[{"x":1}]', "mounts [{'x': 1}]: "),
        ("mounts", "[[]]", "mounts [[]]: "),
        ("memory", "abc", "memory 'abc': "),
        ("cpus", "1e309", "cpus '1e309': "),
        ("seccomp_profile", "/p\x00x", "seccomp_profile '/p\\x00x': it holds a NUL byte"),
    ],
)
def test_each_damage_of_the_report_names_its_field(
    engine: FakeEngine, key: str, value: str, why: str
) -> None:
    write(paths.data_dir(), {**GOOD, key: value})
    with pytest.raises(metadata.DamagedMetadata) as caught:
        metadata.SessionStore().load("hurt")
    assert why in caught.value.message
    shown = CliRunner().invoke(cli, ["status", "hurt"])
    assert shown.exit_code == 0 and why in shown.output, shown.output


def test_a_record_over_one_mib_is_damaged_and_not_read_whole(
    engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(paths.data_dir(), GOOD)
    path = paths.data_dir() / "sessions" / "hurt" / "metadata"
    with path.open("ab") as handle:
        handle.truncate(64 << 20)  # valid text, then NULs, as a damaged disk leaves it
    read: list[int] = []
    real_read = os.read

    def counted(fd: int, n: int) -> bytes:
        data = real_read(fd, n)
        read.append(len(data))
        return data

    monkeypatch.setattr(os, "read", counted)
    _records, damaged = metadata.SessionStore().load_scan()
    assert "larger than 1 MiB" in damaged["hurt"].message
    assert sum(read) <= (1 << 20) + 1 + 4096  # the damaged one's 1 MiB + 1, and `fine`
    listed = CliRunner().invoke(cli, ["list", "--json"])
    assert {s["name"] for s in json.loads(listed.stdout)["sessions"]} == {"hurt", "fine"}
