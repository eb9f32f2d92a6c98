"""Fixtures shared by the unit tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty config dir (returned) and data dir, and no CAGE_* variables or
    MONGODB_URI from the caller's shell."""
    for key in list(os.environ):
        if key.startswith("CAGE_") or key == "MONGODB_URI":
            monkeypatch.delenv(key)
    conf = tmp_path / "config"
    conf.mkdir()
    monkeypatch.setenv("CAGE_CONFIG_DIR", str(conf))
    monkeypatch.setenv("CAGE_DATA_DIR", str(tmp_path / "data"))
    return conf
