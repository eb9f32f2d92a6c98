"""Claude Code releases: the one an image holds, and the newest the npm registry offers.

The CLI image records its release in the label `cage.claude-code-version`. `build`
resolves `latest` to a concrete release before building, so the label always names one;
`doctor` compares it with the registry's newest, and says nothing alarming when the
registry cannot be reached (offline machines are normal).
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request

from claude_cage.errors import BadInput

PACKAGE = "@anthropic-ai/claude-code"
LABEL = "cage.claude-code-version"
DEFAULT_REGISTRY = "https://registry.npmjs.org"
RELEASE = re.compile(r"^\d+\.\d+\.\d+$")
DOCTOR_TIMEOUT = 3.0  # seconds; doctor must stay quick when offline
BUILD_TIMEOUT = 15.0


def is_release(value: str) -> bool:
    return bool(RELEASE.match(value))


def registry() -> str:
    """npm's registry, or the one npm itself is told to use."""
    return (os.environ.get("NPM_CONFIG_REGISTRY") or DEFAULT_REGISTRY).rstrip("/")


def latest_release(timeout: float = DOCTOR_TIMEOUT) -> str | None:
    """The release the registry tags `latest`, or None when it cannot be asked."""
    url = f"{registry()}/{PACKAGE}/latest"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            version = json.loads(response.read()).get("version")
    except (OSError, ValueError, AttributeError):
        return None  # offline, refused, a proxy's error page: not this tool's failure
    return version if isinstance(version, str) and is_release(version) else None


def resolve(spec: str) -> str:
    """A concrete release for `spec` (a release, or `latest`)."""
    if is_release(spec):
        return spec
    if spec != "latest":
        raise BadInput(
            f"{spec!r} is not a Claude Code release",
            "give a release like 2.1.332, or latest",
        )
    version = latest_release(timeout=BUILD_TIMEOUT)
    if version is None:
        raise BadInput(
            f"cannot ask the npm registry ({registry()}) for the latest Claude Code release",
            "check the network (or HTTPS_PROXY), or pin a release: "
            "claude-cage build --claude-code-version 2.1.332",
        )
    return version


def older(version: str, than: str) -> bool:
    """Whether release `version` comes before release `than`."""
    return tuple(map(int, version.split("."))) < tuple(map(int, than.split(".")))
