"""Bringing a session up on its engine: the capacity check, the volumes, the companion
and the session container, started together; and taking back what a failed start made.

`start` (operations/session.py) decides what to bring up; this module makes it exist.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from claude_cage import audit, hostgit, interrupt, labels, managed, metadata, names, policy, quota
from claude_cage import config as config_mod
from claude_cage.credentials import Secret
from claude_cage.engine import fleet
from claude_cage.engine.answers import Container
from claude_cage.engine.api import EngineAPI
from claude_cage.errors import CageError, CapacityReached, EngineError, PortAllocated
from claude_cage.kinds import Network
from claude_cage.operations import checkpoint, clone, desktop, secret_store
from claude_cage.operations import companion as companion_ops
from claude_cage.operations.inputs import host_facts
from claude_cage.operations.keys import inject_key
from claude_cage.operations.owned import owned_containers

if TYPE_CHECKING:
    from claude_cage.context import Context

CAPACITY_LOCK = ".capacity"  # never a session name: those start with a letter or digit


def capacity_lock(engine: EngineAPI) -> str:
    """One capacity lock per engine: starts on different engines do not wait on each other."""
    name = engine.endpoint.name
    if not name:
        return CAPACITY_LOCK
    return f"{CAPACITY_LOCK}-{hashlib.sha256(name.encode()).hexdigest()[:16]}"


def check_capacity(engine: EngineAPI, cfg: config_mod.Config) -> None:
    """Refuse a start beyond the engine's max_sessions. Call with its capacity lock held
    (see start): a session counts from the moment its container is created."""
    running = [
        c.labels.get(labels.SESSION, "?")
        for c in owned_containers(engine)
        if c.live and not labels.is_probe(c.labels)  # doctor's throwaway sessions never count
    ]
    limit = fleet.limit_of(engine.endpoint.name, cfg["engines"], int(cfg["max_sessions"]))
    if len(running) >= limit:
        where = f" on engine {engine.endpoint.label}" if engine.endpoint.name else ""
        raise CapacityReached(
            f"max_sessions ({limit}) reached{where}; running: {', '.join(sorted(running))}",
            "stop one ('claude-cage stop NAME'), reap idle ones ('claude-cage reap'), "
            "or raise max_sessions in the config",
        )


def bring_up(
    ctx: Context,
    engine: EngineAPI,
    cfg: config_mod.Config,
    req: policy.SessionRequest,
    decided: policy.Decisions,
    key: str | None,
    creds: list[Secret],
    reuse_session: bool,
    undo: Undo,
    counted: Callable[[], None],
) -> None:
    """Create what is missing and start it all, each thing it makes on `undo`.
    `counted()` is called once the session counts towards max_sessions."""
    far = None if engine.endpoint.is_local else engine.info()
    plan = policy.plan(cfg.values, req, decided, host_facts(cfg, far))
    volume_labels = policy.labels(req, labels.Role.VOLUME)
    for volume in plan.volumes:
        if not engine.volume_exists(volume):
            undo.made("volume", volume)
            options = _volume_options(cfg, req, decided, volume, engine.endpoint.is_local)
            engine.ensure_volume(volume, volume_labels, options)
        elif engine.endpoint.is_local:
            quota.ensure_mounted(volume)
    checkpoint(ctx, "start:volumes")
    if decided.managed_volume:
        clone.fill_managed_settings(engine, req, decided, _settings_file(ctx, req.name))
    if plan.companion is not None:
        ensure_egress_network(engine, cfg["egress_network"])
    # Starting a container is most of a start's time, and the two do not wait on each
    # other (the session reaches the companion's sockets only when it first uses them),
    # so the companion starts in the background while the session is made and started.
    with interrupt.pool(1) as background:
        companion_started = None
        if plan.companion is not None:
            companion_ops.drain_audit(ctx, engine, req.name)
            engine.remove(plan.companion.name)  # stateless: made fresh from current settings
            undo.made("container", plan.companion.name)
            engine.create(plan.companion)  # first: a new socket volume takes its layout
            checkpoint(ctx, "start:companion-created")
            clone.own_socket_inbox(engine, req, decided)  # ... and in/ the session's owner
            companion_started = background.submit(engine.start, plan.companion.name)
        if reuse_session:  # a failed restart leaves the session stopped, as it was
            undo.stopped(plan.session.name)
        else:
            undo.made("container", plan.session.name)
            engine.create(plan.session)
            checkpoint(ctx, "start:session-created")
            counted()
        engine.start(plan.session.name)
        counted()
        checkpoint(ctx, "start:session-started")
        if companion_started is not None:
            companion_started.result()
            checkpoint(ctx, "start:companion-started")
    if req.proxy_credentials:  # the companion's squid waits for these before it serves
        secret_store.hand_over(engine, req.name, creds)
    if plan.companion is not None:
        try:
            code, output = engine.exec_run(
                plan.companion.name, ["companion-entrypoint", "wait-ready"]
            )
        except EngineError:  # it exited already: its log says why
            code, output = 1, b""
        if code != 0:
            why = output.decode(errors="replace").strip()
            companion = engine.inspect(plan.companion.name)
            if not why or companion is None or not companion.running:  # its own words
                why = engine.log_tail(plan.companion.name) or why
            raise EngineError(
                f"the session's companion did not start: {why[-300:]}",
                f"see 'docker logs {plan.companion.name}'",
            )
    if key and req.network != Network.FILTERED:
        inject_key(engine, req.name, key)
    if req.network == "filtered":
        audit.ensure_follower()
    info = engine.inspect(plan.session.name)
    if info is None or not info.running:
        raise EngineError(
            f"session container {plan.session.name} exited right after starting",
            "see 'claude-cage logs NAME'; check the image with 'claude-cage build'",
        )


def _settings_file(ctx: Context, name: str) -> Path:
    return ctx.store.dir(name) / "claude-code" / managed.FILE


def _volume_options(
    cfg: config_mod.Config,
    req: policy.SessionRequest,
    decided: policy.Decisions,
    volume: str,
    local: bool = True,
) -> dict[str, str] | None:
    """A bounded filesystem for the volume (quota.py), or None for a plain one: also on
    a remote engine, which cannot mount this machine's loop devices."""
    if not local or volume == decided.managed_volume:
        return None
    if volume in (names.workspace_volume(req.name), names.scratch_volume(req.name)):
        return quota.prepare(volume, cfg["workspace_size"], decided.uid, decided.gid)
    if volume == names.data_volume(req.name):
        return quota.prepare(volume, cfg["data_size"], decided.uid, decided.gid)
    return quota.prepare(volume, cfg["socket_size"], 0, 0)


LEGACY_NETWORK = "cage-egress"  # the companions' network before it was named cage-filtered


def ensure_egress_network(engine: EngineAPI, name: str) -> None:
    """The companions' network. When the default one is first made, an old claude-cage's
    `cage-egress` goes, if it is claude-cage's and no container uses it (else it stays,
    for the sessions on it, until they have moved)."""
    if engine.network(name) is not None:
        return
    if name == config_mod.DEFAULTS["egress_network"]:
        legacy = engine.network(LEGACY_NETWORK)
        managed_by = legacy.labels.get("managed-by") if legacy is not None else None
        if legacy is not None and managed_by == "claude-cage" and not legacy.containers:
            with contextlib.suppress(CageError):  # in use after all: it stays
                engine.remove_network(LEGACY_NETWORK)
    engine.ensure_network(name, labels.for_shared_network())


class Undo:
    """The one rollback of a start: each thing it makes is put here before it is made,
    and if the start fails (the disk, the engine, the companion, Ctrl-C) everything goes
    again, newest first. `start` owns it: `with Undo(engine) as undo:` unwinds on any
    exception and keeps everything when the block ends well. What the engine did not let
    go (lost, stalled, or out of time after Ctrl-C) is in `left`, so a new session's
    record stays ("starting", with no start at work) for `destroy` and `gc`."""

    def __init__(self, engine: EngineAPI, left: list[str] | None = None) -> None:
        self.engine = engine
        self.left = [] if left is None else left
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Undo:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            self._stack.pop_all()  # it all stays
        else:
            self.unwind()

    def made(self, kind: str, name: str) -> None:
        """A container or a volume about to be made: removed on failure."""
        self._stack.callback(self._remove, kind, name)

    def stopped(self, container: str) -> None:
        """A container this start starts but did not make: stopped on failure."""
        self._stack.callback(self._quietly, self.engine.stop, container)

    def callback(self, undo: Callable[..., object], *args: Any) -> None:
        """Anything else to take back on failure (files on this machine)."""
        self._stack.callback(undo, *args)

    def part(self) -> Undo:
        """A part of the start that can be taken back alone (a bring-up tried again):
        whatever it still holds goes with the rest on failure."""
        part = Undo(self.engine, self.left)
        self._stack.callback(part.unwind)
        return part

    def unwind(self) -> None:
        self._stack.close()

    def forget_record(self, store: metadata.SessionStore, name: str) -> None:
        """A new session's record goes with everything else, unless something the engine
        did not let go still needs it."""
        if not self.left:
            self._quietly(store.remove, name)

    def _remove(self, kind: str, name: str) -> None:
        try:
            if kind == "container":
                self.engine.remove(name)
            else:
                self.engine.remove_volume(name)
                quota.release(name)
        except CageError:
            self.left.append(f"{kind}:{name}")

    @staticmethod
    def _quietly(call: Callable[[str], object], name: str) -> None:
        with contextlib.suppress(CageError):
            call(name)


@dataclass
class Bringing:
    """The containers of one start, brought up under the engine's capacity lock, and
    tried again (up to three times) when another start takes the desktop's port."""

    ctx: Context
    engine: EngineAPI
    cfg: config_mod.Config
    store: metadata.SessionStore
    req: policy.SessionRequest
    decided: policy.Decisions
    info: Container | None  # the session's container before this start, if any
    restarted: bool  # the session has a record: its volumes are filled already
    placing: contextlib.ExitStack  # --engine auto's placement lock, let go once it counts
    desktop_plan: desktop.DesktopPlan | None

    def up(
        self, undo: Undo, key: str | None, creds: list[Secret], snap: hostgit.Snapshot | None
    ) -> tuple[policy.Decisions, desktop.DesktopPlan | None]:
        """Bring the session up, each thing made on `undo`; what was decided (the
        desktop's port may have moved), and the desktop plan it was made with."""
        engine, req, name = self.engine, self.req, self.req.name
        for attempt in range(3):
            made = undo.part()
            # Starts in parallel take turns from the capacity check until their session
            # counts (its container exists), so they cannot overshoot max_sessions.
            capacity = contextlib.ExitStack()
            capacity.enter_context(self.store.lock(capacity_lock(engine)))
            capacity.push(self.placing)
            try:
                check_capacity(engine, self.cfg)
                reuse = self.info is not None
                bring_up(
                    self.ctx,
                    engine,
                    self.cfg,
                    req,
                    self.decided,
                    key,
                    creds,
                    reuse,
                    made,
                    capacity.close,
                )
                if not self.restarted:
                    clone.own_data_volume(engine, req, self.decided)
                    if snap is not None:
                        checkpoint(self.ctx, "start:before-clone")
                        clone.deliver(engine, req, self.decided, f"cage/{name}", snap)
                if self.desktop_plan is not None:
                    desktop.finish(engine, self.store, name, self.desktop_plan)
                return self.decided, self.desktop_plan
            except PortAllocated:
                # Another start took the desktop port between our check and our bind:
                # this attempt's containers go, and the next one binds another port.
                made.unwind()
                if self.desktop_plan is None or attempt == 2:
                    raise
                self.desktop_plan = desktop.prepare(engine, self.cfg, self.store, name, None)
                self.decided = dataclasses.replace(
                    self.decided, desktop_port=self.desktop_plan.port
                )
            finally:
                capacity.close()
        raise AssertionError("unreachable: the last attempt returns or raises")
