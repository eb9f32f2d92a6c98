"""The flight recorder's files, without an engine: what counts as an archive, what
expires, what a damaged one says, and what a killed destroy's temporary file becomes."""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from claude_cage.operations import history
from claude_cage.transcript import Reader, Renderer
from tests.unit.fake_engine import UnusedEngine


class UnusedEngineNoCompanion(UnusedEngine):
    def inspect(self, name: str) -> dict[str, Any] | None:
        return None  # no companion: no egress log


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
    archive(directory, "deep", "20261206T000000000002Z", {"manifest.json": b"[" * 100_000})
    with pytest.raises(history.DamagedArchive, match="nested too deep"):
        history.read(history.entries("deep")[0])


def engine_tar(files: dict[str, bytes]) -> Iterator[bytes]:
    """What the engine's archive API sends for the transcript directory: a plain tar,
    in chunks."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(f"projects/{path}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    data = out.getvalue()
    return iter([data[i : i + 7000] for i in range(0, len(data), 7000)])


def turn(i: int, text: str) -> bytes:
    line = {"type": "user", "timestamp": f"2026-12-06T10:{i // 60 % 60:02}:{i % 60:02}Z",
            "message": {"content": text}}  # fmt: skip
    return json.dumps(line).encode() + b"\n"


def test_a_transcript_over_the_cap_is_kept_cut_with_a_line_saying_so(directory: Path) -> None:
    cap = 64 * 1024
    big = b"".join(turn(i, f"turn {i} " + "x" * 200) for i in range(2000))  # ~470 KiB
    long_line = turn(1, "y" * (3 * cap))  # one line longer than the archive keeps
    small = turn(0, "the api_key is here") + long_line + turn(2, "after the long one")
    sent = engine_tar({"-workspace/big.jsonl": big, "-workspace/small.jsonl": small})
    done = history.archive(UnusedEngineNoCompanion(), "cut", None, sent, [], cap)

    contents = history.read(done)  # still a readable archive
    kept = contents.transcripts["projects/-workspace/big.jsonl"]
    assert len(kept) <= cap and kept.startswith(big[:1000])
    events = Reader().feed({"big": kept})
    assert events[0].data["message"]["content"].startswith("turn 0 ")
    last = events[-1].data
    assert last["type"] == "system" and "history_transcript_size" in last["content"]
    left_out = int(last["content"].split("its last ")[1].split(" bytes")[0])
    assert left_out == len(big) - len(kept) + len(json.dumps(last)) + 1
    assert "claude-cage" in "\n".join(Renderer(200).lines(events[-1:]))  # `logs` shows it

    small_kept = [e.data for e in Reader().feed({"s": contents.transcripts[
        "projects/-workspace/small.jsonl"]})]  # fmt: skip
    assert small_kept[0]["message"]["content"] == "the api_key is here"
    assert f"a line of {len(long_line)} bytes was left out" in small_kept[1]["content"]
    assert small_kept[2]["message"]["content"] == "after the long one"
    assert oct(done.path.stat().st_mode & 0o777) == "0o600"
    assert not list(directory.glob(".archive-*")) and not list(directory.glob("tmp*"))


def test_reading_holds_at_most_max_held_of_transcripts_and_names_the_rest(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each transcript is capped as it is archived, but a session can write many; the
    # archive is read into memory, so what is held in all is capped too.
    monkeypatch.setattr(history, "MAX_HELD", 3000)
    members = {"manifest.json": b"{}", "egress.log": b"a line\n"}
    members |= {f"transcripts/p/{i}.jsonl": turn(i, "x" * 900) for i in range(5)}
    archive(directory, "many", "20261206T000000000000Z", members)
    found = history.read(history.entries("many")[0])
    assert len(found.transcripts) == 3 and sorted(found.left_out) == ["p/3.jsonl", "p/4.jsonl"]
    assert found.egress == "a line\n"
    # What a caller does not ask for is not held at all.
    only = history.read(history.entries("many")[0], frozenset({"egress"}))
    assert only.transcripts == {} and only.left_out == [] and only.egress == "a line\n"


def test_the_engines_tar_is_archived_up_to_a_bound(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sparse transcript of terabytes would keep `destroy` streaming for hours: once
    the engine's tar has carried MAX_STREAMED, the rest is not read, and the engine's
    answer is closed."""
    monkeypatch.setattr(history, "MAX_STREAMED", 10_000)
    sent = engine_tar(
        {"-w/a.jsonl": turn(0, "kept"), "-w/huge.jsonl": b"\0" * 50_000, "-w/z.jsonl": turn(1, "z")}
    )
    read: list[bytes] = []

    def counted() -> Iterator[bytes]:
        for chunk in sent:
            read.append(chunk)
            yield chunk

    chunks = counted()
    done = history.archive(UnusedEngineNoCompanion(), "sparse", None, chunks, [], 64 * 1024)
    assert list(history.read(done).transcripts) == ["projects/-w/a.jsonl"]
    assert sum(map(len, read)) < 30_000  # not the 50,000 bytes of the huge file
    assert chunks.gi_frame is None  # closed


def test_a_transcript_nested_too_deep_does_not_stop_destroy(directory: Path) -> None:
    """The session writes its transcripts: arrays nested 600 deep inside a turn (1.2 KB,
    which json.loads takes) once made redact recurse past the interpreter's limit, and a
    line 100,000 deep made json.loads itself: `destroy` ended in a traceback and kept
    the session. Now the first is archived with its depths masked (a secret there too),
    the second left out and marked, and the turns around them kept."""
    deep = json.loads(turn(1, "deep").decode())
    deep["x"] = json.loads("[" * 600 + json.dumps({"api_key": "sk-ant-deep"}) + "]" * 600)
    lines = [turn(0, "before"), json.dumps(deep).encode() + b"\n"]
    lines += [b"[" * 100_000 + b"]" * 100_000 + b"\n", turn(2, "after")]
    sent = engine_tar({"-w/deep.jsonl": b"".join(lines)})
    done = history.archive(UnusedEngineNoCompanion(), "deep", None, sent, [], 1024**2)

    kept = history.read(done).transcripts["projects/-w/deep.jsonl"]
    assert b"sk-ant-deep" not in kept
    events = [e.data for e in Reader().feed({"d": kept})]
    assert [e["message"]["content"] for e in (events[0], events[1], events[3])] == [
        "before", "deep", "after"
    ]  # fmt: skip
    assert "nested too deep" in events[2]["content"]
    assert b"[" * 100 not in kept  # redaction.MAX_DEPTH
