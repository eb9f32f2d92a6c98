"""Claude Code's managed settings for a session: the operator's policy, read-only inside.

Claude Code reads /etc/claude-code/managed-settings.json with the highest precedence of
all its settings, above the user's and the project's, which the agent can write. So
the file must be out of the agent's reach: claude-cage writes it on the host, in the
session's data directory, and binds that directory read-only over /etc/claude-code
(a root-owned directory on the image's read-only root). Inside, nothing can change,
replace, rename or remove it.

Its content: the operator's own file (config `claude_managed_settings`, a JSON object),
plus what claude-cage itself needs (the apiKeyHelper of a session with an API key
file; in a filtered session, a placeholder of its credential's kind, which the proxy
replaces), which wins over the operator's value for the same key. It is written afresh
at every start, from the configuration of that moment, and again when the kind of a
running session's credential changes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from claude_cage.credentials import placeholder_settings
from claude_cage.errors import BadInput, CageError, file_error
from claude_cage.kinds import Credential

FILE = "managed-settings.json"
# Images whose /etc/claude-code is a root-owned directory to bind over carry this label;
# in older ones it is a symlink into /run, where the bind would land and break the start.
IMAGE_LABEL = "cage.managed-settings"
API_KEY_HELPER = "/usr/local/bin/cage-api-key"
MAX_BYTES = 1024 * 1024


def operator_settings(path: str | None) -> dict[str, Any]:
    """The operator's managed settings file, checked: a JSON object, at most 1 MiB."""
    if not path:
        return {}
    where = Path(path).expanduser()
    hint = 'claude_managed_settings must name a JSON file such as {"permissions": {...}}'
    try:
        if where.stat().st_size > MAX_BYTES:
            raise BadInput(f"claude_managed_settings {where} is larger than 1 MiB", hint)
        data = json.loads(where.read_text())
    except OSError as exc:
        raise BadInput(
            f"cannot read claude_managed_settings {where}: {exc.strerror}", hint
        ) from None
    except (ValueError, UnicodeDecodeError):
        raise BadInput(f"claude_managed_settings {where} is not valid JSON", hint) from None
    if not isinstance(data, dict):
        raise BadInput(f"claude_managed_settings {where} is not a JSON object", hint)
    return data


def compose(path: str | None, credential: str) -> dict[str, Any]:
    """The session's managed settings: the operator's, then claude-cage's own keys."""
    settings = operator_settings(path)
    if credential == Credential.API_KEY_FILE:
        settings["apiKeyHelper"] = API_KEY_HELPER
    else:
        settings.update(placeholder_settings(Credential(credential)))
    return settings


def write(directory: Path, settings: dict[str, Any]) -> Path:
    """Write the settings into `directory` (made 0755, the file 0644: Claude Code runs as
    the session's user and must read them), atomically: the directory is what is bound,
    so a rename inside it shows in a running session too."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o755)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{FILE}.")
    except OSError as exc:
        raise file_error(exc, directory) from None
    try:
        with os.fdopen(fd, "w") as handle:
            os.fchmod(handle.fileno(), 0o644)
            json.dump(settings, handle, indent=2)
            handle.write("\n")
        os.replace(tmp, directory / FILE)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):  # a write to a full disk names no file of its own
            raise file_error(exc, directory / FILE) from None
        raise
    return directory


def forget_if_unrecorded(session_dir: Path) -> None:
    """Remove the settings written for a session whose start failed before its
    metadata was recorded (and its directory, when nothing else is in it)."""
    if (session_dir / "metadata").exists():
        return
    for made in ("claude-code", "user-claude"):  # and the user's setup (userconfig.py)
        shutil.rmtree(session_dir / made, ignore_errors=True)
    for policy in ("policy.json", "policy.json.tmp"):  # its egress policy (netpolicy/layers.py)
        with contextlib.suppress(OSError):
            (session_dir / policy).unlink()
    with contextlib.suppress(OSError):
        session_dir.rmdir()


def require_image_support(image: str, labels: dict[str, str]) -> None:
    """Refuse, with the fix, an image built before managed settings were bound read-only."""
    if labels.get(IMAGE_LABEL) != "read-only":
        raise CageError(
            f"image {image} was built by an older claude-cage: its /etc/claude-code cannot "
            "take the read-only managed settings",
            "rebuild the images: claude-cage build all",
        )
