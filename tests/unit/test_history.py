"""The flight recorder's files, without an engine: what counts as an archive, what
expires, what a damaged one says, and what a killed destroy's temporary file becomes."""

from __future__ import annotations

import io
import os
import tarfile
import time
from pathlib import Path

import pytest

from claude_cage.operations import history


@pytest.fixture
def directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CAGE_DATA_DIR", str(tmp_path))
    path = tmp_path / "history"
    path.mkdir()
    return path


def archive(directory: Path, name: str, stamp: str, members: dict[str, bytes]) -> Path:
    path = directory / f"{name}@{stamp}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for member, data in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_only_archives_are_listed_and_old_ones_expire(directory: Path) -> None:
    archive(directory, "old", "20200101T000000000000Z", {"manifest.json": b"{}"})
    archive(directory, "new", "20991231T000000000000Z", {"manifest.json": b"{}"})
    (directory / ".archive-x.tmp").write_bytes(b"half")
    (directory / "notes.txt").write_text("not ours")
    (directory / "Bad Name@20200101T000000000000Z.tar.gz").write_bytes(b"")
    assert [a.name for a in history.entries()] == ["old", "new"]
    assert [a.name for a in history.expired(30)] == ["old"]
    assert history.expired(0) == []  # 0: kept for ever
    assert [a.name for a in history.prune(30, dry_run=True)] == ["old"]
    assert [a.name for a in history.entries()] == ["old", "new"]
    assert [a.name for a in history.prune(30)] == ["old"]
    assert [a.name for a in history.entries()] == ["new"]


def test_a_killed_destroys_temporary_file_goes_once_it_is_stale(directory: Path) -> None:
    fresh, stale = directory / ".archive-a.tmp", directory / ".archive-b.tmp"
    fresh.write_bytes(b"being written")
    stale.write_bytes(b"left by a killed destroy")
    old = time.time() - 2 * history.STALE_TEMP
    os.utime(stale, (old, old))
    history.prune(30)
    assert fresh.exists() and not stale.exists()


@pytest.mark.parametrize(
    "content",
    [b"", b"not gzip", b"\x1f\x8b\x08\x00garbage"],
)
def test_a_damaged_archive_is_a_cage_error_naming_it(directory: Path, content: bytes) -> None:
    path = directory / "gone@20261206T000000000000Z.tar.gz"
    path.write_bytes(content)
    with pytest.raises(history.DamagedArchive) as caught:
        history.read(history.entries()[0])
    assert str(path) in caught.value.message


def test_a_manifest_that_is_not_json_is_damage(directory: Path) -> None:
    archive(directory, "bad", "20261206T000000000000Z", {"manifest.json": b"[1, 2"})
    with pytest.raises(history.DamagedArchive):
        history.read(history.entries()[0])
    archive(directory, "list", "20261206T000000000001Z", {"manifest.json": b"[1, 2]"})
    with pytest.raises(history.DamagedArchive, match="not an object"):
        history.read(history.entries("list")[0])
