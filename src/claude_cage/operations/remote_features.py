"""Remote dev container features (`ghcr.io/devcontainers/features/node:1`), pulled
from their registry (ociclient.py), checked, unpacked (safetar.py) and kept by digest.

The cache is `$CAGE_DATA_DIR/cache/features/<layer sha256>/`: a layer is unpacked into
a temporary directory beside it and renamed into place once whole, so a folder there is
always a complete, verified feature. A tag is resolved by the registry at every new
session (a tag moves); its layer, when the cache has it, is not pulled again. A
reference pinned by digest (`...@sha256:<hex>`) is found in the cache without asking the
registry at all (`manifests/<manifest sha256>` names its layer).

Each use of a cached layer sets its folder's modification time to now (access times
are not kept on most mounts), and `gc` removes a layer unused for `feature_cache_days`
(`stale`), with the manifest entries naming it, and the half-unpacked folders a killed
start left. A start that finds its layer gone pulls it again.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from claude_cage import ociclient, safetar
from claude_cage.errors import file_error

CACHE = ("cache", "features")
STALE_INCOMING = 3600.0  # seconds: an unpacking folder this old is a killed start's
_LAYER = re.compile(r"[0-9a-f]{64}")
Progress = Callable[[str], None]


def cache_dir(data_dir: Path) -> Path:
    return data_dir.joinpath(*CACHE)


def _hex(digest: str) -> str:
    return digest.removeprefix("sha256:")


class Fetcher:
    """Remote features for one start: each reference to its unpacked folder."""

    def __init__(
        self,
        data_dir: Path,
        mirrors: Mapping[str, str] | None = None,
        ca_file: str | None = None,
        progress: Progress | None = None,
        timeout: float = ociclient.TIMEOUT,
    ) -> None:
        self.root = cache_dir(data_dir)
        self.mirrors = dict(mirrors or {})
        self.ca_file = ca_file
        self.progress = progress or (lambda _message: None)
        self.timeout = timeout
        self.requests = 0  # registry requests made, in all

    def __call__(self, ident: str) -> Path:
        ref = ociclient.parse_reference(ident)
        if ref.digest:
            folder = self._pinned(ref.digest)
            if folder is not None:
                return folder
        client = ociclient.Client(ref, self.mirrors, self.ca_file, self.timeout)
        try:
            manifest = client.manifest()
            layer = ociclient.feature_layer(manifest, ref)
            folder = self.root / _hex(layer.digest)
            if not folder.is_dir():
                self.progress(f"pulling feature {ref} ({layer.size} bytes)")
                self._store(client.blob(layer), folder)
        finally:
            self.requests += client.requests
        if ref.digest:
            self._remember(ref.digest, layer.digest)
        _used(folder)
        return folder

    def _pinned(self, manifest_digest: str) -> Path | None:
        try:
            layer = (self.root / "manifests" / _hex(manifest_digest)).read_text().strip()
        except (OSError, UnicodeDecodeError):
            return None
        folder = self.root / _hex(layer)
        if not (layer and "/" not in layer and folder.is_dir()):
            return None
        _used(folder)
        return folder

    def _store(self, data: bytes, folder: Path) -> None:
        """The layer unpacked into `folder`, whole or not at all."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            incoming = Path(tempfile.mkdtemp(prefix=".incoming-", dir=self.root))
        except OSError as exc:
            raise file_error(exc, self.root) from None
        try:
            safetar.unpack(data, incoming)
            try:
                os.rename(incoming, folder)
            except OSError:
                if not folder.is_dir():  # else another start stored it first
                    raise
        except OSError as exc:
            raise file_error(exc, folder) from None
        finally:
            shutil.rmtree(incoming, ignore_errors=True)

    def _remember(self, manifest_digest: str, layer_digest: str) -> None:
        """The layer of a pinned manifest, for the next start (a cache: best effort)."""
        index = self.root / "manifests"
        try:
            index.mkdir(parents=True, exist_ok=True)
            partial = index / f".{_hex(manifest_digest)}.{os.getpid()}"
            partial.write_text(layer_digest + "\n")
            partial.replace(index / _hex(manifest_digest))
        except OSError:
            pass


def _used(folder: Path) -> None:
    """A layer's folder marked as used now, for gc (a cache: best effort)."""
    with contextlib.suppress(OSError):
        os.utime(folder)


def stale(data_dir: Path, days: int, now: float | None = None) -> list[tuple[Path, str]]:
    """What gc removes from the feature cache, each with why: layers unused for `days`
    days (0: kept for ever), unpacking folders of killed starts, and manifest entries
    whose layer is gone or going. Changes nothing."""
    root = cache_dir(data_dir)
    now = time.time() if now is None else now
    found: list[tuple[Path, str]] = []
    going: set[str] = set()
    try:
        entries = sorted(root.iterdir()) if root.is_dir() else []
    except OSError:
        return []
    for entry in entries:
        try:
            age = now - entry.lstat().st_mtime
        except OSError:
            continue
        if entry.name.startswith(".incoming-") and age > STALE_INCOMING:
            found.append((entry, "left half-unpacked by a killed start"))
        elif _LAYER.fullmatch(entry.name) and days > 0 and age > days * 86400:
            found.append((entry, f"a feature not used for {days} days"))
            going.add(entry.name)
    index = root / "manifests"
    try:
        manifests = sorted(index.iterdir()) if index.is_dir() else []
    except OSError:
        manifests = []
    for entry in manifests:
        layer = _read_small(entry)
        if entry.name.startswith("."):  # a killed write's
            if now - _mtime(entry) > STALE_INCOMING:
                found.append((entry, "left half-written by a killed start"))
        elif layer in going or not _LAYER.fullmatch(layer) or not (root / layer).is_dir():
            found.append((entry, "names a feature no longer cached"))
    return found


def _read_small(entry: Path) -> str:
    """A manifest entry's layer digest: a regular file's first bytes ('' for anything
    else, a fifo or a link included, so a damaged entry cannot stall gc)."""
    try:
        if not stat.S_ISREG(entry.lstat().st_mode):
            return ""
        with entry.open("rb") as handle:
            return _hex(handle.read(128).decode(errors="replace").strip())
    except OSError:
        return ""


def _mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except OSError:
        return float("inf")


def remove(path: Path) -> None:
    """One cache entry `stale` named, gone (a folder is renamed aside first, so a start
    never finds it half removed)."""
    if path.is_dir() and not path.is_symlink():
        aside = path.with_name(f".incoming-removing-{path.name}")
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return
        shutil.rmtree(aside)
    else:
        path.unlink(missing_ok=True)
