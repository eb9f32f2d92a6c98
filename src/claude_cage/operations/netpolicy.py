"""Egress policy operations: show, check, validate and apply a session's policy.

A session's policy is its managed, user and project layers as they were read at its
start (or its last `policy apply`), kept in its directory, plus its session layer, the
allowlist in its record. Without a NAME, the policy a session started here would get.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from claude_cage import config as config_mod
from claude_cage.context import Context
from claude_cage.errors import BadInput, EngineError, file_error
from claude_cage.netpolicy import layers, schema
from claude_cage.netpolicy import suggest as suggest_mod
from claude_cage.netpolicy.rules import Decision, Policy, Request, session_layer
from claude_cage.operations import operation
from claude_cage.operations.companion import push_policy
from claude_cage.operations.egress import filtered_session, read_log
from claude_cage.record import SessionRecord

EGRESS_POLICY = "egress policy"  # what a session of another network has none of


@dataclass
class PolicyView:
    name: str | None  # None: a new session's
    policy: Policy

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ports": list(self.policy.ports),
            "layers": [x.to_json() for x in self.policy.layers],
        }


@dataclass
class CheckResult:
    name: str | None
    request: Request
    decision: Decision

    def to_json(self) -> dict[str, Any]:
        matched = self.decision.matched
        return {
            "name": self.name,
            "host": self.request.host,
            "port": self.request.port,
            "method": self.request.method,
            "path": self.request.path,
            "allowed": self.decision.allowed,
            "rule": self.decision.rule,
            "source": matched.source if matched else "",
            "reason": self.decision.reason,
        }


@dataclass
class ApplyResult:
    name: str
    live: bool
    rules: int
    notes: list[str] = field(default_factory=list)

    def event_details(self) -> dict[str, Any]:
        return {"live": self.live, "rules": self.rules}


def _ports(meta: SessionRecord | None, cfg: config_mod.Config) -> tuple[int, ...]:
    given = meta.allowed_ports if meta is not None and meta.allowed_ports else None
    return tuple(int(p) for p in (given or cfg["allowed_ports"]))


def _project_for(meta: SessionRecord) -> tuple[Path | None, str]:
    return layers.project_dir(meta.repo, meta.mounts)


def effective(ctx: Context, name: str | None) -> PolicyView:
    """A session's policy, or (no name) what a session started from here would get:
    the files now, the config's allowlist and presets, the current directory's
    project file (as `start --clone .` would read it)."""
    cfg = ctx.config
    if name is None:
        project, why = layers.project_dir(str(Path.cwd()), ())
        found = layers.load(cfg["managed_policy"], project, why)
        session = session_layer(cfg["allowed_hosts"], cfg["allowed_presets"])
        return PolicyView(None, Policy((*found, session), _ports(None, cfg)))
    store = ctx.store
    meta = filtered_session(store, name, EGRESS_POLICY)
    kept, learn = layers.saved(store.dir(name))
    return PolicyView(
        name,
        Policy(
            (*kept, session_layer(meta.allowed_hosts, meta.allowed_presets)),
            _ports(meta, cfg),
            learn,
        ),
    )


def parse_url(url: str, method: str) -> Request:
    try:
        parts = urlsplit(url if "://" in url else f"https://{url}")
        port = parts.port
    except ValueError as exc:
        raise BadInput(f"{url!r} is not a URL: {exc}", "e.g. https://api.github.com/user") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput(f"{url!r} is not an http(s) URL", "e.g. https://api.github.com/user")
    verb = method.strip().upper()
    if not verb.isalpha():
        raise BadInput(f"--method {method!r} is not an HTTP method", "e.g. --method POST")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default = 443 if parts.scheme == "https" else 80
    return Request(parts.hostname, port or default, verb, path)


def check(ctx: Context, name: str | None, url: str, method: str = "GET") -> CheckResult:
    request = parse_url(url, method)
    return CheckResult(name, request, effective(ctx, name).policy.decide(request))


def validate(path: str) -> list[str]:
    """Every problem of a policy file, one line each with its line number."""
    file = Path(path)
    text = layers.read_text(file)
    if text is None:
        raise BadInput(f"{path}: no such file", "give the path of a policy file")
    _, problems = schema.parse(text)
    return [p.text(path) for p in problems]


@operation("policy-apply")
def apply(ctx: Context, name: str) -> ApplyResult:
    """Read the managed, user and project files again and give them to a session, live."""
    cfg = ctx.config
    engine = ctx.engine_for(name)
    store = ctx.store
    with store.lock(name):
        meta = filtered_session(store, name, EGRESS_POLICY)
        project, why = _project_for(meta)
        kept = layers.load(cfg["managed_policy"], project, why)
        _, learn = layers.saved(store.dir(name))
        session = session_layer(meta.allowed_hosts, meta.allowed_presets)
        live = push_policy(engine, name, (*kept, session), _ports(meta, cfg), learn)
        layers.save(store.dir(name), kept, learn)
    notes = [why] if why else []
    return ApplyResult(name, live, sum(len(x.rules) for x in kept), notes)


@dataclass
class Suggestion:
    name: str
    text: str
    requests: int
    written: str = ""


def suggest(ctx: Context, name: str, write: str | None = None) -> Suggestion:
    """The least policy that allows every request session NAME's companion logged as
    reaching its upstream (netpolicy/suggest.py); with `write`, also that file."""
    cfg = ctx.config
    meta = filtered_session(ctx.store, name, EGRESS_POLICY)
    log = read_log(ctx, name, None)
    text = suggest_mod.suggest(log.requests, _ports(meta, cfg), name)
    if schema.parse(text)[1]:  # never hand out a file that `validate` would refuse
        raise EngineError(f"the policy suggested for {name} does not validate")
    written = ""
    if write:
        path = Path(write)
        _write_new(path, text)
        written = str(path)
    return Suggestion(name, text, sum(1 for r in log.requests if r.allowed), written)


def _write_new(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file of a name no one could have
    planted (created exclusively, never through a link: the directory may be a mount the
    session writes, where a link at a fixed name such as `policy.yaml.tmp` would turn
    this write into one of the user's own files), then renamed over `path` (a link
    there is replaced, never followed)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(tmp, flags, 0o666)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise file_error(exc, path) from None
