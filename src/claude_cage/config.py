"""Layered configuration.

Each layer overrides the one before:
  1. packaged defaults (DEFAULTS below)
  2. the user file, ~/.config/claude-cage/config.yaml
  3. the file given with --config
  4. CAGE_<KEY> environment variables (and MONGODB_URI)
  5. command-line flags: a start checks them here (Config.check) but puts them straight
     into its request (operations/inputs.py), not into the config

`validate()` names every bad key or value together with where it came from.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from claude_cage import paths
from claude_cage.errors import BadInput
from claude_cage.kinds import DEFAULT_MODE, DEFAULT_NETWORK, DEFAULT_RUNTIME, Mode, Network, Runtime
from claude_cage.validators import DEFAULT_ALLOWED_HOSTS as DEFAULT_ALLOWED_HOSTS
from claude_cage.validators import HOST_HINT as HOST_HINT
from claude_cage.validators import (
    address_ranges,
    auto_or_off,
    bind_address,
    boolean,
    choice,
    claude_code_version,
    engine_list,
    engine_name,
    hosts,
    number,
    optional_pem_file,
    optional_text,
    path_or_off,
    pem_files,
    ports,
    preset_names,
    registry_mirrors,
    resolution,
    size_at_least,
    size_between,
    text,
    volume_size,
)
from claude_cage.validators import parse_size as parse_size
from claude_cage.validators import validate_host as validate_host

MEMORY_CAP = 4 * 1024**3
MAX_FILE = 1024**2  # a config file is a few dozen settings


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


def default_max_sessions(cores: int, total: int) -> int:
    """How many sessions may run at once: one per GiB of memory beyond 2 GiB for the
    host (an idle Claude Code holds about 0.4 GiB, a busy one about 1), at most four per
    core (agents mostly wait on their model), and at least 4."""
    gib = total // 1024**3 if total > 0 else 8
    return max(4, min(gib - 2, 4 * max(cores, 1)))


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
    # Package-registry presets (presets.py) every session may install from (GET, HEAD).
    "allowed_presets": [],
    "allowed_ports": [80, 443],
    # Addresses an allowed name may resolve to although they are internal (loopback,
    # private, link-local, the host's own): CIDR ranges; none by default (egress.py).
    "allowed_address_ranges": [],
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
    "max_sessions": default_max_sessions(host_cpus(), host_memory()),
    "idle_timeout": 60,
    "memory_warn": 80,
    "memory_kill": 95,
    "egress_network": "cage-filtered",
    "egress_log_size": "16m",
    # PEM files of extra CAs the companion trusts when it verifies the servers it adds
    # credentials for (a TLS-intercepting corporate proxy's, or a test CA).
    "upstream_ca_certs": [],
    # The managed egress policy, where /etc/claude-cage/policy.yaml does not exist (that
    # file, when it does, is always the one): root-owned, nothing below widens it.
    "managed_policy": None,
    "mongodb_uri": None,
    "mongodb_db": "claude_cage",
    # The event log's bounds: past either, the oldest events are pruned (eventlog/prune.py).
    "events_max_size": "64m",
    "events_max_age": 90,  # days
    # The flight recorder's archives of destroyed sessions (operations/history.py) are
    # kept this many days (0: for ever); gc and every destroy prune the older ones.
    "history_days": 30,
    # The most of each transcript file an archive keeps (past it, a line says how much
    # was left out), so a session that wrote a huge one cannot exhaust the host.
    "history_transcript_size": "64m",
    # A JSON file of Claude Code managed settings (the operator's policy), delivered
    # read-only into every session at /etc/claude-code/managed-settings.json.
    "claude_managed_settings": None,
    # The user's Claude Code directory, carried read-only into every session at start
    # (userconfig.py); "off": nothing is carried, and Claude Code starts as new.
    "claude_config": "~/.claude",
    # A new session of a project with .devcontainer/devcontainer.json runs in its image
    # (operations/devcontainers.py): "auto"; "off": always the stock image.
    "devcontainer": "auto",
    # Remote devcontainer features (operations/remote_features.py): a registry host ->
    # the base URL of a mirror that answers for it (a company's pull-through cache), and
    # a PEM file of a CA the host trusts for those registries besides the system's.
    "feature_registry_mirrors": {},
    "feature_registry_ca": None,
    # gc removes a cached remote feature unused for this many days (0: never).
    "feature_cache_days": 30,
    # Docker engines besides the local one (engine/fleet.py): context names or URLs, each
    # optionally with its own max_sessions; `start` uses default_engine ("" = local).
    "engines": [],
    "default_engine": "",
    "engine_timeout": 2.0,
    # How long any other engine call waits for an answer (not a build, a pull, or the
    # output of a command the user runs: those take as long as they take).
    "engine_call_timeout": 30.0,
    "runtime": DEFAULT_RUNTIME,
    # A rootless Podman without cgroup controllers of its own (cgroup v1) ignores memory,
    # CPU and process limits: a start there is refused unless this is true (podman.py).
    "rootless_without_limits": False,
    # diff, fetch, merge, apply: what a session may send back, and for how long
    # (bounds.py). 2g is GitHub's own limit for one push, so a change bigger than that
    # could not be pushed anyway; 600 s moves 2g over a slow SSH link to an engine.
    "review_max_size": "2g",
    "review_timeout": 600,
}


VALIDATORS: dict[str, Callable[[Any], Any]] = {
    "mode": choice(Mode),
    "network": choice(Network),
    "cpus": number(float, 0.1, 256),
    "memory": size_at_least("6m"),  # the engine's own minimum
    "pids": number(int, 16, 1_000_000),
    "nofile": number(int, 64, 1_048_576),
    "nproc": number(int, 16, 1_000_000),
    "tmp_size": size_at_least("1m"),
    "home_size": size_at_least("1m"),
    "workspace_size": volume_size,
    "data_size": volume_size,
    "socket_size": volume_size,
    "allowed_hosts": hosts,
    "allowed_presets": preset_names,
    "allowed_ports": ports,
    "allowed_address_ranges": address_ranges,
    "image_cli": text,
    "image_desktop": text,
    "image_companion": text,
    "base_image": text,
    "claude_code_version": claude_code_version,
    "desktop_port": number(int, 1024, 65535),
    "desktop_bind": bind_address,
    "vnc_resolution": resolution,
    "read_only_root": boolean,
    "seccomp_profile": text,
    "apparmor_profile": text,
    "max_sessions": number(int, 1, 10_000),
    "idle_timeout": number(int, 1, 525_600),
    "memory_warn": number(int, 1, 100),
    "memory_kill": number(int, 1, 100),
    "egress_network": text,
    "egress_log_size": size_at_least("64k"),
    "upstream_ca_certs": pem_files,
    "managed_policy": optional_text,
    "mongodb_uri": optional_text,
    "mongodb_db": text,
    "events_max_size": size_at_least("256k"),
    "events_max_age": number(int, 1, 36_500),
    "history_days": number(int, 0, 36_500),
    "history_transcript_size": size_between("4k", "512m"),
    "claude_managed_settings": optional_text,
    "claude_config": path_or_off,
    "devcontainer": auto_or_off,
    "feature_registry_mirrors": registry_mirrors,
    "feature_registry_ca": optional_pem_file,
    "feature_cache_days": number(int, 0, 36_500),
    "engines": lambda value: engine_list(value),
    "default_engine": lambda value: (
        "" if value in (None, "", "local") else "auto" if value == "auto" else engine_name(value)
    ),
    "engine_timeout": number(float, 0.1, 600),
    "engine_call_timeout": number(float, 0.1, 3600),
    "runtime": choice(Runtime),
    "rootless_without_limits": boolean,
    "review_max_size": size_at_least("1k"),
    "review_timeout": number(float, 1, 86_400),
}
assert VALIDATORS.keys() == DEFAULTS.keys()


@dataclass
class Problem:
    source: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.key}: {self.message}"


# The defaults worked out from this machine's cores and memory: `config show` says so.
FROM_MACHINE = frozenset({"cpus", "memory", "max_sessions"})


def default_sources() -> dict[str, str]:
    return {key: "machine" if key in FROM_MACHINE else "default" for key in DEFAULTS}


@dataclass
class Config:
    """The merged configuration: values plus the layer each one came from."""

    values: dict[str, Any] = field(default_factory=lambda: dict(DEFAULTS))
    sources: dict[str, str] = field(default_factory=lambda: default_sources())
    problems: list[Problem] = field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def check(self, layer: Mapping[str, Any], source: str) -> dict[str, Any]:
        """One layer's values, each checked by its key's validator, without merging
        them; every bad key or value is kept as a problem and left out."""
        checked = {}
        for key, raw in layer.items():
            if key not in VALIDATORS:
                self.problems.append(Problem(source, key, "unknown key"))
                continue
            try:
                checked[key] = VALIDATORS[key](raw)
            except ValueError as exc:
                self.problems.append(Problem(source, key, str(exc)))
        return checked

    def apply(self, layer: Mapping[str, Any], source: str) -> None:
        """Merge one layer, keeping every bad key or value as a problem."""
        checked = self.check(layer, source)
        self.values.update(checked)
        self.sources.update(dict.fromkeys(checked, source))

    def raise_problems(self) -> None:
        if self.problems:
            first = self.problems[0]
            more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
            if first.source == "flags":  # a command-line flag, named as the user typed it
                raise BadInput(f"--{first.key}: {first.message}{more}", "see --help for the flag")
            raise BadInput(f"bad config: {first}{more}", "run 'claude-cage config validate'")


def _read_yaml(path: Path, config: Config) -> dict[str, Any]:
    import yaml  # start-up: PyYAML costs ~10 ms, and `list` or `--help` read no config file

    try:
        with path.open("rb") as file:
            raw = file.read(MAX_FILE + 1)  # not all of /dev/zero
        if len(raw) > MAX_FILE:
            config.problems.append(Problem(str(path), "-", f"larger than {MAX_FILE >> 20} MiB"))
            return {}
        data = yaml.safe_load(raw.decode("utf-8")) or {}
    except OSError as exc:
        config.problems.append(Problem(str(path), "-", f"cannot read: {exc.strerror}"))
        return {}
    except UnicodeDecodeError:
        config.problems.append(Problem(str(path), "-", "not UTF-8 text"))
        return {}
    except RecursionError:
        config.problems.append(Problem(str(path), "-", "nested too deeply"))
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
