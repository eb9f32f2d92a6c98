"""scripts/ensure-podman as the Podman tests call it: the session images copied from
Docker (the desktop image too when a test asks for it), its stdout on success; a skip
(a failure in CI) naming why when it fails."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_ensure_podman(
    *args: str, timeout: int, desktop: bool = False
) -> subprocess.CompletedProcess[str]:
    """The script's run, whatever its exit, with the session images to copy (an image
    whose id Podman has already is not copied again)."""
    images = [
        os.environ.get("CAGE_IMAGE_CLI", "claude-cage-cli:latest"),
        os.environ.get("CAGE_IMAGE_COMPANION", "claude-cage-companion:latest"),
    ]
    if desktop:
        images.append(os.environ.get("CAGE_IMAGE_DESKTOP", "claude-cage-desktop:latest"))
    return subprocess.run(
        [str(ROOT / "scripts" / "ensure-podman"), *args, *images],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ensure_podman(*args: str, what: str, timeout: int, desktop: bool = False) -> str:
    run = run_ensure_podman(*args, timeout=timeout, desktop=desktop)
    if run.returncode != 0:
        if os.environ.get("CAGE_REQUIRE_ENGINE"):
            pytest.fail(f"no {what}: {run.stderr}")
        pytest.skip(f"no {what}: {run.stderr.strip()[-500:]}")
    return run.stdout
