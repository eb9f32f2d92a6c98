"""What a start is asked for: its options, the merged config, the host's facts, and the
session request built from them (or rebuilt from a session's record); and the record a
start writes.

Everything here runs before any Docker object exists, so bad input is refused with
exit 2 and nothing half-made.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from claude_cage import config as config_mod
from claude_cage import hostgit, metadata, names, paths, policy, presets
from claude_cage.errors import BadInput
from claude_cage.kinds import Mode, Status
from claude_cage.parsing import parse_env, parse_mounts, parse_port
from claude_cage.record import RECORDED, Mount, SessionRecord, encode

if TYPE_CHECKING:
    from claude_cage.context import Context
    from claude_cage.engine.answers import EngineInfo
    from claude_cage.netpolicy.rules import Layer


@dataclass
class StartOptions:
    name: str | None = None
    mode: str | None = None
    network: str | None = None
    mounts: tuple[str, ...] = ()
    cpus: float | None = None
    memory: str | None = None
    pids: int | None = None
    ports: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    api_key_file: str | None = None
    ephemeral: bool = False
    persist: bool = True
    image: str | None = None
    config_file: str | None = None
    allow_hosts: tuple[str, ...] = ()
    allow_presets: tuple[str, ...] = ()  # package registries (presets.py)
    clone: str | None = None  # a path in a git repository (operations/clone.py)
    engine: str | None = None  # a Docker context, a URL, "local" or "auto" (engine/fleet.py)
    runtime: str | None = None
    user_config: bool = True  # False: --no-user-config (userconfig.py)
    devcontainer: bool = True  # False: --no-devcontainer (operations/devcontainers.py)
    probe: bool = False  # doctor's throwaway session (labels.PROBE: this pid); no credential
    learn: bool = False  # allow and record what no policy rule decides (netpolicy)


FLAG_SETTINGS = ("mode", "network", "cpus", "memory", "pids", "runtime")  # config keys


def load_settings(ctx: Context, options: StartOptions) -> tuple[config_mod.Config, dict[str, Any]]:
    """The configuration a start runs with (defaults, files, environment) and the
    settings its flags give, each checked by its config key's validator. The flags stay
    out of the config: they go into the request (build_request). A bad value anywhere is
    refused here, before anything exists, named as the flag when it is one."""
    cfg = ctx.config_with(options.config_file)
    given = {key: getattr(options, key) for key in FLAG_SETTINGS}
    flags = cfg.check({key: value for key, value in given.items() if value is not None}, "flags")
    cfg.raise_problems()
    return cfg, flags


def setting(cfg: config_mod.Config, flags: dict[str, Any], key: str) -> Any:
    """A start's value for a config key: its flag's, else the config's."""
    return flags[key] if key in flags else cfg[key]


def load_config(ctx: Context, options: StartOptions) -> config_mod.Config:
    """The configuration with the start's flags merged in as their own layer ("flags"),
    each value with its source: what a start with these options runs with."""
    cfg, flags = load_settings(ctx, options)
    cfg.values.update(flags)
    cfg.sources.update(dict.fromkeys(flags, "flags"))
    return cfg


def host_facts(cfg: config_mod.Config, engine_info: EngineInfo | None = None) -> policy.HostFacts:
    """The facts plan() needs. A far engine's come from its own `docker info`
    (`engine_info`), never from this machine."""
    profile = cfg["seccomp_profile"]
    path = paths.package_data("data", "seccomp.json") if profile == "default" else Path(profile)
    try:
        seccomp = path.read_text()
    except OSError as exc:
        raise BadInput(
            f"seccomp profile {path}: {exc.strerror}", "set seccomp_profile to 'default' or a file"
        ) from None
    upstream_ca = "".join(Path(p).read_text() for p in cfg["upstream_ca_certs"])
    if engine_info is not None:
        apparmor = any(o.startswith("name=apparmor") for o in engine_info.security_options)
    else:
        try:
            enabled = Path("/sys/module/apparmor/parameters/enabled").read_text()
            apparmor = enabled.strip() == "Y"
        except OSError:
            apparmor = False
    return policy.HostFacts(
        seccomp_profile=seccomp,
        apparmor=apparmor,
        upstream_ca=upstream_ca,
        addresses=() if engine_info is not None else local_addresses(),
    )


def local_addresses() -> tuple[str, ...]:
    """This machine's own addresses (IPv4 from the kernel's local routes, IPv6 from
    its interface list), which the address guard refuses; none where /proc says nothing."""
    found: list[str] = []
    try:
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
    except OSError:
        lines = []
    for previous, line in itertools.pairwise(lines):
        if line.strip() == "/32 host LOCAL" and "|--" in previous:
            found.append(previous.split("|--")[1].strip() + "/32")
    try:
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            raw = line.split()[0] if line.split() else ""
            if len(raw) == 32:
                found.append(str(ipaddress.IPv6Address(bytes.fromhex(raw))) + "/128")
    except (OSError, ValueError):
        pass
    return tuple(sorted(set(found)))


def default_image(cfg: config_mod.Config, mode: Mode) -> str:
    return str(cfg["image_desktop" if mode == Mode.DESKTOP else "image_cli"])


def build_request(
    cfg: config_mod.Config, flags: dict[str, Any], options: StartOptions, name: str
) -> tuple[policy.SessionRequest, hostgit.Repo | None]:
    """The request of a new session: the config's settings with the flags over them;
    and the repository it clones (--clone), if any.
    What the sandbox refuses is refused first (policy.check); what the request means for
    the sandbox, its credential and allowlist, `start` has policy.resolve decide."""
    mode = setting(cfg, flags, "mode")
    req = policy.SessionRequest(
        name=name,
        mode=mode,
        network=setting(cfg, flags, "network"),
        image=options.image or default_image(cfg, mode),
        cpus=float(setting(cfg, flags, "cpus")),
        memory=setting(cfg, flags, "memory"),
        pids=int(setting(cfg, flags, "pids")),
        ports=tuple(parse_port(p) for p in options.ports),
        ephemeral=options.ephemeral,
        persist=options.persist,
        owner=paths.owner_id(),
        runtime=setting(cfg, flags, "runtime"),
        probe=str(os.getpid()) if options.probe else "",
    )
    policy.check(req)  # first: what the sandbox refuses comes before the rest is read
    allowed = list(cfg["allowed_hosts"])
    for host in options.allow_hosts:
        try:
            checked = config_mod.validate_host(host)
        except ValueError as exc:
            raise BadInput(f"--allow-host: {exc}", config_mod.HOST_HINT) from None
        if checked not in allowed:
            allowed.append(checked)
    try:
        wanted = [*cfg["allowed_presets"], *(presets.check(p) for p in options.allow_presets)]
    except ValueError as exc:
        raise BadInput(f"--allow-preset: {exc}", "e.g. --allow-preset python") from None
    mounts = tuple(parse_mounts(options.mounts))
    repo = clone_repo(options, name, mounts)
    full = dataclasses.replace(
        req,
        allowed_hosts=tuple(allowed),
        # rules of the session layer, GET and HEAD only (netpolicy.rules.session_layer)
        allowed_presets=tuple(dict.fromkeys(wanted)),
        mounts=mounts,
        env=parse_env(options.env),
        clone=repo.name if repo is not None else "",
    )
    return full, repo


def clone_repo(options: StartOptions, name: str, mounts: Sequence[Mount]) -> hostgit.Repo | None:
    """Check --clone before anything exists; returns the repository, or None."""
    if not options.clone:
        return None
    repo = hostgit.find_repo(options.clone)
    hostgit.check_branch(name)
    for mount in mounts:
        if mount.target == f"/workspace/{repo.name}" or Path(mount.source) == repo.top:
            raise BadInput(
                f"--clone {options.clone} and --mount {mount.source} would both be "
                f"/workspace/{repo.name}",
                "use --clone for a git repository and --mount for other directories",
            )
    return repo


def request_from_record(session: SessionRecord, cfg: config_mod.Config) -> policy.SessionRequest:
    """Rebuild a session's request from what its metadata recorded."""
    return policy.SessionRequest(
        name=session.name,
        mode=session.mode,
        network=session.network,
        image=session.image or default_image(cfg, session.mode),
        cpus=float(cfg["cpus"]) if session.cpus is None else session.cpus,
        memory=cfg["memory"] if session.memory is None else session.memory,
        pids=int(cfg["pids"]) if session.pids is None else session.pids,
        mounts=session.mounts,
        ports=session.ports,
        ephemeral=session.ephemeral,
        persist=session.persist,
        credential=session.credential,
        allowed_hosts=session.allowed_hosts,
        allowed_presets=session.allowed_presets,
        desktop_port=session.desktop_port,
        owner=paths.owner_id(),
        runtime=session.runtime,
        clone=session.repo_name or "",
    )


def decisions_from_record(
    session: SessionRecord, layers: tuple[Layer, ...] = (), learn: bool = False
) -> policy.Decisions:
    """What a session's start decided, as its record keeps it, for rebuilding one of its
    containers; with the egress policy it was given (netpolicy/layers.saved)."""
    return policy.Decisions(
        uid=session.uid or policy.SESSION_UID,
        gid=session.gid or policy.SESSION_UID,
        desktop_port=session.desktop_port,
        policy_layers=layers,
        learn=learn,
    )


def remote_limits(
    cfg: config_mod.Config, flags: dict[str, Any], engine_info: EngineInfo
) -> tuple[float | None, str | None]:
    """Default limits follow the engine's own host: cores minus one, half its memory
    (limits that a flag or the config set stay as they are); None keeps the request's."""
    cores, total = engine_info.cpus, engine_info.memory  # 0: unknown
    unset = ("default", "machine")  # not the user's: derived from THIS machine
    cpus = memory = None
    if cores and "cpus" not in flags and cfg.sources.get("cpus") in unset:
        cpus = config_mod.default_cpus(cores)
    if total and "memory" not in flags and cfg.sources.get("memory") in unset:
        memory = config_mod.default_memory(total)
    return cpus, memory


def check_remote(req: policy.SessionRequest, engine_label: str) -> None:
    """What a session on a far engine cannot have: this machine's files, or ports and a
    desktop published on the far host's loopback."""
    where = f"engine {engine_label} is not this machine"
    if req.mounts:
        raise BadInput(
            f"--mount {req.mounts[0].source}: {where}, so it cannot see your files",
            "give the session its own copy of a git repository with --clone PATH",
        )
    if req.ports:
        raise BadInput(
            f"--port: {where}; ports are published on the engine's own loopback",
            "drop --port, or run claude-cage on that host",
        )
    if req.mode == Mode.DESKTOP:
        raise BadInput(
            f"--mode desktop: {where}; its desktop would be on the engine's own loopback",
            "use --mode cli on a remote engine, or run claude-cage on that host",
        )


def given_settings(options: StartOptions) -> list[str]:
    """The flags of a start that a restart of an existing session cannot honour."""
    given = []
    for field_name, flag in (
        ("mode", "--mode"),
        ("network", "--network"),
        ("mounts", "--mount"),
        ("cpus", "--cpus"),
        ("memory", "--memory"),
        ("pids", "--pids"),
        ("runtime", "--runtime"),
        ("ports", "--port"),
        ("env", "--env"),
        ("image", "--image"),
        ("allow_hosts", "--allow-host"),
        ("allow_presets", "--allow-preset"),
        ("api_key_file", "--api-key-file"),
        ("ephemeral", "--ephemeral"),
        ("clone", "--clone"),
        ("engine", "--engine"),
    ):
        if getattr(options, field_name):
            given.append(flag)
    if not options.persist:
        given.append("--no-persist")
    return given


# --- what a start records ---------------------------------------------------------


def record_for(
    req: policy.SessionRequest,
    decided: policy.Decisions,
    previous: SessionRecord | None,
    allowed_ports: list[int],
) -> SessionRecord:
    """The record of a session just started from `req` as `decided`; what `previous`
    recorded and the start does not decide (its creation, reap's samples) is kept."""
    base = previous or SessionRecord(name=req.name, created=metadata.now_iso())
    cpus, memory = policy.limits(req, decided)
    return dataclasses.replace(
        base,
        mode=req.mode,
        status=Status.RUNNING,
        container=names.container_name(req.name),
        companion=names.companion_name(req.name) if policy.needs_companion(req) else "",
        network=req.network,
        runtime=req.runtime,
        image=req.image,
        cpus=cpus,
        memory=memory,
        pids=req.pids,
        mounts=tuple(req.mounts),
        ports=tuple(req.ports),
        env_keys=tuple(sorted(req.env)),
        ephemeral=req.ephemeral,
        persist=req.persist,
        credential=req.credential,
        allowed_hosts=tuple(req.allowed_hosts),
        allowed_presets=tuple(req.allowed_presets),
        allowed_ports=tuple(allowed_ports),
        desktop_port=decided.desktop_port,
        started=metadata.now_iso(),
        uid=decided.uid,
        gid=decided.gid,
        user_config=bool(decided.user_config),
    )


def keep_recorded(cfg: config_mod.Config, previous: SessionRecord) -> list[str]:
    """Put the settings the session was started with (RECORDED) back over the current
    config, for a restart; say where the config now disagrees."""
    kept = {key: encode(getattr(previous, key)) for key in RECORDED}
    kept = {key: value for key, value in kept.items() if value not in (None, "", [])}
    before = {key: cfg[key] for key in kept}
    cfg.apply(kept, "session")
    cfg.raise_problems()
    changed = [key for key in kept if str(before[key]) != str(cfg[key])]
    if not changed:
        return []
    return [
        "the session keeps the settings it was started with: "
        + ", ".join(f"{key}={cfg[key]} (the config now says {before[key]})" for key in changed)
    ]
