"""`logs NAME` (without Click) and `logs --tail N NAME` (Click) on a transcript the
session wrote to break them: one exit code, no traceback, nothing raw on the terminal."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from claude_cage.operations import logs
from tests.unit.fake_engine import UnusedEngine
from tests.unit.test_transcript import HOSTILE

# The engine is not asked: the files read are the ones given (operations/logs.py).
PROBE = (
    "import sys\n"
    "from claude_cage.operations import logs\n"
    "content = sys.stdin.buffer.read()\n"
    "logs.read_files = lambda ctx, name: logs.Files(name, {'p/a.jsonl': content})\n"
    "from claude_cage.cli import main\n"
    "sys.argv = ['claude-cage', *sys.argv[1:]]\n"
    "main()\n"
)


@pytest.mark.parametrize("args", [("logs", "web"), ("logs", "--tail", "5", "web")])
@pytest.mark.parametrize("hostile", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_transcript_gives_no_traceback(
    tmp_path: Path, hostile: str, args: tuple[str, ...]
) -> None:
    content = hostile.encode() + b'\n{"type":"user","message":{"content":"kept"}}\n'
    env = {**os.environ, "CAGE_DATA_DIR": str(tmp_path), "LC_ALL": "C.UTF-8"}
    env.pop("PYTHONIOENCODING", None)  # stdout as a UTF-8 terminal's: strict
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], input=content, capture_output=True, env=env
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert b"Traceback" not in done.stderr and b"\x1b" not in done.stdout
    assert done.stdout.decode().rstrip("\n").endswith("kept"), done.stdout


class _Volume(UnusedEngine):
    """An engine whose archive of the transcripts folder is the tar given, in chunks."""

    def __init__(self, tar: bytes) -> None:
        self.tar = tar

    def get_archive(self, name: str, path: str, chunk: int = 1 << 20) -> Iterator[bytes] | None:
        return iter([self.tar[i : i + 4096] for i in range(0, len(self.tar), 4096)])


def _tar(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        fifo = tarfile.TarInfo("projects/p/fifo.jsonl")
        fifo.type = tarfile.FIFOTYPE
        tar.addfile(fifo)
        link = tarfile.TarInfo("projects/p/etc.jsonl")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
        tar.addfile(link)
    return out.getvalue()


def test_a_live_sessions_transcripts_are_held_up_to_a_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The session sizes its transcripts, and a data volume without a size limit can
    hold any amount: what `logs` holds of a live session is bounded as an archive's is,
    the rest named; links and fifos are not transcripts."""
    monkeypatch.setattr(logs, "MAX_HELD", 10_000)
    line = b'{"type":"user","message":{"content":"x"}}\n'
    given = {f"projects/p/{i}.jsonl": line * 100 for i in range(5)}  # 4,200 bytes each
    files, left_out = logs.transcript_files(_Volume(_tar(given)), "cage-web")
    assert sorted(files) == ["projects/p/0.jsonl", "projects/p/1.jsonl"]
    assert left_out == ["projects/p/2.jsonl", "projects/p/3.jsonl", "projects/p/4.jsonl"]


def test_the_engines_tar_is_read_up_to_a_bound_then_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sparse transcript of terabytes is a few bytes of the volume and all of the
    engine's tar: once the tar has carried MAX_STREAMED, the rest is not read (named),
    and the engine's answer is closed."""
    monkeypatch.setattr(logs, "MAX_HELD", 1_000)
    monkeypatch.setattr(logs, "MAX_STREAMED", 10_000)
    line = b'{"type":"user","message":{"content":"x"}}\n'
    given = {"projects/p/0.jsonl": line * 10, "projects/p/huge.jsonl": b"\0" * 50_000}
    given["projects/p/z.jsonl"] = line
    engine = _Volume(_tar(given))
    read: list[int] = []

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(engine.tar), 4096):
            read.append(i)
            yield engine.tar[i : i + 4096]

    closed = chunks()
    monkeypatch.setattr(engine, "get_archive", lambda name, path, chunk=0: closed)
    files, left_out = logs.transcript_files(engine, "cage-web")
    assert sorted(files) == ["projects/p/0.jsonl"]
    assert left_out == ["projects/p/huge.jsonl and any file after it"]
    assert len(read) * 4096 < 20_000  # not the 50,000 bytes of the huge file
    assert closed.gi_frame is None  # the generator was closed
