"""Remote dev container features (`ghcr.io/devcontainers/features/node:1`), pulled
from their registry (ociclient.py), checked, unpacked (safetar.py) and kept by digest.

The cache is `$CAGE_DATA_DIR/cache/features/<layer sha256>/`: a layer is unpacked into
a temporary directory beside it and renamed into place once whole, so a folder there is
always a complete, verified feature. A tag is resolved by the registry at every new
session (a tag moves); its layer, when the cache has it, is not pulled again. A
reference pinned by digest (`...@sha256:<hex>`) is found in the cache without asking the
registry at all (`manifests/<manifest sha256>` names its layer).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from claude_cage import ociclient, safetar
from claude_cage.errors import file_error

CACHE = ("cache", "features")
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
        return folder

    def _pinned(self, manifest_digest: str) -> Path | None:
        try:
            layer = (self.root / "manifests" / _hex(manifest_digest)).read_text().strip()
        except (OSError, UnicodeDecodeError):
            return None
        folder = self.root / _hex(layer)
        return folder if layer and "/" not in layer and folder.is_dir() else None

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
