"""A tarball from an untrusted source (a feature's registry layer), checked whole, then
unpacked into one directory.

Refused, naming the member, before anything is written: an absolute name, a `..`
component, a device, fifo or other special file, a name given twice, a member under a
symbolic link (a write through it), a symbolic link whose target leaves the directory
(absolute, or `..` past the top, counting the links it passes through), a hard link to
anything but a regular file of the archive; and an archive with more than MAX_MEMBERS
members or MAX_UNPACKED bytes in all (a gzip bomb stops at its first big header).
A gzip layer is inflated first, a chunk at a time into a temporary file, and refused
once it passes MAX_TAR bytes; a long-name or pax header bigger than MAX_HEADER is refused
before it is read (the standard library reads such a header whole, in memory).
What is left is unpacked with the standard library's `data` filter too (no set-id bits,
no owners), a second fence.
"""

from __future__ import annotations

import gzip
import io
import posixpath
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import IO

from claude_cage.errors import CageError, file_error

MAX_MEMBERS = 10_000
MAX_UNPACKED = 200 * 1024 * 1024
MAX_LINK_HOPS = 40  # as the kernel's ELOOP
MAX_HEADER = 64 * 1024  # a long name or pax header: no feature's is near this
MAX_TAR = MAX_UNPACKED + MAX_MEMBERS * 4 * tarfile.BLOCKSIZE + tarfile.RECORDSIZE
_CHUNK = 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"
_EXTENDED = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE,
             tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)  # fmt: skip


class UnsafeArchive(CageError):
    """An archive with a member that would land outside its directory, or too big."""

    hint = "the feature's archive is not safe to unpack: do not use it (tell its publisher)"


def _name(raw: str) -> str:
    """A member's name, normalised; refused when absolute or with `..` in it."""
    if raw.startswith("/") or "\\" in raw or "\0" in raw:
        raise UnsafeArchive(f"the archive's member {raw!r} is not a relative path")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(f"the archive's member {raw!r} climbs out with '..'")
    return "/".join(parts)


def _resolve(path: str, links: dict[str, str]) -> str | None:
    """Where `path` (relative to the top) leads inside the archive, following its
    symbolic links; None when it leaves the top (or loops)."""
    todo = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    hops = 0
    while todo:
        part = todo.pop(0)
        if part == "..":
            if not done:
                return None
            done.pop()
            continue
        here = "/".join([*done, part])
        if here in links:
            hops += 1
            target = links[here]
            if hops > MAX_LINK_HOPS or target.startswith("/"):
                return None
            todo = [p for p in target.split("/") if p not in ("", ".")] + todo
            continue
        done.append(part)
    return "/".join(done)


class _Member(tarfile.TarInfo):
    """A member whose long-name or pax header is refused when too big to read."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> _Member:
        member = super().frombuf(buf, encoding, errors)
        if member.type in _EXTENDED and member.size > MAX_HEADER:
            raise UnsafeArchive(
                f"the archive has a header of {member.size} bytes (more than {MAX_HEADER})"
            )
        return member


def _inflate(data: bytes, out: IO[bytes]) -> None:
    """The gzip stream `data` (one member or more) inflated into `out`, a chunk at a
    time; UnsafeArchive once past MAX_TAR bytes or when the stream is cut short."""
    total = 0
    rest = data
    while rest.strip(b"\0"):  # gzip allows zeros after its last member
        inflate = zlib.decompressobj(47)  # gzip or zlib, by the header
        chunk = inflate.decompress(rest, _CHUNK)
        while True:
            total += len(chunk)
            if total > MAX_TAR:
                raise UnsafeArchive(f"the archive unpacks to more than {MAX_UNPACKED} bytes")
            out.write(chunk)
            if inflate.eof:
                break
            chunk = inflate.decompress(inflate.unconsumed_tail, _CHUNK)
            if not chunk and not inflate.unconsumed_tail:
                raise UnsafeArchive("the archive cannot be read: its gzip stream is cut short")
        rest = inflate.unused_data


def check(archive: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """Every member, checked; UnsafeArchive at the first that is not safe."""
    members: list[tarfile.TarInfo] = []
    names: dict[str, tarfile.TarInfo] = {}
    total = 0
    while (member := archive.next()) is not None:
        if len(members) >= MAX_MEMBERS:
            raise UnsafeArchive(f"the archive has more than {MAX_MEMBERS} members")
        total += max(member.size, 0)
        if total > MAX_UNPACKED:
            raise UnsafeArchive(f"the archive unpacks to more than {MAX_UNPACKED} bytes")
        name = _name(member.name)
        if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
            raise UnsafeArchive(f"the archive's member {member.name!r} is a special file")
        if name in names and not (member.isdir() and names[name].isdir()):
            raise UnsafeArchive(f"the archive names {member.name!r} twice")
        if member.islnk():
            target = _name(member.linkname)
            if target not in names or not names[target].isreg():
                raise UnsafeArchive(
                    f"the archive's hard link {member.name!r} points at {member.linkname!r}, "
                    "not at a file of the archive"
                )
        names[name] = member
        members.append(member)
    links = {_name(m.name): m.linkname for m in members if m.issym()}
    for member in members:
        name = _name(member.name)
        parent = posixpath.dirname(name)
        while parent:
            if parent in links:
                raise UnsafeArchive(
                    f"the archive's member {member.name!r} is under the symbolic link {parent!r}"
                )
            parent = posixpath.dirname(parent)
        if member.issym() and (
            member.linkname.startswith("/")
            or _resolve(posixpath.join(posixpath.dirname(name), member.linkname), links) is None
        ):
            raise UnsafeArchive(
                f"the archive's symbolic link {member.name!r} points out, at {member.linkname!r}"
            )
    return members


def unpack(data: bytes, target: Path) -> None:
    """The archive in `data` (tar, or gzip-compressed tar: no other compression) into
    the empty directory `target`, every member checked first."""
    try:
        with tempfile.TemporaryFile() as plain:
            if data.startswith(_GZIP_MAGIC):
                _inflate(data, plain)
                plain.seek(0)
                source: IO[bytes] = plain
            else:
                source = io.BytesIO(data)
            with tarfile.open(fileobj=source, mode="r:", tarinfo=_Member) as archive:
                _extract(archive, check(archive), target)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise UnsafeArchive(f"the archive cannot be read: {exc}") from None


def _extract(archive: tarfile.TarFile, members: list[tarfile.TarInfo], target: Path) -> None:
    try:
        archive.extractall(target, members=members, filter="data")
    except tarfile.FilterError as exc:  # the second fence: check() lets nothing by it
        raise UnsafeArchive(f"the archive's member is not safe: {exc}") from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile):
        raise  # the archive's fault: unpack() says so
    except OSError as exc:  # the disk's: full, read-only
        raise file_error(exc) from None
