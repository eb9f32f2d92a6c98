"""The companion's health, and bringing it back alone while its session runs.

A companion that died (its session flooded it, say) leaves the session with no way out:
that fails closed, as it should. `status` names it and the way back, `claude-cage start
NAME`, which recreates the companion from the session's recorded settings and hands it
its secrets again, without touching the running session.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from claude_cage import audit, config, labels, names
from claude_cage.engine.answers import Container
from claude_cage.engine.api import EngineAPI
from claude_cage.errors import EngineError
from claude_cage.kinds import Mode, Network
from claude_cage.operations.owned import inspect_ours
from claude_cage.record import SessionRecord

if TYPE_CHECKING:
    from claude_cage.context import Context
    from claude_cage.netpolicy.rules import Layer

# Above this share of its process limit, the companion is "overloaded": new processes
# (the operator's allow, key set, wait-ready) may not start.
OVERLOADED = 0.9


def problem(name: str, info: Container | None, pids: int | None = None) -> str | None:
    """What is wrong with a running session's companion, with the way out; None if
    nothing is. `info` is its inspect (None: gone), `pids` its process count if known."""
    fix = f"restart it alone with 'claude-cage start {name}'"
    if info is None:
        return f"the companion is gone: the session has no proxy; {fix}"
    state = info.state
    if not state.running:
        why = "killed for running out of memory" if state.oom_killed else (
            f"exited with code {state.exit_code}"
        )  # fmt: skip
        return f"the companion {why}: the session has no proxy; {fix}"
    limit = info.settings.pids_limit or 0
    if pids is not None and limit and pids >= OVERLOADED * limit:
        return (
            f"the companion is overloaded ({pids} of {limit} processes): the session holds "
            f"too many connections; stop what floods it, or {fix}"
        )
    return None


def pids_in_use(info: Container) -> int | None:
    """The companion's process count, from its cgroup on this host (cgroup v1 or v2,
    cgroupfs or systemd); None where the engine is not local. No process in it is
    needed, so this works when it is full."""
    cid = info.id
    for path in (
        f"/sys/fs/cgroup/pids/docker/{cid}/pids.current",
        f"/sys/fs/cgroup/pids/system.slice/docker-{cid}.scope/pids.current",
        f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/pids.current",
        f"/sys/fs/cgroup/docker/{cid}/pids.current",
    ):
        try:
            return int(Path(path).read_text())
        except (OSError, ValueError):
            continue
    return None


def push_policy(
    engine: EngineAPI, name: str, layers: tuple[Layer, ...], ports: tuple[int, ...], learn: bool
) -> bool:
    """Hand a running companion the squid rules of `layers` (every layer, the session's
    too: its presets are compiled, its hosts are the allowlist files `allow` writes);
    False when none runs. `policy apply` and `allow --preset` both come here."""
    # start-up: `status` imports this module; the policy's YAML reader only here
    from claude_cage.netpolicy import layers as policy_layers
    from claude_cage.netpolicy import rules, squid

    companion = names.companion_name(name)
    info = inspect_ours(engine, companion)
    if not (info and info.running):
        return False
    policy_layers.require_image_support(info.image, info.labels)
    files = squid.compile_files(rules.Policy(layers, ports, learn))
    code, output = engine.exec_run(
        companion, ["companion-entrypoint", "policy"], stdin=squid.tar_bytes(files)
    )
    if code != 0:
        raise EngineError(
            f"the proxy of {name} refused the policy: "
            f"{output.decode(errors='replace').strip()[-300:]}",
            f"see 'docker logs {companion}'",
        )
    return True


def drain_audit(ctx: Context, engine: EngineAPI, name: str) -> None:
    """File what the companion's log holds before the companion (and its log) goes."""
    companion = inspect_ours(engine, names.companion_name(name))
    if companion is None or companion.labels.get(labels.NETWORK) != Network.FILTERED:
        return
    engine.stop(companion.id, timeout=1)  # its log is final once it stops
    audit.drain(
        ctx.events, engine, name, companion.id, numbering=audit.record_numbering(ctx.store, name)
    )


def needs_restart(engine: EngineAPI, name: str, meta: SessionRecord | None) -> bool:
    """A running session whose companion should run and does not."""
    if meta is None or not meta.companion:
        return False
    info = engine.inspect(names.companion_name(name))
    return info is None or not info.running


def restart(ctx: Context, engine: EngineAPI, cfg: config.Config, meta: SessionRecord) -> None:
    """Recreate a running session's companion from its record, and hand it the
    credentials and the desktop token again. The caller holds the session's lock."""
    # `status` imports this module for problem(); what only a restart needs stays off it
    # (start-up: urllib.request, the credentials, the managed settings, the policy's YAML)
    from claude_cage import policy
    from claude_cage.netpolicy import layers as policy_layers
    from claude_cage.operations import desktop, inputs, secret_store

    name = meta.name
    req = inputs.request_from_record(meta, cfg)
    # the egress policy it was given (its start, or its last `policy apply`)
    decided = inputs.decisions_from_record(meta, *policy_layers.saved(ctx.store.dir(name)))
    plan = policy.plan(cfg.values, req, decided, inputs.host_facts(cfg))
    if plan.companion is None:
        return
    store = ctx.store
    drain_audit(ctx, engine, name)
    engine.remove(plan.companion.name)
    engine.create(plan.companion)
    engine.start(plan.companion.name)
    code, output = engine.exec_run(plan.companion.name, ["companion-entrypoint", "wait-ready"])
    if code != 0:
        raise EngineError(
            f"the companion did not start again: {output.decode(errors='replace').strip()}",
            f"see 'docker logs {plan.companion.name}'",
        )
    if req.network == Network.FILTERED:  # squid takes them with a reconfigure
        secret_store.hand_over(engine, name, secret_store.effective(store, name))
    if req.mode == Mode.DESKTOP:
        token = store.read_secret(name, desktop.TOKEN_SECRET)
        if token:
            code, _ = engine.exec_run(
                plan.companion.name,
                ["companion-entrypoint", "set-vnc-token"],
                stdin=(token + "\n").encode(),
            )
    if req.network == Network.FILTERED:
        audit.ensure_follower()
