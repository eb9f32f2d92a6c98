"""Input a fuzzing pass found tracebacks for: an engine URL with an unclosed '[', a size
with more digits than a float holds, a config file nested past Python's recursion limit
or endless (/dev/zero), a key, secret or CA file that is binary or endless, an infinite
integer setting, and a session name from argument bytes that are not UTF-8 (which also
poisoned the event log's spool). Each is one `error:` line, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from claude_cage import config
from claude_cage.context import Context
from claude_cage.engine import endpoints
from claude_cage.errors import BadInput
from claude_cage.eventlog import schema, spool
from claude_cage.eventlog.events import EventLog
from claude_cage.operations import keys
from tests.unit.inprocess import run_main

ENDLESS = "/dev/zero"


@pytest.mark.parametrize("url", ["http://[::1", "tcp://[::1", "ssh://["])
def test_an_unclosed_ipv6_bracket_is_not_an_engine_address(url: str) -> None:
    with pytest.raises(BadInput) as caught:
        endpoints.resolve(url)
    assert "is not an engine address" in caught.value.message


def test_a_size_too_large_for_a_float_is_refused() -> None:
    with pytest.raises(ValueError, match="too large"):
        config.parse_size("9" * 400 + "g")


def test_a_config_file_nested_too_deeply(config_dir: Path) -> None:
    path = config_dir / "deep.yaml"
    path.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    loaded = config.load(path, environ={})
    assert [str(p) for p in loaded.problems] == [f"{path}: -: nested too deeply"]


@pytest.mark.skipif(not Path(ENDLESS).exists(), reason="no /dev/zero")
def test_an_endless_config_file(config_dir: Path) -> None:
    loaded = config.load(ENDLESS, environ={})
    assert [str(p) for p in loaded.problems] == [f"{ENDLESS}: -: larger than 1 MiB"]


@pytest.mark.skipif(not Path(ENDLESS).exists(), reason="no /dev/zero")
def test_an_endless_value_file() -> None:
    with pytest.raises(BadInput, match="larger than 64 KiB"):
        keys.read_value_file(ENDLESS, "--file")


def test_a_binary_value_file(tmp_path: Path) -> None:
    path = tmp_path / "binary"
    path.write_bytes(b"sk-\xdc\xff\xfe-key\n")
    with pytest.raises(BadInput, match="not UTF-8 text"):
        keys.read_value_file(str(path), "--file")
    with pytest.raises(BadInput, match="not UTF-8 text"):
        keys.read_api_key(str(path), {})


@pytest.mark.parametrize("command", [["status"], ["stop"], ["logs"], ["exec", "-", "true"]])
def test_a_session_name_that_is_not_utf8_is_not_found(
    config_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    args = [part if part != "-" else "\udcff" for part in command]
    if len(args) == 1:
        args.append("\udcff")  # as Python decodes the argument byte 0xff
    result = run_main(capsys, monkeypatch, Context(), *args)
    assert "Traceback" not in result.output
    assert result.code == 3, result.output
    assert "no session named" in result.stderr


def test_an_event_of_a_session_name_that_is_not_utf8_is_kept(tmp_path: Path) -> None:
    """SQLite refused the surrogate: the event went to the spool, whose drain then
    failed on every later read (`events` showed a traceback for ever)."""
    log = EventLog(tmp_path / "events.sqlite3", background_sync=False)
    log.record("session", "stop:\udcff", {"status": "error"})
    assert not spool.spool_path(tmp_path / "events.sqlite3").exists()
    found = log.query(session="\udcff")
    assert [e["key"] for e in found] == ["stop:\\udcff"]
    assert [e["key"] for e in log.query(type="\udcff")] == []


def test_a_spooled_row_sqlite_cannot_store_is_dropped(tmp_path: Path) -> None:
    db_path = tmp_path / "events.sqlite3"
    log = EventLog(db_path, background_sync=False)
    log.record("session", "start:web", {"status": "ok"})
    row = list(schema.prepare("session", "stop:web", {}, None)[1])
    row[2] = "stop:\udcff"  # as an older version spooled it
    spool.append(db_path, tuple(row))
    log.record("session", "stop:web", {"status": "ok"})
    assert [e["key"] for e in log.query()] == ["start:web", "stop:web"]


@pytest.mark.parametrize("text", ["allowed_ports: [.inf]\n", "pids: .inf\n", "pids: -.inf\n"])
def test_an_infinite_integer_setting(config_dir: Path, text: str) -> None:
    (config_dir / "config.yaml").write_text(text)
    assert "is not a number" in str(config.load(environ={}).problems[0])


@pytest.mark.skipif(not Path(ENDLESS).exists(), reason="no /dev/zero")
def test_an_endless_ca_file(config_dir: Path) -> None:
    loaded = config.load(environ={"CAGE_UPSTREAM_CA_CERTS": ENDLESS})
    assert "larger than 16 MiB" in str(loaded.problems[0])


def test_a_ca_file_that_is_not_utf8(config_dir: Path, tmp_path: Path) -> None:
    """The validator let it through; the start then read it as UTF-8 and failed."""
    pem = tmp_path / "ca.pem"
    pem.write_bytes(b"-----BEGIN CERTIFICATE-----\n\xff\xfe\n-----END CERTIFICATE-----\n")
    loaded = config.load(environ={"CAGE_UPSTREAM_CA_CERTS": str(pem)})
    assert "is not UTF-8 text" in str(loaded.problems[0])
