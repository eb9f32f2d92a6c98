"""One session's record: what its metadata file holds, typed.

`SessionRecord` is frozen; change one with `dataclasses.replace`. Adding a field is
one line: a typed field with a default (the default is what a metadata file without
the key means). `from_fields` and `to_fields` convert every field by its type, so
nothing else needs to change. They sit between the typed record and the key=value
text, which `metadata.parse` and `metadata.render` read and write.

Keys this version does not know are kept in `extra` and written back unchanged, so a
newer claude-cage's metadata survives an older one. A value that does not fit its
field (its type; the config's check for a setting the record keeps; text with a NUL
byte; a number that is not finite) is DamagedField, naming the field: the record is
damaged, never half read.
"""

from __future__ import annotations

import functools
import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

from claude_cage.kinds import (
    DEFAULT_MODE,
    DEFAULT_NETWORK,
    DEFAULT_RUNTIME,
    Credential,
    Mode,
    Network,
    Runtime,
    Status,
)


@dataclass(frozen=True)
class Mount:
    """A host directory bound into the session (checked by `requests.parse_mount`)."""

    source: str
    target: str
    read_only: bool

    def to_text(self) -> str:
        return f"{self.source}:{self.target}:{'ro' if self.read_only else 'rw'}"

    @classmethod
    def from_text(cls, text: str) -> Mount:
        """The inverse of to_text, for paths without colons (see from_legacy)."""
        return cls.from_legacy(text)

    @classmethod
    def from_legacy(cls, text: str) -> Mount:
        """A mount as metadata schema 1 kept it, `to_text` unescaped. Its target is
        /workspace/<basename>: a basename holds no slash, so the last ":/workspace/"
        starts the target whatever colons the paths hold."""
        rest, _, flag = text.rpartition(":")
        cut = rest.rfind(":/workspace/")
        if cut < 0:
            cut = rest.rfind(":")
        return cls(rest[:cut], rest[cut + 1 :], flag == "ro")

    def to_field(self) -> str:
        """How the metadata keeps it: `to_text` with `\\` and `:` escaped in the paths, so
        any path reads back exactly."""

        def quote(path: str) -> str:
            return path.replace("\\", "\\\\").replace(":", "\\:")

        return f"{quote(self.source)}:{quote(self.target)}:{'ro' if self.read_only else 'rw'}"

    @classmethod
    def from_field(cls, text: str) -> Mount:
        if not isinstance(text, str):
            raise TypeError(f"{text!r} is not a mount")
        parts, current, i = [], [], 0
        while i < len(text):
            if text[i] == "\\" and i + 1 < len(text):
                current.append(text[i + 1])
                i += 2
                continue
            if text[i] == ":":
                parts.append("".join(current))
                current = []
            else:
                current.append(text[i])
            i += 1
        parts.append("".join(current))
        if len(parts) == 3 and parts[2] in ("ro", "rw"):
            return cls(parts[0], parts[1], parts[2] == "ro")
        if text.endswith((":ro", ":rw")) and ":" in text[:-3]:  # `to_text`, unescaped
            return cls.from_legacy(text)
        raise ValueError(f"{text!r} is not a mount")


@dataclass(frozen=True)
class SessionRecord:
    name: str
    mode: Mode = DEFAULT_MODE
    status: Status = Status.RUNNING
    created: str = ""  # ISO 8601 UTC, the first start
    container: str = ""
    companion: str = ""  # empty when the session has no companion
    network: Network = DEFAULT_NETWORK
    runtime: Runtime = DEFAULT_RUNTIME  # older metadata without the key: runc
    image: str = ""
    cpus: float | None = None  # None: the config's, when started again
    memory: str | None = None
    pids: int | None = None
    mounts: tuple[Mount, ...] = ()
    ports: tuple[tuple[int, int], ...] = ()  # (host, container)
    env_keys: tuple[str, ...] = ()  # names only: the values are never kept
    ephemeral: bool = False
    persist: bool = True
    credential: Credential = Credential.NONE
    allowed_hosts: tuple[str, ...] = ()
    # registry presets by name (presets.py): GET and HEAD rules of the session layer
    allowed_presets: tuple[str, ...] = ()
    allowed_ports: tuple[int, ...] = ()
    desktop_port: int | None = None
    desktop_bind: str | None = None
    started: str | None = None  # every start
    stopped: str | None = None
    last_active: str | None = None  # shell, attach, exec and reap's checks
    cpu_total: int | None = None  # reap's last CPU sample (ns since the container started)
    cpu_sampled: str | None = None  # ... and when it was taken
    repo: str | None = None  # clone mode: the user's repository on the host,
    repo_name: str | None = None  # its name (the clone is /workspace/<repo_name>),
    branch: str | None = None  # the session's branch in its copy,
    base: str | None = None  # the commit the copy started from,
    start: str | None = None  # and the commit holding the uncommitted work it began with
    uid: int | None = None  # the session's user: the owner of its read-write mounts
    gid: int | None = None  # (bindmounts.py); None: the image's user, 1000
    user_config: bool = False  # the user's Claude Code setup is bound in (userconfig.py)
    # The project's devcontainer.json (the host's copy) as the first start read it:
    # its file, the agent's folder (workspaceFolder) and what runs at every start.
    devcontainer: str | None = None
    workspace_folder: str | None = None
    post_start: str | None = None
    # The config's settings that shape the session, as it was started (see RECORDED).
    egress_network: str | None = None
    allowed_address_ranges: tuple[str, ...] = ()  # the address guard's exceptions
    seccomp_profile: str | None = None
    apparmor_profile: str | None = None
    read_only_root: bool | None = None
    tmp_size: str | None = None
    home_size: str | None = None
    nofile: int | None = None
    nproc: int | None = None
    vnc_resolution: str | None = None
    engine: str = ""  # the Docker engine it lives on: a context or URL ("" = the local one)
    updated: str | None = None  # set by the store on every write
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)  # unknown keys

    @property
    def clone_pending(self) -> bool:
        """A `start --clone` that has not finished: its first record names the clone
        asked for (repo_name), and only the finished start records the base it copied."""
        return self.status == Status.STARTING and bool(self.repo_name) and not self.base


# The config keys kept with a session when it starts, and put back over the config when
# it starts again: the same session (the same model endpoint above all) whatever the
# environment says then. `status` shows them.
RECORDED = (
    "egress_network",
    "allowed_ports",
    "allowed_address_ranges",
    "seccomp_profile",
    "apparmor_profile",
    "read_only_root",
    "tmp_size",
    "home_size",
    "nofile",
    "nproc",
    "vnc_resolution",
)


@functools.cache
def _types() -> dict[str, Any]:
    hints = typing.get_type_hints(SessionRecord)
    return {f.name: hints[f.name] for f in fields(SessionRecord) if f.name != "extra"}


def field_types() -> dict[str, Any]:
    """Each field's type, by name (`extra` aside)."""
    return _types()


@functools.cache
def json_keys() -> frozenset[str]:
    """The keys whose values are JSON arrays in the file."""
    return frozenset(k for k, t in _types().items() if typing.get_origin(t) is tuple)


@functools.cache
def _shape(kind: Any) -> tuple[Any, tuple[Any, ...]]:
    """A field type's origin and arguments, worked out once (`list` decodes every field
    of every record)."""
    return typing.get_origin(kind), typing.get_args(kind)


def _decode(kind: Any, raw: Any) -> Any:
    """One value from the file (text, or a list for JSON keys) as `kind`; ValueError or
    TypeError when it does not fit."""
    origin, args = _shape(kind)
    if origin in (types.UnionType, typing.Union):  # X | None: an empty value is None
        inner = next(a for a in args if a is not type(None))
        return None if raw in (None, "") else _decode(inner, raw)
    if origin is tuple:
        items = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(items, list):
            raise ValueError(f"{raw!r} is not a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], item) for item in items)
        if len(items) != len(args):
            raise ValueError(f"{raw!r} does not have {len(args)} items")
        return tuple(_decode(a, item) for a, item in zip(args, items, strict=True))
    if kind is bool:
        if raw in (True, "true"):
            return True
        if raw in (False, "false"):
            return False
        raise ValueError(f"{raw!r} is not true or false")
    if kind in (int, float):
        if isinstance(raw, bool):
            raise TypeError("a bool is not a number")
        return kind(raw)
    if kind is str:
        if not isinstance(raw, str):
            raise TypeError(f"{raw!r} is not text")
        return raw
    if isinstance(kind, type) and issubclass(kind, Enum):
        return kind(raw)
    if isinstance(kind, type) and hasattr(kind, "from_field"):
        return kind.from_field(raw)
    if isinstance(kind, type) and hasattr(kind, "from_text"):
        return kind.from_text(raw)
    raise TypeError(f"no conversion for {kind}")


def encode(value: Any) -> Any:
    """One value as the file holds it: text, a number, a bool, or a list (JSON)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, float):  # "2", as the seed would write it, when that is exact
        return f"{value:g}" if float(f"{value:g}") == value else repr(value)
    if isinstance(value, tuple | list):
        return [encode(item) for item in value]
    if hasattr(value, "to_field"):
        return value.to_field()
    if hasattr(value, "to_text"):
        return value.to_text()
    return value


class DamagedField(ValueError):
    """A value of the record that does not fit its field; `key` names the field."""

    def __init__(self, key: str, raw: Any, why: str) -> None:
        self.key = key
        shown = repr(raw)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        super().__init__(f"{key} {shown}: {why}")


# Fields that hold a config setting (as the session was started, or asked for with a
# flag): each is checked as the config checks it, so a value a start would refuse is
# damage now, not a failure on the next restart.
CHECKED_AS_CONFIG = (
    "cpus",
    "memory",
    "pids",
    "tmp_size",
    "home_size",
    "nofile",
    "nproc",
    "vnc_resolution",
    "desktop_bind",
    "seccomp_profile",
    "apparmor_profile",
    "egress_network",
    "allowed_ports",
    "allowed_presets",
)


def _check(key: str, value: Any) -> None:
    """ValueError when a decoded value cannot be right (see CHECKED_AS_CONFIG)."""
    for item in _leaves(value):
        if isinstance(item, str) and "\x00" in item:
            raise ValueError("it holds a NUL byte")
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError("not a finite number")
        if isinstance(item, int) and not isinstance(item, bool) and abs(item) >= 1 << 63:
            raise ValueError("out of range")
    if value is None:
        return
    if key in CHECKED_AS_CONFIG:
        from claude_cage import config  # start-up: the validators, only with a record

        config.VALIDATORS[key](list(value) if isinstance(value, tuple) else value)
    elif key == "desktop_port" or key == "ports":
        for port in _leaves(value):
            if not 0 < port < 65536:
                raise ValueError(f"{port} is not a port")


def _leaves(value: Any) -> Any:
    """The plain values inside a decoded value (a mount's paths, a tuple's items)."""
    if isinstance(value, tuple):
        for item in value:
            yield from _leaves(item)
    elif isinstance(value, Mount):
        yield value.source
        yield value.target
    else:
        yield value


def from_fields(data: Mapping[str, Any]) -> SessionRecord:
    """A record from parsed metadata (which must name the session); DamagedField for
    the first value that does not fit its field."""
    kinds = _types()
    known: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, raw in data.items():
        if key not in kinds:
            extra[key] = raw
            continue
        try:
            known[key] = _decode(kinds[key], raw)
            _check(key, known[key])
        except Exception as exc:  # whatever the damage makes a decoder raise
            raise DamagedField(key, raw, str(exc) or type(exc).__name__) from None
    if "name" not in known:
        raise ValueError("the metadata names no session")
    return SessionRecord(**known, extra=extra)


def to_fields(record: SessionRecord) -> dict[str, Any]:
    """The record as metadata keys and values; None values are left out."""
    data = dict(record.extra)
    for key in _types():
        value = encode(getattr(record, key))
        if value is not None:
            data[key] = value
    return data
