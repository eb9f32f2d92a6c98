"""Session lifecycle: start (new, or again with recorded settings), stop, destroy."""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from claude_cage import (
    audit,
    bindmounts,
    credentials,
    engines,
    labels,
    managed,
    metadata,
    names,
    policy,
    quota,
    workdir,
)
from claude_cage import config as config_mod
from claude_cage.credentials import Secret
from claude_cage.engine import Engine
from claude_cage.errors import (
    BadInput,
    CageError,
    CapacityReached,
    EngineError,
    PortAllocated,
    SessionNotFound,
)
from claude_cage.kinds import Credential, Mode, Network, Runtime, Status
from claude_cage.operations import (
    agent,
    checkpoint,
    clone,
    desktop,
    gvisor,
    model,
    operation,
    secrets,
)
from claude_cage.operations import companion as companion_ops
from claude_cage.operations.inputs import (
    StartOptions,
    build_request,
    check_remote,
    clone_request,
    given_settings,
    host_facts,
    load_config,
    remote_limits,
    request_from_record,
)
from claude_cage.operations.keys import API_KEY_SECRET, inject_key, read_start_credential
from claude_cage.operations.objects import check_claimable, inspect_ours, owned_containers
from claude_cage.record import RECORDED, SessionRecord, encode

__all__ = ["StartOptions", "destroy", "load_config", "start", "stop"]

CAPACITY_LOCK = ".capacity"  # never a session name: those start with a letter or digit
PLACEMENT_LOCK = ".placement"


def _recorded_engine(store: metadata.SessionStore, name: str) -> str | None:
    """The engine an existing session records, or None for a new session."""
    try:
        session = store.load(name)
    except CageError:
        return None
    return None if session is None else session.engine


@dataclass
class StartResult:
    name: str
    container: str
    mode: Mode
    network: Network
    credential: Credential
    restarted: bool = False
    url: str | None = None
    warnings: list[str] = field(default_factory=list)
    repo: str | None = None  # clone mode: the repository, the session's branch, its base
    branch: str | None = None
    base: str | None = None
    engine: str = engines.LOCAL  # the Docker engine it runs on
    repaired: list[str] = field(default_factory=list)  # bridges of a running session
    adopted: bool = False  # a running session's record was rebuilt

    def event_details(self) -> dict[str, Any]:
        details: dict[str, Any] = {
            "mode": self.mode.value,
            "network": self.network.value,
            "restarted": self.restarted,
            "engine": self.engine,
        }
        if self.repaired or self.adopted:
            details.update(repaired=self.repaired, adopted=self.adopted)
        return details


@dataclass
class StopResult:
    name: str
    removed: bool = False  # ephemeral sessions are removed when they stop
    was_running: bool = True

    def event_details(self) -> dict[str, Any]:
        return {"removed": self.removed, "was_running": self.was_running}


@dataclass
class DestroyResult:
    name: str
    removed: list[str] = field(default_factory=list)

    def event_details(self) -> dict[str, Any]:
        return {"removed": self.removed}


def record_for(
    req: policy.SessionRequest, previous: SessionRecord | None, allowed_ports: list[int]
) -> SessionRecord:
    """The record of a session just started from `req`; what `previous` recorded and
    the request does not decide (its creation, reap's samples) is kept."""
    base = previous or SessionRecord(name=req.name, created=metadata.now_iso())
    return dataclasses.replace(
        base,
        mode=req.mode,
        status=Status.RUNNING,
        container=names.container_name(req.name),
        companion=names.companion_name(req.name) if policy.needs_companion(req) else "",
        network=req.network,
        runtime=req.runtime,
        image=req.image,
        cpus=req.cpus,
        memory=req.memory,
        pids=req.pids,
        mounts=tuple(req.mounts),
        ports=tuple(req.ports),
        env_keys=tuple(sorted(req.env)),
        ephemeral=req.ephemeral,
        persist=req.persist,
        credential=req.credential,
        allowed_hosts=tuple(req.allowed_hosts),
        allowed_ports=tuple(allowed_ports),
        desktop_port=req.desktop_port,
        started=metadata.now_iso(),
        uid=req.uid,
        gid=req.gid,
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


# --- start ----------------------------------------------------------------------------


def _capacity_lock(engine: Engine) -> str:
    """One capacity lock per engine: starts on different engines do not wait on each other."""
    name = engine.endpoint.name
    if not name:
        return CAPACITY_LOCK
    import hashlib

    return f"{CAPACITY_LOCK}-{hashlib.sha256(name.encode()).hexdigest()[:16]}"


def _check_capacity(engine: Engine, cfg: config_mod.Config) -> None:
    """Refuse a start beyond the engine's max_sessions. Call with its capacity lock held
    (see start): a session counts from the moment its container is created."""
    running = [
        c["Labels"].get(labels.SESSION, "?")
        for c in owned_containers(engine)
        if c.get("State") in ("created", "running", "restarting")
    ]
    limit = engines.limit_of(engine.endpoint.name, cfg["engines"], int(cfg["max_sessions"]))
    if len(running) >= limit:
        where = f" on engine {engine.endpoint.label}" if engine.endpoint.name else ""
        raise CapacityReached(
            f"max_sessions ({limit}) reached{where}; running: {', '.join(sorted(running))}",
            "stop one ('claude-cage stop NAME'), reap idle ones ('claude-cage reap'), "
            "or raise max_sessions in the config",
        )


def _bring_up(
    engine: Engine,
    cfg: config_mod.Config,
    req: policy.SessionRequest,
    key: str | None,
    creds: list[Secret],
    reuse_session: bool,
    created: list[str],
    counted: Callable[[], None],
) -> None:
    """Create what is missing and start it all, noting in `created` what it made.
    `counted()` is called once the session counts towards max_sessions."""
    far = None if engine.endpoint.is_local else engine.info()
    plan = policy.plan(cfg.values, req, host_facts(cfg, far))
    volume_labels = policy.labels(req, labels.Role.VOLUME)
    for volume in plan.volumes:
        if not engine.volume_exists(volume):
            created.append(f"volume:{volume}")
            options = _volume_options(cfg, req, volume, engine.endpoint.is_local)
            engine.ensure_volume(volume, volume_labels, options)
        elif engine.endpoint.is_local:
            quota.ensure_mounted(volume)
    checkpoint("start:volumes")
    if req.managed_volume:
        clone.fill_managed_settings(engine, req, _settings_file(req.name))
    if plan.companion is not None:
        ensure_egress_network(engine, cfg["egress_network"])
    # Starting a container is most of a start's time, and the two do not wait on each
    # other (the session reaches the companion's sockets only when it first uses them),
    # so the companion starts in the background while the session is made and started.
    with concurrent.futures.ThreadPoolExecutor(1) as background:
        companion_started = None
        if plan.companion is not None:
            companion_ops.drain_audit(engine, req.name)
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
    if req.proxy_credentials:  # the companion's squid waits for these before it serves
        secrets.hand_over(engine, req.name, creds)
    if plan.companion is not None:
        code, output = engine.exec_run(plan.companion.name, ["companion-entrypoint", "wait-ready"])
        if code != 0:
            why = output.decode(errors="replace").strip() or engine.log_tail(plan.companion.name)
            raise EngineError(
                f"the session's companion did not start: {why[-300:]}",
                f"see 'docker logs {plan.companion.name}'",
            )
    if key and req.network != Network.FILTERED:
        inject_key(engine, req.name, key)
    if req.network == "filtered":
        audit.ensure_follower()
    info = engine.inspect(plan.session.name)
    if info is None or not info["State"]["Running"]:
        raise EngineError(
            f"session container {plan.session.name} exited right after starting",
            "see 'claude-cage logs NAME'; check the image with 'claude-cage build'",
        )


def _settings_file(name: str) -> Path:
    return metadata.SessionStore().dir(name) / "claude-code" / managed.FILE


def _volume_options(
    cfg: config_mod.Config, req: policy.SessionRequest, volume: str, local: bool = True
) -> dict[str, str] | None:
    """A bounded filesystem for the volume (quota.py), or None for a plain one: also on
    a remote engine, which cannot mount this machine's loop devices."""
    if not local or volume == req.managed_volume:
        return None
    if volume == names.workspace_volume(req.name):
        return quota.prepare(volume, cfg["workspace_size"], req.uid, req.gid)
    if volume == names.data_volume(req.name):
        return quota.prepare(volume, cfg["data_size"], req.uid, req.gid)
    return quota.prepare(volume, cfg["socket_size"], 0, 0)


LEGACY_NETWORK = "cage-egress"  # the companions' network before it was named cage-filtered


def ensure_egress_network(engine: Engine, name: str) -> None:
    """The companions' network. When the default one is first made, an old claude-cage's
    `cage-egress` goes, if it is claude-cage's and no container uses it (else it stays,
    for the sessions on it, until they have moved)."""
    if engine.network(name) is not None:
        return
    if name == config_mod.DEFAULTS["egress_network"]:
        legacy = engine.network(LEGACY_NETWORK)
        managed_by = ((legacy or {}).get("Labels") or {}).get("managed-by")
        if legacy is not None and managed_by == "claude-cage" and not legacy.get("Containers"):
            with contextlib.suppress(CageError):  # in use after all: it stays
                engine.remove_network(LEGACY_NETWORK)
    engine.ensure_network(name, labels.for_shared_network())


def _rollback(engine: Engine, created: list[str]) -> None:
    for item in reversed(created):
        kind, _, obj = item.partition(":")
        with contextlib.suppress(CageError):
            if kind == "container":
                engine.remove(obj)
            else:
                engine.remove_volume(obj)
                quota.release(obj)


def _start_running(
    engine: Engine,
    cfg: config_mod.Config,
    store: metadata.SessionStore,
    name: str,
    info: dict[str, Any],
    warnings: list[str],
) -> StartResult:
    """`start NAME` of a running session: adopt it if it lost its record, bring back a
    companion that died, repair dead bridges; refuse only when there is nothing to do."""
    from claude_cage.operations import adoption, bridges

    try:
        meta = store.load(name)
    except metadata.DamagedMetadata:
        meta = None
    adopted = meta is None and adoption.adopt(engine, store, name) is not None
    if adopted:
        warnings.append(
            f"session {name} was running without usable metadata: adopted, its record "
            "rebuilt from the engine"
        )
    meta = meta or store.load(name) or SessionRecord(name=name)
    repaired = []
    if companion_ops.needs_restart(engine, name, meta):
        keep_recorded(cfg, meta)  # the companion it was started with: upstream, network
        companion_ops.restart(engine, cfg, store, meta)
        repaired.append("companion")
    fixed, dead = bridges.repair(engine, name, info)
    repaired += fixed
    if dead:
        raise CageError(
            f"session {name} is running, but could not repair: {', '.join(dead)}",
            f"restart it: claude-cage stop {name} && claude-cage start --name {name}",
        )
    if not adopted and not repaired:
        raise BadInput(
            f"session {name} is already running",
            f"attach with 'claude-cage shell {name}', or pick another --name",
        )
    return StartResult(
        name=name,
        container=names.container_name(name),
        mode=meta.mode,
        network=meta.network,
        credential=meta.credential,
        restarted=True,
        warnings=warnings,
        engine=engine.endpoint.label,
        repaired=repaired,
        adopted=adopted,
    )


@operation("start")
def start(options: StartOptions, engine: Engine | None = None) -> StartResult:
    cfg = load_config(options)
    name = names.check_name(options.name) if options.name is not None else names.generate_name()
    given = read_start_credential(options.api_key_file, cfg["network"])
    req = build_request(cfg, options, name, given)
    repo = clone_request(options, name, req)
    store = metadata.SessionStore()
    warnings = []
    placing = contextlib.ExitStack()  # --engine auto: held until the session counts
    if engine is None:
        previous_engine = _recorded_engine(store, name)
        wanted = engines.canonical(options.engine or cfg["default_engine"])
        if previous_engine is not None:
            wanted = previous_engine  # a session stays on its engine
        elif wanted == engines.AUTO:
            # Parallel auto starts take turns from the count to the new session's
            # container, so two of them never both take an engine's last place.
            placing.enter_context(store.lock(PLACEMENT_LOCK))
            wanted = engines.place(cfg["engines"], int(cfg["max_sessions"]), cfg["engine_timeout"])
        engine = engines.engine_named(wanted)
    if not engine.endpoint.is_local:
        check_remote(req, engine.endpoint.label)
        remote_limits(cfg, engine.info())
        req.cpus, req.memory = float(cfg["cpus"]), cfg["memory"]
    req.uid, req.gid = bindmounts.session_user(req.mounts)
    req.protect = bindmounts.protections(req.mounts)
    if req.network == Network.HOST:
        warnings.append("--network host: the session shares the host's network, with no filtering")

    unreachable = model.unreachable(req.network, req.env)
    if unreachable:
        warnings.append(unreachable)

    with placing, contextlib.ExitStack() as stack, store.lock(name):
        container = names.container_name(name)
        info = engine.inspect(container)
        check_claimable(container, info)
        check_claimable(names.companion_name(name), engine.inspect(names.companion_name(name)))
        if info is not None and info["State"]["Running"]:
            return _start_running(engine, cfg, store, name, info, warnings)
        previous = store.load(name)
        restarted = previous is not None
        if previous is not None:
            req = request_from_record(previous, cfg)
            given = None  # a restart uses what is stored (a warning names ignored flags)
            ignored = given_settings(options)
            if ignored:
                warnings.append(
                    f"session {name} exists: started with its recorded settings, ignoring "
                    f"{', '.join(ignored)} (destroy it to start afresh)"
                )
            if info is None and previous.env_keys:
                warnings.append("the container was gone; recreated without its --env values")
            warnings += keep_recorded(cfg, previous)
        sizes = (cfg["workspace_size"], cfg["data_size"], cfg["socket_size"])
        if not restarted and not quota.available() and any(map(config_mod.parse_size, sizes)):
            warnings.append(quota.UNBOUNDED_HINT)
        key, creds = None, list[Secret]()
        if req.network == Network.FILTERED:
            creds = secrets.effective(name, given)
            req.credential = credentials.session_kind(creds)
            req.proxy_credentials = bool(creds)
            if given is not None:
                secrets.check_allowed(
                    list(given.hosts),
                    req.allowed_hosts,
                    f"session {name}'s allowlist",
                    "allow it with --allow-host HOST",
                )
        elif given is not None:
            key = given.value
        elif restarted and req.credential == Credential.API_KEY_FILE:
            key = store.read_secret(name, API_KEY_SECRET)
        if not restarted and not engine.endpoint.is_local:
            warnings.append(
                f"volume size limits apply on the local engine only: the volumes on "
                f"{engine.endpoint.label} are not bounded"
            )
        # Claude Code's managed settings, from the configuration of this start.
        settings = managed.compose(cfg["claude_managed_settings"], req.credential)
        engine.require_image(req.image)
        managed.require_image_support(req.image, engine.image_labels(req.image) or {})
        if req.runtime == Runtime.RUNSC:
            gvisor.check_start(engine, req.image)
        if policy.needs_companion(req):
            engine.require_image(cfg["image_companion"])
        desktop_plan = None
        if req.mode == Mode.DESKTOP:
            desktop_plan = desktop.prepare(engine, cfg, store, name, req.desktop_port)
            req.desktop_port = desktop_plan.port
            warnings += desktop_plan.warnings

        if not restarted:  # a first start that fails leaves no session directory behind
            stack.callback(managed.forget_if_unrecorded, store.dir(name))
        settings_dir = managed.write(store.dir(name) / "claude-code", settings)
        if engine.endpoint.is_local:
            req.managed_settings = str(settings_dir)
        else:  # a remote engine cannot bind this machine's file: a volume it is filled into
            req.managed_volume = names.managed_volume(name)
        snap = None
        if repo is not None and not restarted:
            from claude_cage import workspace  # start-up time: git handling only for --clone

            snap = stack.enter_context(workspace.snapshot(repo))
        starting = None
        if previous is None:
            # The record comes first: a start killed at any later point leaves a session
            # `list` shows and `gc` cleans ("starting", with no start holding its lock).
            starting = dataclasses.replace(
                record_for(req, None, cfg["allowed_ports"]),
                status=Status.STARTING,
                engine=engine.endpoint.name,
            )
            try:
                store.save(starting)
            except BaseException:  # a full disk: not even an empty directory stays
                with contextlib.suppress(CageError):
                    store.remove(name)
                raise
            checkpoint("start:record-written")
        made: list[str] = []
        try:
            for attempt in range(3):
                created: list[str] = []
                # Starts in parallel take turns from the capacity check until their session
                # counts (its container exists), so they cannot overshoot max_sessions.
                capacity = contextlib.ExitStack()
                capacity.enter_context(store.lock(_capacity_lock(engine)))
                capacity.push(placing)
                try:
                    _check_capacity(engine, cfg)
                    _bring_up(
                        engine, cfg, req, key, creds, info is not None, created, capacity.close
                    )
                    if not restarted:
                        clone.own_data_volume(engine, req)
                        if snap is not None:
                            clone.deliver(engine, req, f"cage/{name}", snap)
                    if desktop_plan is not None:
                        desktop.finish(engine, store, name, desktop_plan)
                    break
                except PortAllocated:
                    _rollback(engine, created)
                    if info is not None:
                        engine.stop(container)
                    # Another start took the desktop port between our check and our bind.
                    if desktop_plan is None or attempt == 2:
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
            made = created
            if given is not None and req.network == Network.FILTERED:
                secrets.save(given, name)
            elif key and not restarted:
                store.write_secret(name, API_KEY_SECRET, key)
            session = record_for(req, previous or starting, cfg["allowed_ports"])
            session = dataclasses.replace(session, **{key: cfg[key] for key in RECORDED})
            session = dataclasses.replace(session, engine=engine.endpoint.name)
            if desktop_plan is not None:
                session = dataclasses.replace(session, desktop_bind=desktop_plan.bind)
            if snap is not None:
                session = dataclasses.replace(
                    session,
                    repo=str(repo.top),
                    repo_name=req.clone,
                    branch=f"cage/{name}",
                    base=snap.base,
                    start=snap.work,
                )
            checkpoint("start:before-metadata")
            store.save(session)
        except BaseException:
            # Whatever failed (the disk, the engine, the companion, an interrupt), nothing
            # half-made stays: what this start made goes, a new session's record with it.
            _rollback(engine, made)
            if info is not None:  # a failed restart leaves the session stopped, as it was
                with contextlib.suppress(CageError):
                    engine.stop(container)
            if not restarted:
                with contextlib.suppress(CageError):
                    store.remove(name)
            raise

    if req.mode == Mode.CLI:  # the desktop's terminal starts it there
        try:
            agent.ensure(engine, container, workdir.project_dir(session))
        except CageError as exc:
            warnings.append(f"{exc.message} ({exc.hint})" if exc.hint else exc.message)
    return StartResult(
        name=name,
        container=container,
        mode=req.mode,
        network=req.network,
        credential=req.credential,
        restarted=restarted,
        url=desktop_plan.url if desktop_plan else None,
        warnings=warnings,
        repo=session.repo,
        branch=session.branch,
        base=session.base,
        engine=engine.endpoint.label,
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
        names.managed_volume(name),
    ):
        if labels.is_ours(engine.volume_labels(volume)) and engine.remove_volume(volume):
            removed.append(volume)
        quota.release(volume)
        checkpoint("remove:volume")
    return removed


@contextlib.contextmanager
def _existing_session(
    name: str, engine: Engine, store: metadata.SessionStore
) -> Iterator[tuple[SessionRecord | None, dict[str, Any] | None]]:
    """Hold the session's lock and yield (record, container inspect); either may be
    None, not both."""
    with store.lock(name):
        damaged = None
        try:
            meta = store.load(name)
        except metadata.DamagedMetadata as exc:  # the engine's labels are enough
            meta, damaged = None, exc
        info = inspect_ours(engine, names.container_name(name))
        if meta is None and info is None and damaged is None:
            raise SessionNotFound(name)
        yield meta, info


@operation("stop")
def stop(name: str, engine: Engine | None = None) -> StopResult:
    engine = engine or engines.for_session(name)
    store = metadata.SessionStore()
    with _existing_session(name, engine, store) as (meta, info):
        was_running = info is not None and bool(info["State"].get("Running"))
        if info is not None:
            engine.stop(names.container_name(name))
        checkpoint("stop:session-stopped")
        if inspect_ours(engine, names.companion_name(name)) is not None:
            engine.stop(names.companion_name(name))
            audit.ensure_follower()  # it files the rest of the stopped companion's log
        checkpoint("stop:companion-stopped")
        found = (info or {}).get("Config", {}).get("Labels") or {}
        if meta.ephemeral if meta is not None else found.get(labels.EPHEMERAL) == "true":
            _remove_everything(engine, name)
            store.remove(name)
            return StopResult(name, removed=True, was_running=was_running)
        if meta is not None and was_running:
            store.save(dataclasses.replace(meta, status=Status.STOPPED, stopped=metadata.now_iso()))
    return StopResult(name, was_running=was_running)


@operation("destroy")
def destroy(name: str, force: bool = False, engine: Engine | None = None) -> DestroyResult:
    engine = engine or engines.for_session(name)
    store = metadata.SessionStore()
    with _existing_session(name, engine, store) as (_meta, info):
        if info is not None and info["State"]["Running"] and not force:
            raise BadInput(
                f"session {name} is running",
                f"stop it first ('claude-cage stop {name}'), or use --force",
            )
        companion_ops.drain_audit(engine, name)
        removed = _remove_everything(engine, name)
        checkpoint("destroy:before-metadata")
        store.remove(name)
    return DestroyResult(name, removed)
