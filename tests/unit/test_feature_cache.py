"""The feature cache as gc reads it, damaged: an entry of its manifest index that is not
a regular file (a fifo would block a read for ever) is named, never read."""

from __future__ import annotations

import os
from pathlib import Path

from claude_cage.operations import remote_features

LAYER = "a" * 64


def test_a_fifo_in_the_manifest_index_is_named_not_read(tmp_path: Path) -> None:
    root = remote_features.cache_dir(tmp_path)
    (root / LAYER).mkdir(parents=True)
    index = root / "manifests"
    index.mkdir()
    (index / "good").write_text(f"sha256:{LAYER}\n")
    os.mkfifo(index / "fifo")
    (index / "link").symlink_to(index / "good")
    found = {path.name: why for path, why in remote_features.stale(tmp_path, 30)}
    assert found == {
        "fifo": "names a feature no longer cached",
        "link": "names a feature no longer cached",
    }
