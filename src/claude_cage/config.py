"""Layered configuration.

Each layer overrides the one before:
  1. packaged defaults (DEFAULTS below)
  2. the user file, ~/.config/claude-cage/config.yaml
  3. the file given with --config
  4. CAGE_<KEY> environment variables (and MONGODB_URI)
  5. command-line flags (applied by the caller)

`validate()` names every bad key or value together with where it came from.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from claude_cage import paths
from claude_cage.errors import BadInput
from claude_cage.kinds import DEFAULT_MODE, DEFAULT_NETWORK, DEFAULT_RUNTIME, Mode, Network, Runtime

# Where each default host comes from (README: what each is for, and who can send to it).
# None of them takes data from anyone without an account: Claude Code runs with error
# reporting (sentry.io), telemetry (statsig) and other non-essential traffic off
# (policy.CLAUDE_CODE_ENV), and npm's registry, which takes `npm publish` from any
# account, is one --allow-host away rather than a default.
#   api.anthropic.com      the Messages API Claude Code calls
#   claude.ai              OAuth login with a Claude subscription
#   console.anthropic.com  OAuth login with an Anthropic Console account
#   platform.claude.com    the Console's new home, used by the login flow
DEFAULT_ALLOWED_HOSTS = [
    "api.anthropic.com",
    "claude.ai",
    "console.anthropic.com",
    "platform.claude.com",
]

MEMORY_CAP = 4 * 1024**3


def host_cpus() -> int:
    """The cores this host gives us (the affinity mask, where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def host_memory() -> int:
    """The host's physical memory in bytes (0 when the platform does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return 0


def default_cpus(cores: int) -> float:
    """Every core but one, and at least one: a busy session leaves the host a core."""
    return float(max(1, cores - 1))


def default_memory(total: int) -> str:
    """Half the host's memory, at most 4g and at least 512m: a session near its limit
    leaves the host (and a second session) room."""
    if total <= 0:
        return "4g"
    mib = max(512, min(total // 2, MEMORY_CAP) // 1024**2)
    return f"{mib // 1024}g" if mib % 1024 == 0 else f"{mib}m"


DEFAULTS: dict[str, Any] = {
    "mode": DEFAULT_MODE,
    "network": DEFAULT_NETWORK,
    "cpus": default_cpus(host_cpus()),
    "memory": default_memory(host_memory()),
    "pids": 512,
    "nofile": 4096,
    "nproc": 1024,
    "tmp_size": "512m",
    "home_size": "512m",
    "workspace_size": "10g",  # the clone's volume; 0: unbounded (see quota.py)
    "data_size": "2g",  # Claude Code's data volume
    "socket_size": "16m",  # the socket volume: it holds sockets only
    "allowed_hosts": DEFAULT_ALLOWED_HOSTS,
    "allowed_ports": [80, 443],
    "image_cli": "claude-cage-cli:latest",
    "image_desktop": "claude-cage-desktop:latest",
    "image_companion": "claude-cage-companion:latest",
    "base_image": "debian:bookworm-slim",
    # The newest release at build time (recorded in the image's labels); pin one here
    # (e.g. "2.1.332") for reproducible images.
    "claude_code_version": "latest",
    "desktop_port": 6080,
    "desktop_bind": "127.0.0.1",
    "vnc_resolution": "1280x800x24",
    "read_only_root": True,
    "seccomp_profile": "default",
    "apparmor_profile": "docker-default",
    "max_sessions": 5,
    "idle_timeout": 60,
    "memory_warn": 80,
    "memory_kill": 95,
    "egress_network": "cage-filtered",
    "egress_log_size": "16m",
    # PEM files of extra CAs the companion trusts when it verifies the servers it adds
    # credentials for (a TLS-intercepting corporate proxy's, or a test CA).
    "upstream_ca_certs": [],
    "mongodb_uri": None,
    "mongodb_db": "claude_cage",
    # A JSON file of Claude Code managed settings (the operator's policy), delivered
    # read-only into every session at /etc/claude-code/managed-settings.json.
    "claude_managed_settings": None,
    # Docker engines besides the local one (engines.py): context names or URLs, each
    # optionally with its own max_sessions; `start` uses default_engine ("" = local).
    "engines": [],
    "default_engine": "",
    "engine_timeout": 2.0,
    "runtime": DEFAULT_RUNTIME,
}

_SIZE = re.compile(r"^\d+(\.\d+)?[bkmg]?$", re.IGNORECASE)
_HOST = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")


def parse_size(text: str) -> int:
    """'4g' -> bytes. Raises ValueError on a bad size."""
    text = str(text).strip().lower()
    if not _SIZE.match(text):
        raise ValueError(f"{text!r} is not a size like 512m or 4g")
    units = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
    unit = text[-1] if text[-1] in units else "b"
    number = float(text.rstrip("bkmg"))
    return int(number * units[unit])


def _choice(kind: type[StrEnum]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        try:
            return kind(value)
        except ValueError:
            raise ValueError(f"must be one of {', '.join(kind)}") from None

    return check


def _number(kind: type, low: float, high: float) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        try:
            number = kind(value)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not a number") from None
        if isinstance(value, bool) or not low <= number <= high:
            raise ValueError(f"must be between {_plain(low)} and {_plain(high)}")
        return number

    return check


def _plain(number: float) -> str:
    """16 -> '16', 1_000_000 -> '1000000' (not '1e+06'), 0.1 -> '0.1'."""
    return str(int(number)) if float(number).is_integer() else str(number)


def _size_at_least(minimum: str) -> Callable[[Any], Any]:
    """A size no smaller than `minimum`: Docker and tmpfs read 0 as 'no limit'."""
    floor = parse_size(minimum)

    def check(value: Any) -> Any:
        if parse_size(value) < floor:
            raise ValueError(f"{value!r} is below the minimum of {minimum}")
        return str(value).strip().lower()

    return check


def _volume_size(value: Any) -> Any:
    """A volume's size limit: 0 for none, else at least 16m (ext4 needs room)."""
    size = parse_size(value)
    if 0 < size < parse_size("16m"):
        raise ValueError(f"{value!r} is below the minimum of 16m (0: no limit)")
    return str(value).strip().lower()


def _boolean(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{value!r} is not true or false")


def _text(value: Any) -> Any:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty string")
    return value


def _optional_text(value: Any) -> Any:
    return None if value in (None, "") else _text(value)


HOST_HINT = "use a name under a registrable domain, like api.example.com or *.example.com"


def validate_host(host: str) -> str:
    """A host name or *.suffix pattern under a registrable domain: never an address, a
    public suffix (com, co.uk, github.io) or a pattern over one (*.com, *.co.uk), which
    would open the allowlist to every site under it."""
    host = str(host).strip().lower()
    if _is_address(host.removeprefix("*.")):
        raise ValueError(f"{host!r} is an IP address; the allowlist takes host names")
    if not _HOST.match(host) or len(host) > 253:
        raise ValueError(f"{host!r} is not a host name or a *.suffix pattern")
    if host not in DEFAULT_ALLOWED_HOSTS and _public_suffix(host.removeprefix("*.")):
        what = "every host under it" if host.startswith("*.") else "no single site"
        raise ValueError(f"{host!r} covers {what}: {host.removeprefix('*.')} is a public suffix")
    return host


def _is_address(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return bool(re.match(r"^[0-9.]+$", text))  # 10.1, 127.1: still addresses to many tools
    return True


def _public_suffix(name: str) -> bool:
    """True for a public suffix (or an unknown top-level name, a bare TLD), from the
    Public Suffix List that the publicsuffixlist package bundles (no download)."""
    return _suffix_list().privatesuffix(name) is None


@functools.cache
def _suffix_list() -> Any:
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


def _hosts(value: Any) -> Any:
    if isinstance(value, str):
        value = [h for h in value.replace(",", " ").split() if h]
    if not isinstance(value, list):
        raise ValueError("must be a list of host names")
    return [validate_host(h) for h in value]


def _ports(value: Any) -> Any:
    if isinstance(value, str):
        value = [p for p in value.replace(",", " ").split() if p]
    if not isinstance(value, list):
        raise ValueError("must be a list of ports")
    return [_number(int, 1, 65535)(p) for p in value]


def _resolution(value: Any) -> Any:
    if not re.match(r"^\d{3,5}x\d{3,5}(x(8|16|24|32))?$", str(value)):
        raise ValueError(f"{value!r} is not a resolution like 1280x800x24")
    return str(value)


def _pem_files(value: Any) -> Any:
    if isinstance(value, str):
        value = [p for p in value.replace(",", " ").split() if p]
    if not isinstance(value, list):
        raise ValueError("must be a list of PEM certificate files")
    for item in value:
        try:
            text = Path(str(item)).expanduser().read_text(errors="replace")
        except OSError as exc:
            raise ValueError(f"{item}: {exc.strerror}") from None
        if "BEGIN CERTIFICATE" not in text:
            raise ValueError(f"{item} is not a PEM certificate")
    return [str(Path(str(p)).expanduser()) for p in value]


def _claude_code_version(value: Any) -> Any:
    if value != "latest" and not re.match(r"^\d+\.\d+\.\d+$", str(value)):
        raise ValueError(f"{value!r} is not a Claude Code release like 2.1.332, or latest")
    return str(value)


_ENGINE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$|^(unix|ssh|tcp)://\S+$")


def _engine_name(value: Any) -> str:
    if not isinstance(value, str) or not _ENGINE_NAME.match(value) or value == "auto":
        raise ValueError(f"{value!r} is not a Docker context name or an engine URL")
    return value


def _engines(value: Any) -> list[dict[str, Any]]:
    """A list of engines: each a name or URL, or {name: ..., max_sessions: N}."""
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    if not isinstance(value, list):
        raise ValueError("must be a list of Docker context names or engine URLs")
    engines = []
    for item in value:
        if isinstance(item, dict):
            unknown = set(item) - {"name", "max_sessions"}
            if unknown:
                raise ValueError(f"unknown engine setting {sorted(unknown)[0]!r}")
            limit = item.get("max_sessions")
            engines.append(
                {
                    "name": _engine_name(item.get("name")),
                    "max_sessions": None if limit is None else _number(int, 1, 10_000)(limit),
                }
            )
        else:
            engines.append({"name": _engine_name(item), "max_sessions": None})
    return engines


def _bind(value: Any) -> Any:
    import ipaddress

    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None
    return str(value)


VALIDATORS: dict[str, Callable[[Any], Any]] = {
    "mode": _choice(Mode),
    "network": _choice(Network),
    "cpus": _number(float, 0.1, 256),
    "memory": _size_at_least("6m"),  # the engine's own minimum
    "pids": _number(int, 16, 1_000_000),
    "nofile": _number(int, 64, 1_048_576),
    "nproc": _number(int, 16, 1_000_000),
    "tmp_size": _size_at_least("1m"),
    "home_size": _size_at_least("1m"),
    "workspace_size": _volume_size,
    "data_size": _volume_size,
    "socket_size": _volume_size,
    "allowed_hosts": _hosts,
    "allowed_ports": _ports,
    "image_cli": _text,
    "image_desktop": _text,
    "image_companion": _text,
    "base_image": _text,
    "claude_code_version": _claude_code_version,
    "desktop_port": _number(int, 1024, 65535),
    "desktop_bind": _bind,
    "vnc_resolution": _resolution,
    "read_only_root": _boolean,
    "seccomp_profile": _text,
    "apparmor_profile": _text,
    "max_sessions": _number(int, 1, 10_000),
    "idle_timeout": _number(int, 1, 525_600),
    "memory_warn": _number(int, 1, 100),
    "memory_kill": _number(int, 1, 100),
    "egress_network": _text,
    "egress_log_size": _size_at_least("64k"),
    "upstream_ca_certs": _pem_files,
    "mongodb_uri": _optional_text,
    "mongodb_db": _text,
    "claude_managed_settings": _optional_text,
    "engines": lambda value: _engines(value),
    "default_engine": lambda value: (
        "" if value in (None, "", "local") else "auto" if value == "auto" else _engine_name(value)
    ),
    "engine_timeout": _number(float, 0.1, 600),
    "runtime": _choice(Runtime),
}
assert VALIDATORS.keys() == DEFAULTS.keys()


@dataclass
class Problem:
    source: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.key}: {self.message}"


@dataclass
class Config:
    """The merged configuration: values plus the layer each one came from."""

    values: dict[str, Any] = field(default_factory=lambda: dict(DEFAULTS))
    sources: dict[str, str] = field(default_factory=lambda: dict.fromkeys(DEFAULTS, "default"))
    problems: list[Problem] = field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def apply(self, layer: Mapping[str, Any], source: str) -> None:
        """Merge one layer, keeping every bad key or value as a problem."""
        for key, raw in layer.items():
            if key not in VALIDATORS:
                self.problems.append(Problem(source, key, "unknown key"))
                continue
            try:
                self.values[key] = VALIDATORS[key](raw)
            except ValueError as exc:
                self.problems.append(Problem(source, key, str(exc)))
                continue
            self.sources[key] = source

    def raise_problems(self) -> None:
        if self.problems:
            first = self.problems[0]
            more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
            if first.source == "flags":  # a command-line flag, named as the user typed it
                raise BadInput(f"--{first.key}: {first.message}{more}", "see --help for the flag")
            raise BadInput(f"bad config: {first}{more}", "run 'claude-cage config validate'")


def _read_yaml(path: Path, config: Config) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        config.problems.append(Problem(str(path), "-", f"cannot read: {exc.strerror}"))
        return {}
    except UnicodeDecodeError:
        config.problems.append(Problem(str(path), "-", "not UTF-8 text"))
        return {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "-"
        config.problems.append(Problem(str(path), where, "not valid YAML"))
        return {}
    if not isinstance(data, dict):
        config.problems.append(Problem(str(path), "-", "must be a mapping of key: value"))
        return {}
    return data


def env_layer(environ: Mapping[str, str]) -> dict[str, Any]:
    """CAGE_<KEY> variables for known keys, plus MONGODB_URI."""
    layer = {
        key: environ[f"CAGE_{key.upper()}"] for key in DEFAULTS if f"CAGE_{key.upper()}" in environ
    }
    if "MONGODB_URI" in environ and "mongodb_uri" not in layer:
        layer["mongodb_uri"] = environ["MONGODB_URI"]
    return layer


def load(config_file: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Merge defaults, the user file, --config and the environment. Flags come later."""
    environ = os.environ if environ is None else environ
    config = Config()
    user_file = paths.user_config_file()
    if user_file.exists():  # a directory in its place is a problem, not "no file"
        config.apply(_read_yaml(user_file, config), str(user_file))
    if config_file is not None:
        path = Path(config_file)
        if not path.exists():
            raise BadInput(f"config file {path} does not exist", "check the --config path")
        config.apply(_read_yaml(path, config), str(path))
    config.apply(env_layer(environ), "environment")
    return config
