"""Starting a session: new, or again with its recorded settings, or repairing a running
one. What a start is asked for is in inputs.py, how it is brought up in bringup.py; stop
and destroy are in teardown.py."""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from claude_cage import (
    bindmounts,
    hostgit,
    managed,
    metadata,
    names,
    paths,
    policy,
    presets,
    quota,
    userconfig,
    workdir,
)
from claude_cage import config as config_mod
from claude_cage import labels as labels_mod
from claude_cage.credentials import Secret
from claude_cage.engine import fleet
from claude_cage.engine.answers import Container
from claude_cage.engine.api import EngineAPI
from claude_cage.errors import BadInput, CageError
from claude_cage.kinds import Credential, Mode, Network, Runtime, Status
from claude_cage.netpolicy import layers as policy_layers
from claude_cage.netpolicy.rules import Layer, session_layer
from claude_cage.operations import (
    adoption,
    agent,
    bridges,
    checkpoint,
    desktop,
    gvisor,
    model,
    operation,
    secret_store,
    usersetup,
)
from claude_cage.operations import companion as companion_ops
from claude_cage.operations.bringup import Bringing, Undo
from claude_cage.operations.inputs import (
    StartOptions,
    build_request,
    check_remote,
    given_settings,
    keep_recorded,
    load_settings,
    record_for,
    remote_limits,
    request_from_record,
    setting,
)
from claude_cage.operations.keys import API_KEY_SECRET, read_start_credential
from claude_cage.operations.owned import check_claimable
from claude_cage.record import RECORDED, Mount, SessionRecord

if TYPE_CHECKING:
    from claude_cage.context import Context
    from claude_cage.operations.devcontainers import DevPlan

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
    engine: str = fleet.LOCAL  # the Docker engine it runs on
    repaired: list[str] = field(default_factory=list)  # bridges of a running session
    adopted: bool = False  # a running session's record was rebuilt
    continued: bool = False  # Claude Code resumed the last conversation (--continue)
    devcontainer: str | None = None  # what the project's devcontainer.json gave, in words

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


# --- start ----------------------------------------------------------------------------


def _start_running(
    ctx: Context,
    engine: EngineAPI,
    cfg: config_mod.Config,
    store: metadata.SessionStore,
    name: str,
    info: Container,
    warnings: list[str],
) -> StartResult:
    """`start NAME` of a running session: adopt it if it lost its record, bring back a
    companion that died, repair dead bridges; refuse only when there is nothing to do."""
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
        companion_ops.restart(ctx, engine, cfg, meta)
        repaired.append("companion")
    fixed, dead = bridges.repair(engine, name, info)
    repaired += fixed
    if dead:
        raise CageError(
            f"session {name} is running, but could not repair: {', '.join(dead)}",
            f"restart it: claude-cage stop {name} && claude-cage start --name {name}",
        )
    if not adopted and not repaired:
        join = "open" if meta.mode == Mode.DESKTOP else "attach"
        raise BadInput(
            f"session {name} is already running",
            f"{join} it with 'claude-cage {join} {name}', or pick another --name",
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


def _has_devcontainer(repo: hostgit.Repo | None, req: policy.SessionRequest) -> bool:
    """Whether a new session's project on the host has a devcontainer.json (the
    machinery that reads and builds one is loaded only then)."""
    top = repo.top if repo is not None else req.mounts[0].source if req.mounts else None
    return top is not None and any(
        (Path(top) / name).is_file() for name in workdir.DEVCONTAINER_FILES
    )


def _choose_engine(
    ctx: Context,
    options: StartOptions,
    cfg: config_mod.Config,
    name: str,
    placing: contextlib.ExitStack,
) -> EngineAPI:
    """The engine the session runs on: the one it records, else --engine or
    default_engine; `auto` places it, holding `placing` until the caller lets go."""
    store = ctx.store
    previous_engine = _recorded_engine(store, name)
    wanted = fleet.canonical(options.engine or cfg["default_engine"])
    if previous_engine is not None:
        wanted = previous_engine  # a session stays on its engine
    elif wanted == fleet.AUTO:
        # Parallel auto starts take turns from the count to the new session's
        # container, so two of them never both take an engine's last place.
        placing.enter_context(store.lock(PLACEMENT_LOCK))
        wanted = fleet.place(cfg["engines"], int(cfg["max_sessions"]), cfg["engine_timeout"])
    return ctx.engine_named(wanted)


def _final_record(
    req: policy.SessionRequest,
    decided: policy.Decisions,
    before: SessionRecord | None,
    cfg: config_mod.Config,
    engine: EngineAPI,
    desktop_plan: desktop.DesktopPlan | None,
) -> SessionRecord:
    """The record of a started session: its request as decided, the config it ran with
    (a restart puts that back), its engine, and a desktop's bind."""
    session = record_for(req, decided, before, cfg["allowed_ports"])
    session = dataclasses.replace(
        session, engine=engine.endpoint.name, **{key: cfg[key] for key in RECORDED}
    )
    if desktop_plan is not None:
        session = dataclasses.replace(session, desktop_bind=desktop_plan.bind)
    return session


def _require_images(
    engine: EngineAPI,
    cfg: config_mod.Config,
    req: policy.SessionRequest,
    layers: tuple[Layer, ...],
    learn: bool,
) -> None:
    """The images this start runs are there, and new enough for what it asks of them."""
    labels = engine.image_labels(req.image)  # one inspect for both questions
    if labels is None:
        engine.require_image(req.image)  # the engine's refusal, with its hint
    managed.require_image_support(req.image, labels or {})
    for label in labels_mod.IMAGE_REFUSED:
        if label in (labels or {}):
            raise BadInput(
                f"image {req.image} carries the label {label}, which is claude-cage's to "
                "set: a session of it would be taken for a probe of doctor's, and removed",
                "remove that LABEL from the image's Dockerfile (a project's: its "
                ".devcontainer/), or start with --no-devcontainer",
            )
    if req.runtime == Runtime.RUNSC:
        gvisor.check_start(engine, req.image)
    if policy.needs_companion(req):
        engine.require_image(cfg["image_companion"])
    if policy.needs_policy((*layers, session_layer(req.allowed_hosts, req.allowed_presets)), learn):
        image = cfg["image_companion"]
        policy_layers.require_image_support(image, engine.image_labels(image) or {})


def _save_starting(
    ctx: Context,
    req: policy.SessionRequest,
    decided: policy.Decisions,
    cfg: config_mod.Config,
    engine: EngineAPI,
    repo: str = "",
) -> SessionRecord:
    """A new session's record comes first: a start killed at any later point leaves a
    session `list` shows and `gc` cleans ("starting", with no start holding its lock).
    A clone start's says so from the first (`repo`): one killed before the clone arrived
    is never taken for a session that started (SessionRecord.clone_pending)."""
    starting = dataclasses.replace(
        record_for(req, decided, None, cfg["allowed_ports"]),
        status=Status.STARTING,
        engine=engine.endpoint.name,
    )
    if repo:
        starting = dataclasses.replace(
            starting, repo=repo, repo_name=req.clone, branch=f"cage/{req.name}"
        )
    ctx.store.save(starting)  # on a full disk, the start's undo leaves not even a directory
    checkpoint(ctx, "start:record-written")
    return starting


def _credentials(
    ctx: Context,
    req: policy.SessionRequest,
    given: Secret | None,
    restarted: bool,
) -> tuple[policy.SessionRequest, str | None, list[Secret]]:
    """The request as the policy resolves it for its credentials; the API key a none or
    host session gets as a file; the credentials a filtered session's companion adds."""
    name = req.name
    key, creds = None, list[Secret]()
    if req.network == Network.FILTERED:
        creds = secret_store.effective(ctx.store, name, given)
        if given is not None:
            secret_store.check_allowed(
                list(given.hosts),
                [*req.allowed_hosts, *presets.hosts(req.allowed_presets)],
                f"session {name}'s allowlist",
                "allow it with --allow-host HOST",
            )
    elif given is not None:
        key = given.value
    elif restarted and req.credential == Credential.API_KEY_FILE:
        key = ctx.store.read_secret(name, API_KEY_SECRET)
    api_key = given is not None or (restarted and req.credential == Credential.API_KEY_FILE)
    return policy.resolve(req, creds, api_key), key, creds


def _carry_user_config(
    options: StartOptions,
    cfg: config_mod.Config,
    store: metadata.SessionStore,
    req: policy.SessionRequest,
    previous: SessionRecord | None,
    engine: EngineAPI,
    warnings: list[str],
) -> tuple[str, userconfig.Carried | None]:
    """The user's Claude Code setup for this start (config claude_config, unless
    --no-user-config): copied afresh into the directory the session binds read-only,
    which a new session on the local engine gets and a restart keeps. Returns that
    directory ("": none), and what the running session's state gets (None: nothing
    is carried)."""
    home = userconfig.source(cfg["claude_config"]) if options.user_config else None
    new = previous is None
    bound = previous.user_config if previous is not None else home is not None
    if home is not None and not engine.endpoint.is_local:
        if new:
            warnings.append(
                f"your Claude Code setup is not carried to sessions on "
                f"{engine.endpoint.label} (a remote engine cannot bind this machine's files)"
            )
        return "", None
    if not bound:
        if home is not None and not new:
            warnings.append(
                f"session {req.name} was created without your Claude Code setup: "
                "destroy it and start afresh to carry it in"
            )
        return "", None
    where = usersetup.directory(store, req.name)
    carried = userconfig.write(where, home)
    return str(where), carried if home is not None else None


def _refuse_unfinished_clone(store: metadata.SessionStore, name: str) -> None:
    """A `start --clone` killed before its clone arrived left a workspace with part of
    the files and no repository: starting it would run the agent there as if all were
    well. It is started afresh instead (the user's repository was never touched)."""
    try:
        recorded = store.load(name)
    except metadata.DamagedMetadata:
        return  # adopted or refused further on, as any damaged record
    if recorded is not None and recorded.clone_pending:
        raise BadInput(
            f"session {name}'s start with --clone did not finish: its clone never arrived",
            f"remove it ('claude-cage destroy --force {name}' or 'claude-cage gc'), "
            f"then start it again with --clone",
        )


LEARN_WARNING = (
    "LEARN MODE: session {name} may reach any host and port that no policy rule denies "
    "(the managed policy's denies and the address guard still apply); every request is "
    "recorded for 'claude-cage policy suggest {name}'. Do not give it work you would "
    "not let send data anywhere."
)


def _decide(
    ctx: Context,
    options: StartOptions,
    cfg: config_mod.Config,
    flags: dict[str, Any],
    req: policy.SessionRequest,
    previous: SessionRecord | None,
    engine: EngineAPI,
    info: Container | None,
    user: tuple[int, int],
    repo: hostgit.Repo | None,
    warnings: list[str],
) -> tuple[policy.Decisions, desktop.DesktopPlan | None, userconfig.Carried | None]:
    """What this start decides for the request on this host and engine: the egress
    policy, the desktop's port, what is bound (the .git protections, the managed
    settings, the user's setup), the session's owner and a far engine's limits. Writes
    the files the session binds, which the start's undo removes if the start fails."""
    name, store, restarted = req.name, ctx.store, previous is not None
    local = engine.endpoint.is_local
    layers: tuple[Layer, ...] = ()
    learn = False
    if req.network == Network.FILTERED:  # the policy files, as the host holds them now
        top = str(repo.top) if repo is not None else previous.repo if previous else None
        project_top, why = policy_layers.project_dir(top, req.mounts)
        layers = policy_layers.load(cfg["managed_policy"], project_top, why)
        learn = policy_layers.saved(store.dir(name))[1] if restarted else options.learn
        policy_layers.save(store.dir(name), layers, learn)
        if learn:
            warnings.append(LEARN_WARNING.format(name=name))
    if not restarted and not local:
        warnings.append(
            f"volume size limits apply on the local engine only: the volumes on "
            f"{engine.endpoint.label} are not bounded"
        )
    # Claude Code's managed settings, from the configuration of this start.
    settings = managed.compose(cfg["claude_managed_settings"], req.credential)
    _require_images(engine, cfg, req, layers, learn)
    desktop_plan = None
    if req.mode == Mode.DESKTOP:
        desktop_plan = desktop.prepare(engine, cfg, store, name, req.desktop_port)
        warnings += desktop_plan.warnings

    protect: tuple[Mount, ...] = ()
    if info is None and local:  # a container to create: its binds
        protect = tuple(bindmounts.protections(req.mounts, store.dir(name) / "git"))
    settings_dir = managed.write(store.dir(name) / "claude-code", settings)
    user_config, carried = _carry_user_config(options, cfg, store, req, previous, engine, warnings)
    cpus, memory = (None, None) if restarted or local else remote_limits(cfg, flags, engine.info())
    if previous is not None:  # the owner it was made for
        user = (previous.uid or policy.SESSION_UID, previous.gid or policy.SESSION_UID)
    decided = policy.Decisions(
        uid=user[0],
        gid=user[1],
        protect=protect,
        managed_settings=str(settings_dir) if local else "",
        # a remote engine cannot bind this machine's file: a volume it is filled into
        managed_volume="" if local else names.managed_volume(name),
        user_config=user_config,
        desktop_port=desktop_plan.port if desktop_plan is not None else req.desktop_port,
        cpus=cpus,
        memory=memory,
        policy_layers=layers,
        learn=learn,
    )
    return decided, desktop_plan, carried


@operation("start")
def start(ctx: Context, options: StartOptions) -> StartResult:
    cfg, flags = load_settings(ctx, options)
    name = names.check_name(options.name) if options.name is not None else names.generate_name()
    network = setting(cfg, flags, "network")
    given = (
        None if options.probe else read_start_credential(ctx.environ, options.api_key_file, network)
    )
    req, repo = build_request(cfg, flags, options, name)
    store = ctx.store
    warnings = []
    placing = contextlib.ExitStack()  # --engine auto: held until the session counts
    engine = _choose_engine(ctx, options, cfg, name, placing)
    if not engine.endpoint.is_local:
        check_remote(req, engine.endpoint.label)
    user = bindmounts.session_user(req.mounts)
    if req.network == Network.HOST:
        warnings.append("--network host: the session shares the host's network, with no filtering")

    unreachable = model.unreachable(req.network, req.env)
    if unreachable:
        warnings.append(unreachable)
    if repo is not None and req.ephemeral:  # nothing keeps its work: see teardown.destroy
        warnings.append(
            f"--ephemeral: stopping {name} removes its clone, with any work not fetched "
            f"('claude-cage fetch {name}' first)"
        )

    # `undo` is the start's one rollback: whatever fails from here (the disk, the engine,
    # the companion, Ctrl-C), what this start made goes again, newest first, a new
    # session's record and files with it; see bringup.Undo.
    with placing, contextlib.ExitStack() as stack, store.lock(name), Undo(engine) as undo:
        ctx.check_engine(name, engine)  # not recorded on another engine while we waited
        container = names.container_name(name)
        info = engine.inspect(container)
        check_claimable(container, info)
        check_claimable(names.companion_name(name), engine.inspect(names.companion_name(name)))
        _refuse_unfinished_clone(store, name)
        if info is not None and info.running:
            return _start_running(ctx, engine, cfg, store, name, info, warnings)
        previous = store.load(name)
        restarted = previous is not None
        if not restarted:  # a first start that fails leaves no session directory behind
            undo.callback(managed.forget_if_unrecorded, store.dir(name))
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
        dev: DevPlan | None = None
        if (
            not restarted
            and options.devcontainer
            and cfg["devcontainer"] == "auto"
            and _has_devcontainer(repo, req)
        ):
            from claude_cage.operations import devcontainers  # start-up: only for such a project

            if req.mode == Mode.CLI:
                req, dev = devcontainers.prepare(
                    engine, cfg, ctx.environ, options.clone, req, ctx.data_dir,
                    keep_image=bool(options.image),
                )  # fmt: skip
            elif devcontainers.found(options.clone, req) is not None:
                warnings.append(
                    "a desktop session runs the stock desktop image: "
                    "the project's devcontainer.json is not used"
                )
        sizes = (cfg["workspace_size"], cfg["data_size"], cfg["socket_size"])
        if not restarted and not quota.available() and any(map(config_mod.parse_size, sizes)):
            warnings.append(quota.UNBOUNDED_HINT)
        req, key, creds = _credentials(ctx, req, given, restarted)
        decided, desktop_plan, carried = _decide(
            ctx, options, cfg, flags, req, previous, engine, info, user, repo, warnings
        )
        snap = None
        if repo is not None and not restarted:
            snap = stack.enter_context(hostgit.snapshot(repo, paths.incoming_dir()))
            checkpoint(ctx, "start:snapshot")
        starting = None
        if not restarted:  # unless the engine kept something, the record goes on failure
            undo.callback(undo.forget_record, store, name)
            top = str(repo.top) if repo is not None else ""
            starting = _save_starting(ctx, req, decided, cfg, engine, top)
        bringing = Bringing(
            ctx, engine, cfg, store, req, decided, info, restarted, placing, desktop_plan
        )
        decided, desktop_plan = bringing.up(undo, key, creds, snap)
        if given is not None and req.network == Network.FILTERED:
            secret_store.save(given, name)
        elif key and not restarted:
            store.write_secret(name, API_KEY_SECRET, key)
        session = _final_record(req, decided, previous or starting, cfg, engine, desktop_plan)
        if snap is not None and repo is not None:
            session = dataclasses.replace(
                session,
                repo=str(repo.top),
                repo_name=req.clone,
                branch=f"cage/{name}",
                base=snap.base,
                start=snap.work,
            )
        if dev is not None:
            session = dataclasses.replace(
                session,
                devcontainer=dev.file,
                workspace_folder=dev.workspace_folder,
                post_start=dev.start_command or None,
            )
        checkpoint(ctx, "start:before-metadata")
        store.save(session)

    project = workdir.project_dir(session)
    lifecycle = dev is not None or bool(session.post_start)
    ran = None  # Claude Code's start, when it ran in the seed's exec (one exec, not two)
    if carried is not None:
        then = None
        if req.mode == Mode.CLI and not lifecycle:
            then = agent.start_command(project, resume=restarted)
        seeded = usersetup.seed(engine, container, carried, sorted({project, "/workspace"}), then)
        warnings += seeded.warnings
        ran = seeded.then
    if lifecycle:
        from claude_cage.operations import devcontainers  # start-up: as above

        warnings += devcontainers.lifecycle(engine, container, dev, session.post_start, project)
    continued = False
    if req.mode == Mode.CLI:  # the desktop's terminal starts it there
        try:
            if ran is None:
                was = agent.ensure(engine, container, project, resume=restarted)
            else:
                was = agent.started(container, *ran)
            continued = was.endswith(agent.CONTINUED)
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
        continued=continued,
        devcontainer=dev.describe() if dev is not None else None,
    )
