"""Which images and egress network the tests use, so two test runs can share one engine.

By default the tests use the images `claude-cage build` makes and the egress network of
the packaged config. With CAGE_TEST_TAG=x set, they use `claude-cage-*:x` and the
network `cage-filtered-x` instead: a run on another checkout builds and tests its own
images without replacing anyone else's. `scripts/run-tests` builds with the same names.
"""

from __future__ import annotations

import os

TAG = os.environ.get("CAGE_TEST_TAG", "")

IMAGE_CLI = f"claude-cage-cli:{TAG or 'latest'}"
IMAGE_DESKTOP = f"claude-cage-desktop:{TAG or 'latest'}"
IMAGE_COMPANION = f"claude-cage-companion:{TAG or 'latest'}"
EGRESS_NETWORK = f"cage-filtered-{TAG}" if TAG else "cage-filtered"


def cage_env() -> dict[str, str]:
    """The CAGE_* variables every claude-cage the tests run gets (none by default)."""
    if not TAG:
        return {}
    return {
        "CAGE_IMAGE_CLI": IMAGE_CLI,
        "CAGE_IMAGE_DESKTOP": IMAGE_DESKTOP,
        "CAGE_IMAGE_COMPANION": IMAGE_COMPANION,
        "CAGE_EGRESS_NETWORK": EGRESS_NETWORK,
    }


if __name__ == "__main__":  # `eval "$(python3 -m tests.isolation)"` in a shell
    for key, value in cage_env().items():
        print(f"export {key}={value}")
