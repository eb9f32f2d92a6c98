"""A session's pack that expands in memory: a delta of a few kilobytes whose result is
hundreds of megabytes (gigabytes in an attack). The host's git holds every delta's result
whole to check it, so what it may allocate is bounded (hostgit.memory_cap: twice
review_max_size, plus git's own), and the work is refused past that."""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import resource
import struct
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from claude_cage import hostgit
from claude_cage.errors import BadInput
from claude_cage.operations import review
from claude_cage.operations.clone import Export
from claude_cage.record import SessionRecord

BASE_SIZE = 0xFFFFFF  # the largest copy one delta instruction makes (16 MiB)


def _header(kind: int, size: int) -> bytes:
    out, byte, size = [], (kind << 4) | (size & 15), size >> 4
    while size:
        out.append(byte | 0x80)
        byte, size = size & 0x7F, size >> 7
    return bytes([*out, byte])


def _varint(n: int) -> bytes:
    out = []
    while True:
        n, low = n >> 7, n & 0x7F
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def delta_bomb(copies: int) -> bytes:
    """A pack: a blob of zeros, and a delta on it copying it `copies` times (about
    4 bytes of delta per 16 MiB of result, deflated to almost nothing)."""
    base = b"\0" * BASE_SIZE
    base_id = hashlib.sha1(b"blob %d\0" % BASE_SIZE + base).digest()
    result = copies * BASE_SIZE + 1
    delta = _varint(BASE_SIZE) + _varint(result) + b"\xf0\xff\xff\xff" * copies + b"\x01A"
    body = b"PACK" + struct.pack(">II", 2, 2)
    body += _header(3, BASE_SIZE) + zlib.compress(base, 9)
    body += _header(7, len(delta)) + base_id + zlib.compress(delta, 9)  # REF_DELTA
    return body + hashlib.sha1(body).digest()


def _repo(path: Path) -> str:
    path.mkdir()
    for args in (["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "one"]):
        subprocess.run(
            ["git", "-c", "user.name=u", "-c", "user.email=u@x", "-C", str(path), *args],
            check=True,
        )
    return hostgit.git(path, "rev-parse", "HEAD").stdout.decode().strip()


def test_a_delta_bomb_is_refused_within_the_memory_cap(
    config_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    head = _repo(tmp_path / "proj")
    pack = delta_bomb(24)  # 384 MiB once resolved, from a pack of a few KiB
    assert len(pack) < 64 * 1024
    meta = SessionRecord(name="web", repo=str(tmp_path / "proj"), repo_name="proj", base=head)

    @contextlib.contextmanager
    def export(*_args: Any) -> Iterator[Export]:
        yield Export(head, iter([pack]))

    cfg = SimpleNamespace(values={"review_max_size": "1m", "review_timeout": 120})
    monkeypatch.setattr(review, "clone_meta", lambda _ctx, _name: meta)
    monkeypatch.setattr(review, "load_config", lambda *_args: cfg)
    monkeypatch.setattr(review, "export", export)
    ctx = SimpleNamespace(engine_for=lambda _name: None)

    def refusal(answer: Any) -> None:
        """In a forked process, whose children's peak memory starts at nothing (this
        one's holds whatever an earlier test's child reached): what the diff said, and
        the most memory a git of it took."""
        try:
            list(review.diff(ctx, "web", stat=True))
            said = ""
        except BadInput as exc:
            said = exc.message
        answer.send((said, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))

    theirs, ours = multiprocessing.get_context("fork").Pipe()
    child = multiprocessing.get_context("fork").Process(target=refusal, args=(ours,))
    child.start()
    assert theirs.poll(120), "the diff did not end"
    said, peak = theirs.recv()
    child.join(10)
    assert "in memory" in said and "review_max_size" in said, said
    # git was stopped at the cap (1 MiB: 258 MiB), never near the bomb's 384 MiB
    assert 0 < peak < 300 * 1024, peak
    # nothing reached the repository
    assert hostgit.git(tmp_path / "proj", "count-objects", "-v").stdout.count(b"in-pack: 0")


def test_an_honest_pack_is_read_under_the_cap(config_dir: Path, tmp_path: Path) -> None:
    head = _repo(tmp_path / "proj")
    repo = hostgit.find_repo(str(tmp_path / "proj"))
    pack = delta_bomb(4)  # 64 MiB once resolved: well under the cap of a 64m review
    memory = hostgit.memory_cap(64 * 1024**2)
    with hostgit.quarantine(repo, head, head, tmp_path, memory) as incoming:
        with pytest.raises(BadInput, match="does not hold the commit"):
            incoming.receive("0" * 40, iter([pack]))  # indexed, checked; no such commit
        assert incoming.git("count-objects", "-v").returncode == 0
