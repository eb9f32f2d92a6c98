"""Which images and egress network the tests use, so two test runs can share one engine.

By default the tests use the images `claude-cage build` makes and the egress network of
the packaged config. With CAGE_TEST_TAG=x set, they use `claude-cage-*:x` and the
network `cage-filtered-x` instead: a run on another checkout builds and tests its own
images without replacing anyone else's. `scripts/run-tests` builds with the same names.

Under pytest-xdist each worker (PYTEST_XDIST_WORKER=gw0, gw1, ...) gets its own egress
network, `cage-filtered[-x]-gwN`: the tests' hosts answer there under fixed names
(allowed.test, api.anthropic.com), and two workers' hosts on one network would share
those names. The images stay shared.
"""

from __future__ import annotations

import os

TAG = os.environ.get("CAGE_TEST_TAG", "")
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")

IMAGE_CLI = f"claude-cage-cli:{TAG or 'latest'}"
IMAGE_DESKTOP = f"claude-cage-desktop:{TAG or 'latest'}"
IMAGE_COMPANION = f"claude-cage-companion:{TAG or 'latest'}"
EGRESS_NETWORK = "-".join(part for part in ("cage-filtered", TAG, WORKER) if part)
# For the tests' own containers: rootful Podman asks for 1,048,576 open files and as many
# processes unless told otherwise, which fails where its service may not raise its limits
# that far (no CAP_SYS_RESOURCE, as on this machine). claude-cage names both for its own.
LIMITS = ("--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096")


def cage_env() -> dict[str, str]:
    """The CAGE_* variables every claude-cage the tests run gets (none by default)."""
    images = {
        "CAGE_IMAGE_CLI": IMAGE_CLI,
        "CAGE_IMAGE_DESKTOP": IMAGE_DESKTOP,
        "CAGE_IMAGE_COMPANION": IMAGE_COMPANION,
    }
    network = {"CAGE_EGRESS_NETWORK": EGRESS_NETWORK}
    return {**(images if TAG else {}), **(network if TAG or WORKER else {})}


if __name__ == "__main__":  # `eval "$(python3 -m tests.isolation)"` in a shell
    for key, value in cage_env().items():
        print(f"export {key}={value}")
