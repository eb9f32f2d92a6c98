"""Session lifecycle: start (new, or again with recorded settings), stop, destroy."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from claude_cage import bindmounts, metadata, names, paths, policy
from claude_cage import config as config_mod
from claude_cage.engine import Engine
from claude_cage.errors import BadInput, CageError, EngineError, SessionNotFound
from claude_cage.operations import checkpoint, operation
from claude_cage.operations.query import inspect_ours, is_ours, owned_containers
from claude_cage.requests import Mount, parse_env, parse_mounts, parse_port

API_KEY_SECRET = "api_key"
CAPACITY_LOCK = ".capacity"  # never a session name: those start with a letter or digit
_API_KEY = re.compile(r"^[A-Za-z0-9._~+/=-]{8,512}$")


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
    clone: str | None = None  # a path in a git repository (operations/clone.py)


@dataclass
class StartResult:
    name: str
    container: str
    mode: str
    network: str
    credential: str
    restarted: bool = False
    url: str | None = None
    warnings: list[str] = field(default_factory=list)
    repo: str | None = None  # clone mode: the repository, the session's branch, its base
    branch: str | None = None
    base: str | None = None

    def event_details(self) -> dict[str, Any]:
        return {"mode": self.mode, "network": self.network, "restarted": self.restarted}


@dataclass
class StopResult:
    name: str
    removed: bool = False  # ephemeral sessions are removed when they stop

    def event_details(self) -> dict[str, Any]:
        return {"removed": self.removed}


@dataclass
class DestroyResult:
    name: str
    removed: list[str] = field(default_factory=list)

    def event_details(self) -> dict[str, Any]:
        return {"removed": self.removed}


# --- inputs ---------------------------------------------------------------------------


def load_config(options: StartOptions) -> config_mod.Config:
    cfg = config_mod.load(options.config_file)
    flags = {
        "mode": options.mode,
        "network": options.network,
        "cpus": options.cpus,
        "memory": options.memory,
        "pids": options.pids,
    }
    cfg.apply({k: v for k, v in flags.items() if v is not None}, "flags")
    cfg.raise_problems()
    return cfg


def read_api_key(api_key_file: str | None, environ: dict[str, str] | None = None) -> str | None:
    """The key from --api-key-file, else ANTHROPIC_API_KEY. Never echoed in errors."""
    environ = dict(os.environ) if environ is None else environ
    if api_key_file:
        try:
            key = Path(api_key_file).expanduser().read_text().strip()
        except OSError as exc:
            raise BadInput(
                f"cannot read --api-key-file {api_key_file}: {exc.strerror}", "check the path"
            ) from None
        source = f"--api-key-file {api_key_file}"
    else:
        key = environ.get("ANTHROPIC_API_KEY", "").strip()
        source = "ANTHROPIC_API_KEY"
    if not key:
        if api_key_file:
            raise BadInput(f"{source} is empty", "put the API key in the file")
        return None
    return check_api_key(key, f"the API key from {source}")


def check_api_key(key: str, what: str) -> str:
    """Refuse anything that is not key-shaped (it ends up in a proxy's config file)."""
    if not _API_KEY.match(key):
        raise BadInput(
            f"{what} has characters an API key never has",
            "check that it holds the key alone, on one line",
        )
    return key


def host_facts(cfg: config_mod.Config) -> policy.HostFacts:
    profile = cfg["seccomp_profile"]
    path = paths.package_data("data", "seccomp.json") if profile == "default" else Path(profile)
    try:
        seccomp = path.read_text()
    except OSError as exc:
        raise BadInput(
            f"seccomp profile {path}: {exc.strerror}", "set seccomp_profile to 'default' or a file"
        ) from None
    try:
        apparmor = Path("/sys/module/apparmor/parameters/enabled").read_text().strip() == "Y"
    except OSError:
        apparmor = False
    return policy.HostFacts(seccomp_profile=seccomp, apparmor=apparmor)


def credential_kind(network: str, has_key: bool) -> str:
    if not has_key:
        return "none"
    return "api-key-proxy" if network == "filtered" else "api-key-file"


def _request(
    cfg: config_mod.Config, options: StartOptions, name: str, has_key: bool
) -> policy.SessionRequest:
    mode, network = cfg["mode"], cfg["network"]
    ports = [parse_port(p) for p in options.ports]
    for _, inner in ports:
        if inner in policy.COMPANION_PORTS:
            raise BadInput(
                f"--port: container port {inner} is taken by the session's companion",
                "use another port in the session than "
                + " or ".join(str(p) for p in policy.COMPANION_PORTS),
            )
    if ports and network == "host":
        raise BadInput("--port has no effect with --network host", "drop --port, or use filtered")
    hosts = list(cfg["allowed_hosts"])
    for host in options.allow_hosts:
        try:
            checked = config_mod.validate_host(host)
        except ValueError as exc:
            raise BadInput(
                f"--allow-host: {exc}", "use a name like example.com or *.example.com"
            ) from None
        if checked not in hosts:
            hosts.append(checked)
    return policy.SessionRequest(
        name=name,
        mode=mode,
        network=network,
        image=options.image or cfg["image_desktop" if mode == "desktop" else "image_cli"],
        cpus=float(cfg["cpus"]),
        memory=cfg["memory"],
        pids=int(cfg["pids"]),
        mounts=parse_mounts(options.mounts),
        ports=ports,
        env=parse_env(options.env),
        ephemeral=options.ephemeral,
        persist=options.persist,
        credential=credential_kind(network, has_key),
        allowed_hosts=hosts if network == "filtered" else [],
        owner=paths.owner_id(),
    )


def _clone_request(options: StartOptions, name: str, req: policy.SessionRequest) -> Any:
    """Check --clone before anything exists; returns the repository, or None."""
    if not options.clone:
        return None
    from claude_cage import workspace

    repo = workspace.find_repo(options.clone)
    workspace.check_branch(name)
    for mount in req.mounts:
        if mount.target == f"/workspace/{repo.name}" or Path(mount.source) == repo.top:
            raise BadInput(
                f"--clone {options.clone} and --mount {mount.source} would both be "
                f"/workspace/{repo.name}",
                "use --clone for a git repository and --mount for other directories",
            )
    req.clone = repo.name
    return repo


def request_from_metadata(meta: dict[str, Any], cfg: config_mod.Config) -> policy.SessionRequest:
    """Rebuild a session's request from what its metadata recorded."""
    mounts = []
    for text in meta.get("mounts") or []:
        source, target, flag = text.rsplit(":", 2)
        mounts.append(Mount(source, target, flag == "ro"))
    return policy.SessionRequest(
        name=meta["name"],
        mode=meta["mode"],
        network=meta.get("network", "filtered"),
        image=meta.get("image") or cfg["image_cli"],
        cpus=float(meta.get("cpus", cfg["cpus"])),
        memory=meta.get("memory", cfg["memory"]),
        pids=int(meta.get("pids", cfg["pids"])),
        mounts=mounts,
        ports=[tuple(p) for p in meta.get("ports") or []],  # type: ignore[misc]
        ephemeral=meta.get("ephemeral") == "true",
        persist=meta.get("persist", "true") == "true",
        credential=meta.get("credential", "none"),
        allowed_hosts=list(meta.get("allowed_hosts") or []),
        desktop_port=int(meta["desktop_port"]) if meta.get("desktop_port") else None,
        owner=paths.owner_id(),
        clone=meta.get("repo_name") or "",
        uid=int(meta.get("uid") or policy.SESSION_UID),
        gid=int(meta.get("gid") or policy.SESSION_UID),
        protect=bindmounts.protections(mounts),
    )


def _given_settings(options: StartOptions) -> list[str]:
    """The flags of a start that a restart of an existing session cannot honour."""
    given = []
    for field_name, flag in (
        ("mode", "--mode"),
        ("network", "--network"),
        ("mounts", "--mount"),
        ("cpus", "--cpus"),
        ("memory", "--memory"),
        ("pids", "--pids"),
        ("ports", "--port"),
        ("env", "--env"),
        ("image", "--image"),
        ("allow_hosts", "--allow-host"),
        ("api_key_file", "--api-key-file"),
        ("ephemeral", "--ephemeral"),
        ("clone", "--clone"),
    ):
        if getattr(options, field_name):
            given.append(flag)
    if not options.persist:
        given.append("--no-persist")
    return given


def metadata_for(
    req: policy.SessionRequest, created: str, allowed_ports: list[int]
) -> dict[str, Any]:
    return {
        "name": req.name,
        "mode": req.mode,
        "status": "running",
        "created": created,
        "container": names.container_name(req.name),
        "companion": names.companion_name(req.name) if policy.needs_companion(req) else "",
        "network": req.network,
        "image": req.image,
        "cpus": f"{req.cpus:g}",
        "memory": req.memory,
        "pids": req.pids,
        "mounts": [m.to_text() for m in req.mounts],
        "ports": [list(p) for p in req.ports],
        "env_keys": sorted(req.env),
        "ephemeral": req.ephemeral,
        "persist": req.persist,
        "credential": req.credential,
        "allowed_hosts": req.allowed_hosts,
        "allowed_ports": allowed_ports,
        "desktop_port": req.desktop_port or "",
        "started": metadata.now_iso(),
        "uid": req.uid,
        "gid": req.gid,
    }


# --- start ----------------------------------------------------------------------------


def _check_owned(container: str, info: dict[str, Any] | None) -> None:
    if info is None:
        return
    labels = info["Config"].get("Labels") or {}
    if labels.get("managed-by") != "claude-cage":
        raise BadInput(
            f"a container named {container} exists and is not managed by claude-cage",
            "pick another --name, or remove that container yourself",
        )
    if labels.get("cage.owner") != paths.owner_id():
        raise BadInput(
            f"{container} belongs to claude-cage with another data directory",
            "pick another --name (CAGE_DATA_DIR decides which sessions are yours)",
        )


def _check_capacity(engine: Engine, cfg: config_mod.Config) -> None:
    """Refuse a start beyond max_sessions. Call with the capacity lock held (see start):
    a session counts from the moment its container is created."""
    running = [
        c["Labels"].get("cage.session", "?")
        for c in owned_containers(engine)
        if c.get("State") in ("created", "running", "restarting")
    ]
    if len(running) >= int(cfg["max_sessions"]):
        raise CageError(
            f"max_sessions ({cfg['max_sessions']}) reached; running: {', '.join(sorted(running))}",
            "stop one ('claude-cage stop NAME'), reap idle ones ('claude-cage reap'), "
            "or raise max_sessions in the config",
        )


def inject_key(engine: Engine, name: str, credential: str, key: str) -> None:
    """Hand the key over on stdin: never in argv, env, inspect output or the image."""
    if credential == "api-key-proxy":
        target, cmd = names.companion_name(name), ["companion-entrypoint", "set-key"]
    else:
        target = names.container_name(name)
        cmd = ["sh", "-c", "umask 077 && cat > /run/cage/secrets/api_key"]
    code, _output = engine.exec_run(target, cmd, stdin=key.encode())
    if code != 0:
        raise EngineError(f"could not hand the API key to {target} (exit {code})")


def _bring_up(
    engine: Engine,
    cfg: config_mod.Config,
    req: policy.SessionRequest,
    key: str | None,
    reuse_session: bool,
    created: list[str],
    counted: Callable[[], None],
) -> None:
    """Create what is missing and start it all, noting in `created` what it made.
    `counted()` is called once the session counts towards max_sessions."""
    plan = policy.plan(cfg.values, req, host_facts(cfg))
    labels = policy.labels(req, "volume")
    for volume in plan.volumes:
        if not engine.volume_exists(volume):
            engine.ensure_volume(volume, labels)
            created.append(f"volume:{volume}")
    checkpoint("start:volumes")
    if plan.companion is not None:
        engine.ensure_network(
            cfg["egress_network"], {"managed-by": "claude-cage", "cage.role": "network"}
        )
    # Starting a container is most of a start's time, and the two do not wait on each
    # other (the session reaches the companion's sockets only when it first uses them),
    # so the companion starts in the background while the session is made and started.
    with concurrent.futures.ThreadPoolExecutor(1) as background:
        companion_started = None
        if plan.companion is not None:
            engine.remove(plan.companion.name)  # stateless: made fresh from current settings
            engine.create(plan.companion)  # first: a new socket volume takes its layout
            created.append(f"container:{plan.companion.name}")
            checkpoint("start:companion-created")
            companion_started = background.submit(engine.start, plan.companion.name)
        if not reuse_session:
            engine.create(plan.session)
            created.append(f"container:{plan.session.name}")
            checkpoint("start:session-created")
            counted()
        engine.start(plan.session.name)
        counted()
        checkpoint("start:session-started")
        if companion_started is not None:
            companion_started.result()
            checkpoint("start:companion-started")
    if plan.companion is not None:
        code, output = engine.exec_run(plan.companion.name, ["companion-entrypoint", "wait-ready"])
        if code != 0:
            why = output.decode(errors="replace").strip() or engine.log_tail(plan.companion.name)
            raise EngineError(
                f"the session's companion did not start: {why[-300:]}",
                f"see 'docker logs {plan.companion.name}'",
            )
    if key:
        inject_key(engine, req.name, req.credential, key)
    info = engine.inspect(plan.session.name)
    if info is None or not info["State"]["Running"]:
        raise EngineError(
            f"session container {plan.session.name} exited right after starting",
            "see 'claude-cage logs NAME'; check the image with 'claude-cage build'",
        )


def _rollback(engine: Engine, created: list[str]) -> None:
    for item in reversed(created):
        kind, _, obj = item.partition(":")
        with contextlib.suppress(CageError):
            engine.remove(obj) if kind == "container" else engine.remove_volume(obj)


@operation("start")
def start(options: StartOptions, engine: Engine | None = None) -> StartResult:
    cfg = load_config(options)
    name = names.check_name(options.name) if options.name is not None else names.generate_name()
    key = read_api_key(options.api_key_file)
    req = _request(cfg, options, name, key is not None)
    repo = _clone_request(options, name, req)
    req.uid, req.gid = bindmounts.session_user(req.mounts)
    req.protect = bindmounts.protections(req.mounts)
    engine = engine or Engine()
    store = metadata.SessionStore()
    warnings = []
    if req.network == "host":
        warnings.append("--network host: the session shares the host's network, with no filtering")
    if req.credential == "api-key-proxy" and cfg["anthropic_upstream"].startswith("http://"):
        warnings.append(
            f"anthropic_upstream {cfg['anthropic_upstream']} is plain http: "
            "the API key crosses the network unencrypted"
        )

    with contextlib.ExitStack() as stack, store.lock(name):
        container = names.container_name(name)
        info = engine.inspect(container)
        _check_owned(container, info)
        _check_owned(names.companion_name(name), engine.inspect(names.companion_name(name)))
        if info is not None and info["State"]["Running"]:
            raise BadInput(
                f"session {name} is already running",
                f"attach with 'claude-cage shell {name}', or pick another --name",
            )
        meta = store.read(name)
        restarted = meta is not None
        if restarted:
            assert meta is not None
            req = request_from_metadata(meta, cfg)
            key = store.read_secret(name, API_KEY_SECRET) if req.credential != "none" else None
            ignored = _given_settings(options)
            if ignored:
                warnings.append(
                    f"session {name} exists: started with its recorded settings, ignoring "
                    f"{', '.join(ignored)} (destroy it to start afresh)"
                )
            if info is None and meta.get("env_keys"):
                warnings.append("the container was gone; recreated without its --env values")
        engine.require_image(req.image)
        if policy.needs_companion(req):
            engine.require_image(cfg["image_companion"])
        desktop_plan = None
        if req.mode == "desktop":
            from claude_cage.operations import desktop

            desktop_plan = desktop.prepare(engine, cfg, store, name, req.desktop_port)
            req.desktop_port = desktop_plan.port
            warnings += desktop_plan.warnings

        snap = None
        if repo is not None and not restarted:
            from claude_cage import workspace

            snap = stack.enter_context(workspace.snapshot(repo))
        for attempt in range(3):
            created: list[str] = []
            # Starts in parallel take turns from the capacity check until their session
            # counts (its container exists), so they cannot overshoot max_sessions.
            capacity = contextlib.ExitStack()
            capacity.enter_context(store.lock(CAPACITY_LOCK))
            try:
                _check_capacity(engine, cfg)
                _bring_up(engine, cfg, req, key, info is not None, created, capacity.close)
                if not restarted:
                    from claude_cage.operations import clone

                    clone.own_data_volume(engine, req)
                    if snap is not None:
                        clone.deliver(engine, req, f"cage/{name}", snap)
                if desktop_plan is not None:
                    desktop.finish(engine, store, name, desktop_plan)
                break
            except EngineError as exc:
                _rollback(engine, created)
                if info is not None:
                    engine.stop(container)
                # Another start took the desktop port between our check and our bind.
                if desktop_plan is None or "port is already allocated" not in exc.message:
                    raise
                if attempt == 2:
                    raise
                desktop_plan = desktop.prepare(engine, cfg, store, name, None)
                req.desktop_port = desktop_plan.port
            except BaseException:
                _rollback(engine, created)
                if info is not None:  # a failed restart leaves the session stopped, as it was
                    engine.stop(container)
                raise
            finally:
                capacity.close()
        if key and not restarted:
            store.write_secret(name, API_KEY_SECRET, key)
        data = metadata_for(
            req, meta["created"] if meta else metadata.now_iso(), cfg["allowed_ports"]
        )
        if desktop_plan is not None:
            data["desktop_bind"] = desktop_plan.bind
        if snap is not None:
            data.update(repo=str(repo.top), repo_name=req.clone, branch=f"cage/{name}")
            data.update(base=snap.base, start=snap.work)
        checkpoint("start:before-metadata")
        data = {**(meta or {}), **data}
        store.write(name, data)

    return StartResult(
        name=name,
        container=container,
        mode=req.mode,
        network=req.network,
        credential=req.credential,
        restarted=restarted,
        url=desktop_plan.url if desktop_plan else None,
        warnings=warnings,
        repo=data.get("repo"),
        branch=data.get("branch"),
        base=data.get("base"),
    )


# --- stop and destroy -----------------------------------------------------------------


def _remove_everything(engine: Engine, name: str) -> list[str]:
    """Remove the session's containers and volumes: only ours, never a namesake."""
    removed = []
    for container in (names.container_name(name), names.companion_name(name)):
        if inspect_ours(engine, container) is not None and engine.remove(container):
            removed.append(container)
    checkpoint("remove:containers")
    for volume in (
        names.data_volume(name),
        names.socket_volume(name),
        names.workspace_volume(name),
    ):
        if is_ours(engine.volume_labels(volume)) and engine.remove_volume(volume):
            removed.append(volume)
        checkpoint("remove:volume")
    return removed


@contextlib.contextmanager
def _existing_session(
    name: str, engine: Engine, store: metadata.SessionStore
) -> Iterator[tuple[dict[str, Any] | None, dict[str, Any] | None]]:
    """Hold the session's lock and yield (metadata, container inspect); either may be
    None, not both. Blocked egress is filed in the event log first, while it is there."""
    from claude_cage.operations.egress import ingest_blocked

    ingest_blocked(name, engine)
    with store.lock(name):
        meta = store.read(name)
        info = inspect_ours(engine, names.container_name(name))
        if meta is None and info is None:
            raise SessionNotFound(name)
        yield meta, info


@operation("stop")
def stop(name: str, engine: Engine | None = None) -> StopResult:
    engine = engine or Engine()
    store = metadata.SessionStore()
    with _existing_session(name, engine, store) as (meta, info):
        if info is not None:
            engine.stop(names.container_name(name))
        checkpoint("stop:session-stopped")
        if inspect_ours(engine, names.companion_name(name)) is not None:
            engine.stop(names.companion_name(name))
        checkpoint("stop:companion-stopped")
        ephemeral = (meta or {}).get("ephemeral") == "true"
        if ephemeral:
            _remove_everything(engine, name)
            store.remove(name)
            return StopResult(name, removed=True)
        if meta is not None:
            meta.update(status="stopped", stopped=metadata.now_iso())
            store.write(name, meta)
    return StopResult(name)


@operation("destroy")
def destroy(name: str, force: bool = False, engine: Engine | None = None) -> DestroyResult:
    engine = engine or Engine()
    store = metadata.SessionStore()
    with _existing_session(name, engine, store) as (_meta, info):
        if info is not None and info["State"]["Running"] and not force:
            raise BadInput(
                f"session {name} is running",
                f"stop it first ('claude-cage stop {name}'), or use --force",
            )
        removed = _remove_everything(engine, name)
        checkpoint("destroy:before-metadata")
        store.remove(name)
    return DestroyResult(name, removed)
