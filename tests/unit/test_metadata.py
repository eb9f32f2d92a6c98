"""The metadata store: the seed's key=value format, atomic writes, per-session locks,
0600 secrets, and many processes writing one session at once."""

from __future__ import annotations

import multiprocessing
import os
import stat
import time
from pathlib import Path

import pytest

from claude_cage import metadata
from claude_cage.errors import BadInput, CageError
from claude_cage.metadata import SessionStore

SEED = """name=web
mode=cli
status=running
created=2026-01-02T03:04:05Z
container=cage-web
"""


@pytest.fixture
def store(tmp_path: Path) -> SessionStore:
    return SessionStore(tmp_path / "data" / "sessions")


def base(name: str = "web") -> dict:
    return {
        "name": name,
        "mode": "cli",
        "status": "running",
        "created": "2026-01-02T03:04:05Z",
        "container": f"cage-{name}",
    }


# --- format ---------------------------------------------------------------------------


def test_parses_the_seed_format() -> None:
    assert metadata.parse(SEED) == base()


def test_render_starts_with_the_required_keys_in_seed_order() -> None:
    data = {**base(), "network": "none", "cpus": "2", "mounts": ["/a:/workspace/a:ro"]}
    lines = metadata.render(data).splitlines()
    assert lines[:5] == SEED.splitlines()
    assert all("=" in line for line in lines)
    assert metadata.render(base()) == SEED


def test_round_trip() -> None:
    data = {
        **base(),
        "network": "filtered",
        "mounts": ["/srv/a:/workspace/a:rw", "/srv/b:/workspace/b:ro"],
        "ports": [[8080, 3000]],
        "allowed_hosts": ["api.anthropic.com", "*.sentry.io"],
        "env_keys": ["DEBUG"],
        "image": "claude-cage-cli:latest",
        "url": "http://127.0.0.1:6080/vnc.html?a=b",
    }
    assert metadata.parse(metadata.render(data)) == data


def test_render_types() -> None:
    text = metadata.render({**base(), "ephemeral": True, "persist": False, "pids": 64, "x": None})
    parsed = metadata.parse(text)
    assert (parsed["ephemeral"], parsed["persist"], parsed["pids"]) == ("true", "false", "64")
    assert "x" not in parsed


def test_a_value_cannot_smuggle_in_another_key() -> None:
    data = {**base(), "image": "evil\nstatus=removed"}
    parsed = metadata.parse(metadata.render(data))
    assert parsed["status"] == "running"
    assert len(metadata.render(data).splitlines()) == 6


def test_parse_skips_junk() -> None:
    text = SEED + "# a comment\n\nno equals sign\n=no key\nmounts=not json\n"
    parsed = metadata.parse(text)
    assert parsed == {**base(), "mounts": "not json"}


def test_created_is_iso_8601_utc() -> None:
    import re

    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", metadata.now_iso())


# --- the store ------------------------------------------------------------------------


def test_write_and_read(store: SessionStore) -> None:
    with store.lock("web"):
        store.write("web", base())
    data = store.read("web")
    assert data is not None
    assert {k: data[k] for k in metadata.REQUIRED} == base()
    assert data["schema"] == metadata.SCHEMA
    assert store.names() == ["web"]
    assert store.read_all() == {"web": data}
    assert (store.dir("web") / "metadata").read_text().startswith(SEED)


def test_read_missing(store: SessionStore) -> None:
    assert store.read("nope") is None
    assert store.names() == [] and store.read_all() == {}


def test_update_missing_session_creates_nothing(store: SessionStore) -> None:
    assert store.update("ghost", status="stopped") is None
    assert not store.dir("ghost").exists()


def test_update_merges(store: SessionStore) -> None:
    store.write("web", base())
    assert store.update("web", status="stopped", stopped="now") is not None
    data = store.read("web")
    assert data is not None
    assert data["status"] == "stopped" and data["stopped"] == "now" and data["mode"] == "cli"


def test_write_leaves_no_temp_files(store: SessionStore) -> None:
    for i in range(20):
        store.write("web", {**base(), "n": i})
        store.write_secret("web", "api_key", f"sk-ant-test-{i}")
    assert sorted(p.name for p in store.dir("web").iterdir()) == ["api_key", "metadata"]


def test_failed_write_keeps_the_old_file(store: SessionStore, monkeypatch) -> None:
    store.write("web", base())
    before = (store.dir("web") / "metadata").read_text()

    def crash(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(metadata.os, "replace", crash)
    with pytest.raises(CageError, match="disk full"):
        store.write("web", {**base(), "status": "stopped"})
    assert (store.dir("web") / "metadata").read_text() == before
    assert sorted(p.name for p in store.dir("web").iterdir()) == ["metadata"]


def test_file_modes(store: SessionStore) -> None:
    store.write("web", base())
    path = store.write_secret("web", "api_key", "sk-ant-test-123")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.dir("web").stat().st_mode) == 0o700
    meta_mode = stat.S_IMODE((store.dir("web") / "metadata").stat().st_mode)
    assert meta_mode & 0o022 == 0  # nobody else may write it
    assert store.read_secret("web", "api_key") == "sk-ant-test-123"
    assert store.read_secret("web", "other") is None


def test_secret_mode_holds_under_a_loose_umask(store: SessionStore) -> None:
    old = os.umask(0)
    try:
        path = store.write_secret("web", "api_key", "sk-ant-test-123")
        path = store.write_secret("web", "api_key", "sk-ant-test-456")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_secrets_never_go_into_the_metadata(store: SessionStore) -> None:
    store.write("web", base())
    store.write_secret("web", "api_key", "sk-ant-test-secret")
    assert "sk-ant-test-secret" not in (store.dir("web") / "metadata").read_text()


def test_remove(store: SessionStore) -> None:
    store.write("web", base())
    store.write_secret("web", "api_key", "k" * 10)
    store.remove("web")
    assert not store.dir("web").exists() and store.read("web") is None


def test_lock_files_live_outside_session_dirs(store: SessionStore) -> None:
    with store.lock("web"):
        pass
    assert not store.dir("web").exists()


# --- locks ----------------------------------------------------------------------------


def test_non_blocking_lock_reports_a_held_lock(store: SessionStore) -> None:
    store.write("web", base())
    with store.lock("web") as held:
        assert held is True
        with store.lock("web", blocking=False) as second:
            assert second is False
        assert store.update("web", blocking=False, status="stopped") is None
        with store.lock("other", blocking=False) as other:  # other sessions are free
            assert other is True
    data = store.read("web")
    assert data is not None and data["status"] == "running"
    with store.lock("web", blocking=False) as again:
        assert again is True


def _hold_lock(root: str, ready, release) -> None:
    with SessionStore(Path(root)).lock("web"):
        ready.set()
        release.wait(10)


def test_lock_is_held_across_processes(store: SessionStore) -> None:
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(store.root), ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        start = time.monotonic()
        with store.lock("web", blocking=False) as got:
            assert got is False
        assert time.monotonic() - start < 1  # did not wait
    finally:
        release.set()
        holder.join(10)
    with store.lock("web", blocking=False) as got:
        assert got is True


# --- concurrent writers ---------------------------------------------------------------

WRITERS = 12
ROUNDS = 25


def _writer(root: str, index: int) -> None:
    store = SessionStore(Path(root))
    for n in range(ROUNDS):
        store.update("web", **{f"writer{index}": str(n)})
        with store.lock("web"):  # a read-modify-write of a shared counter
            data = store.read("web")
            assert data is not None
            store.write("web", {**data, "counter": int(data.get("counter", 0)) + 1})


def _reader(root: str, stop, errors) -> None:
    store = SessionStore(Path(root))
    while not stop.is_set():
        try:
            text = (store.dir("web") / "metadata").read_text()
        except FileNotFoundError:
            errors.put("metadata vanished")
            continue
        data = metadata.parse(text)
        missing = [k for k in metadata.REQUIRED if k not in data]
        if missing or not text.endswith("\n"):
            errors.put(f"torn read: {text!r}")


def test_concurrent_writers_lose_nothing(store: SessionStore) -> None:
    store.write("web", base())
    ctx = multiprocessing.get_context("fork")
    stop, errors = ctx.Event(), ctx.Queue()
    readers = [ctx.Process(target=_reader, args=(str(store.root), stop, errors)) for _ in range(2)]
    writers = [ctx.Process(target=_writer, args=(str(store.root), i)) for i in range(WRITERS)]
    for process in readers + writers:
        process.start()
    for process in writers:
        process.join(60)
    stop.set()
    for process in readers:
        process.join(10)
    assert [p.exitcode for p in writers] == [0] * WRITERS
    problems = []
    while not errors.empty():
        problems.append(errors.get())
    assert problems == []
    data = store.read("web")
    assert data is not None
    assert int(data["counter"]) == WRITERS * ROUNDS
    for index in range(WRITERS):
        assert data[f"writer{index}"] == str(ROUNDS - 1)
    assert {k: data[k] for k in metadata.REQUIRED} == base()
    assert sorted(p.name for p in store.dir("web").iterdir()) == ["metadata"]


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".", "", "x\0y"])
def test_a_name_that_is_no_plain_folder_name_reaches_no_folder(tmp_path: Path, name: str) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "metadata").write_text("name=x\n")
    store = metadata.SessionStore(tmp_path / "sessions")
    with pytest.raises(BadInput, match="invalid session name"):
        store.read(name)
