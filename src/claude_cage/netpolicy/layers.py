"""The policy files on the host, read into layers; a session's copy of them.

managed: /etc/claude-cage/policy.yaml; only where that file does not exist, the file
  config `managed_policy` names. Either must be owned by root and writable by root only
  (a file anyone else can change manages nothing). The config cannot point away from
  the /etc file, so a user cannot switch off what the administrator set there.
user: policy.yaml in the config directory (`claude-cage config path`).
project: .claude-cage/policy.yaml of the session's project as the host holds it: the
  repository a `--clone` session copies (the session writes only its own copy), or a
  directory bound read-only (`--mount DIR:ro`). A file the session can change is not
  read at all (`policy show` says so): one in a read-write mount, also a read-only mount
  or a clone's repository held by a read-write mount (`--mount ~/src --mount
  ~/src/app:ro`), and a file reached through a link. Every layer's file must be a
  regular file (a fifo would hang the start).
The layers a session runs with are kept in its directory (policy.json), so that a
restarted companion gets them again; `policy apply` reads the files anew.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from claude_cage import paths
from claude_cage.errors import BadInput, CageError, file_error
from claude_cage.netpolicy.rules import Layer, layer_from_file
from claude_cage.record import Mount

MANAGED_FILE = Path("/etc/claude-cage/policy.yaml")
IMAGE_LABEL = "cage.egress-policy"  # a companion image that enforces policy files
PROJECT_FILE = Path(".claude-cage/policy.yaml")
SESSION_FILE = "policy.json"
MAX_BYTES = 1 << 20
VALIDATE_HINT = "see what is wrong with 'claude-cage policy validate {path}'"


def require_image_support(image: str, labels: dict[str, str]) -> None:
    """Refuse a companion image that would ignore the policy (built before it existed):
    its managed denies would not hold."""
    if labels.get(IMAGE_LABEL) != "1":
        raise CageError(
            f"the companion image {image} was built by an older claude-cage: it cannot "
            "enforce egress policy files",
            "rebuild the images: claude-cage build all",
        )


def managed_file(configured: str | None) -> Path:
    if MANAGED_FILE.exists() or not configured:
        return MANAGED_FILE
    return Path(os.path.expanduser(configured))


def user_file() -> Path:
    return paths.config_dir() / "policy.yaml"


def _inside(path: Path, tree: Path) -> bool:
    return path == tree or tree in path.parents


def _writable(top: Path, mounts: Sequence[Mount]) -> str:
    """Why the session could change `top`'s project file, or "": a read-write mount holds
    it (as named, or once links are resolved), or a link leads to it."""
    file = Path(os.path.abspath(top / PROJECT_FILE))
    real = Path(os.path.realpath(file))
    for mount in mounts:
        source = Path(os.path.abspath(mount.source))
        if not mount.read_only and any(
            _inside(p, t) for p in (file, real) for t in (source, Path(os.path.realpath(source)))
        ):
            return f"the read-write mount {mount.source} holds it"
    if real != Path(os.path.realpath(top)) / PROJECT_FILE:
        return "it is reached through a link"
    return ""


def _not_read(top: Path, why: str) -> str:
    return (
        f"{top / PROJECT_FILE} is not read: the session can change it ({why}); use "
        "--clone, or mount it read-only and outside every read-write mount"
    )


def project_dir(repo: str | None, mounts: Sequence[Mount]) -> tuple[Path | None, str]:
    """The host directory whose project policy applies, or None and why not. Never a
    file the session can write: one in a read-write mount, or held by one."""
    if repo:
        why = _writable(Path(repo), mounts) if os.path.lexists(Path(repo) / PROJECT_FILE) else ""
        return (None, _not_read(Path(repo), why)) if why else (Path(repo), "")
    note = ""
    for mount in mounts:
        top = Path(mount.source)
        if not mount.target.startswith("/workspace") or not os.path.lexists(top / PROJECT_FILE):
            continue
        why = "a read-write mount" if not mount.read_only else _writable(top, mounts)
        if not why:
            return top, ""
        note = note or _not_read(top, why)
    return None, note


def read_text(path: Path) -> str | None:
    """The file's text; None when there is none."""
    found = _read(path)
    return None if found is None else found[0]


def _read(path: Path, regular: bool = False) -> tuple[str, os.stat_result] | None:
    """The file's text and the status of the file read (not of what its name leads to
    later); with `regular`, only a regular file (opened without blocking: a fifo or a
    device is refused unread)."""
    flags = os.O_RDONLY | (os.O_NONBLOCK if regular else 0)
    try:
        fd = os.open(path, flags)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise file_error(exc, path) from None
    try:
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if regular and not stat.S_ISREG(info.st_mode):
                raise BadInput(f"{path} is not a regular file", "a policy is a YAML file")
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise file_error(exc, path) from None
    if len(raw) > MAX_BYTES:
        raise BadInput(f"{path} is larger than 1 MiB", "a policy is a short list of rules")
    try:
        return raw.decode("utf-8"), info
    except UnicodeDecodeError:
        raise BadInput(f"{path} is not UTF-8 text", VALIDATE_HINT.format(path=path)) from None


def check_owner(path: Path, info: os.stat_result) -> None:
    """`info`: the file read (fstat), so that a name switched after the check reads
    nothing else."""
    if info.st_uid != 0 or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise CageError(
            f"the managed policy {path} must be owned by root and writable by root only",
            f"sudo chown root: {path} && sudo chmod 644 {path}",
        )


def read_layer(name: str, path: Path) -> Layer | None:
    found = _read(path, regular=True)
    if found is None:
        return None
    text, info = found
    if name == "managed":
        check_owner(path, info)
    from claude_cage.netpolicy import schema  # start-up: YAML is loaded only for a file

    parsed, problems = schema.parse(text)
    if parsed is None:
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise BadInput(
            f"the {name} policy: {first.text(str(path))}{more}", VALIDATE_HINT.format(path=path)
        )
    return layer_from_file(name, parsed, str(path))


def load(configured_managed: str | None, project: Path | None, note: str = "") -> tuple[Layer, ...]:
    """The managed, user and project layers as the host's files say now."""
    out = []
    for name, path in (
        ("managed", managed_file(configured_managed)),
        ("user", user_file()),
        ("project", project / PROJECT_FILE if project else None),
    ):
        layer = read_layer(name, path) if path is not None else None
        if layer is None:
            layer = Layer(name, note=note if name == "project" else "")
        out.append(layer)
    return tuple(out)


def save(session_dir: Path, layers: Sequence[Layer], learn: bool = False) -> None:
    """Atomically: a companion restarted later gets exactly these."""
    session_dir.mkdir(parents=True, exist_ok=True)
    value = {"version": 1, "learn": learn, "layers": [x.to_json() for x in layers]}
    data = json.dumps(value, indent=1)
    tmp = session_dir / (SESSION_FILE + ".tmp")
    try:
        tmp.write_text(data + "\n")
        tmp.replace(session_dir / SESSION_FILE)
    except OSError as exc:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half-written file behind
        raise file_error(exc, tmp) from None


def saved(session_dir: Path) -> tuple[tuple[Layer, ...], bool]:
    """The layers a session was given (none for one started before policy files), and
    whether it runs in learn mode."""
    text = read_text(session_dir / SESSION_FILE)
    if text is None:
        return (), False
    try:
        value: Any = json.loads(text)
        return tuple(Layer.from_json(x) for x in value["layers"]), value.get("learn") is True
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        raise CageError(
            f"{session_dir / SESSION_FILE} is damaged",
            "write it again with 'claude-cage policy apply NAME'",
        ) from None
