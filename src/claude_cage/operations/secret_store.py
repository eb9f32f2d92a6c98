"""Credentials for every session or for one: stored 0600 outside any container, handed
to running companions at once (rotation needs no restart), never shown.

Storage: `<data dir>/credentials/<name>.json` for all sessions, and
`<data dir>/sessions/<session>/credentials/<name>.json` for one. A session's own
credential takes its hosts from any credential for all sessions.

A damaged credential file is named, never skipped: `secret list` shows it as damaged,
`secret rm NAME` removes it, `secret set NAME` replaces it, and a start that would
hand credentials over refuses, naming it (the user expects that credential there).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from claude_cage import credentials, managed, metadata, names, paths, presets
from claude_cage.credentials import Secret
from claude_cage.engine.api import EngineAPI
from claude_cage.errors import (
    BadInput,
    CageError,
    DamagedFile,
    EngineError,
    NotFound,
    SessionNotFound,
    file_error,
)
from claude_cage.kinds import Credential, Network
from claude_cage.operations import operation
from claude_cage.operations.owned import inspect_ours

if TYPE_CHECKING:
    from claude_cage.context import Context

API_KEY_SECRET = "api_key"  # a none/host session's key file, and older filtered sessions'
ANTHROPIC = "anthropic"  # the name start and `key set` give a session's Anthropic credential


def _dir(session: str | None) -> Path:
    if session is None:
        return paths.data_dir() / "credentials"
    return paths.sessions_dir() / session / "credentials"


MAX_BYTES = 1 << 20  # a credential is a few hundred bytes


class DamagedCredential(DamagedFile):
    """A credential file that cannot be read back as a credential."""

    def __init__(self, path: Path, session: str | None, reason: str) -> None:
        self.name = path.stem
        self.scope = "all" if session is None else "session"
        where = f" --session {session}" if session else ""
        super().__init__(
            path,
            f"the credential {self.name!r} is damaged ({reason})",
            f"set it again ('claude-cage secret set {self.name}{where} ...'), or remove it "
            f"('claude-cage secret rm {self.name}{where}')",
        )


def _read(path: Path, session: str | None) -> Secret:
    """One credential file, or DamagedCredential saying what is wrong with it."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise DamagedCredential(path, session, f"cannot be read: {exc.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise DamagedCredential(path, session, f"larger than {MAX_BYTES >> 20} MiB")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise DamagedCredential(path, session, "not JSON") from None
    try:
        cred = Secret.from_json(data, "all" if session is None else "session")
    except (KeyError, TypeError, AttributeError, ValueError):
        raise DamagedCredential(path, session, "not a credential: a key is missing") from None
    if cred.name != path.stem:
        raise DamagedCredential(path, session, f"it names the credential {cred.name!r}")
    fits = (
        cred.kind in credentials.KINDS
        and cred.hosts
        and cred.value.strip()
        and (cred.header is None or isinstance(cred.header, str))
    )
    if not fits:
        raise DamagedCredential(path, session, "its kind, hosts, header or value is unusable")
    return cred


def scan(session: str | None) -> tuple[list[Secret], list[DamagedCredential]]:
    """The credentials of one scope (None: all sessions), and apart from them the
    damaged files."""
    folder = _dir(session)
    creds, damaged = [], []
    try:
        paths_found = sorted(folder.glob("*.json")) if folder.is_dir() else []
    except OSError as exc:
        raise DamagedFile(folder, f"cannot be read: {exc.strerror}") from None
    for path in paths_found:
        try:
            creds.append(_read(path, session))
        except DamagedCredential as exc:
            damaged.append(exc)
    return creds, damaged


def load(session: str | None) -> list[Secret]:
    """The credentials of one scope (None: all sessions); DamagedCredential for the
    first damaged file (nothing is handed over without it)."""
    creds, damaged = scan(session)
    if damaged:
        raise damaged[0]
    return creds


def save(cred: Secret, session: str | None) -> None:
    folder = _dir(session)
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise file_error(exc, folder) from None
    metadata.write_file(folder / f"{cred.name}.json", json.dumps(cred.to_json()), 0o600)


def effective(
    store: metadata.SessionStore, session: str, given: Secret | None = None
) -> list[Secret]:
    """What a session's companion adds: its own credentials (`given` replaces the one
    of its name), then those for all sessions on the hosts its own do not cover."""
    own = [c for c in load(session) if given is None or c.name != given.name]
    if given is not None:
        own.append(given)
    legacy = store.read_secret(session, API_KEY_SECRET)
    if legacy and not any(c.name == ANTHROPIC for c in own):
        own.append(Secret(ANTHROPIC, "api-key", (credentials.ANTHROPIC_HOST,), legacy.strip()))
    result = list(own)
    for cred in load(None):
        if any(c.name == cred.name for c in own):
            continue
        taken = {h for c in own for h in credentials.clashes(c, cred)}
        hosts = tuple(h for h in cred.hosts if h not in taken)
        if hosts:
            result.append(Secret(cred.name, cred.kind, hosts, cred.value, cred.header))
    return result


# --- pushing to running sessions ------------------------------------------------------


def push(
    engine: EngineAPI, store: metadata.SessionStore, session: str, running: bool = True
) -> Credential:
    """Hand a filtered session's companion its credentials, and Claude Code a placeholder
    of the matching kind. Returns the session's credential kind. Call it locked."""
    creds = effective(store, session)
    kind = credentials.session_kind(creds)
    if running:
        hand_over(engine, session, creds)
    return kind


def hand_over(engine: EngineAPI, session: str, creds: list[Secret]) -> None:
    """The companion's squid rules, values included, on an exec's stdin only."""
    code, _output = engine.exec_run(
        names.companion_name(session),
        ["companion-entrypoint", "set-credentials"],
        stdin=credentials.squid_rules(creds).encode(),
    )
    if code != 0:
        raise EngineError(
            f"the companion of {session} did not take its credentials (exit {code})",
            f"see 'docker logs {names.companion_name(session)}'",
        )


def _rewrite_claude_settings(ctx: Context, session: str, kind: str) -> None:
    """The managed settings directory is bound into the session: a rewrite on the host
    shows inside at once, for the next Claude Code that starts there."""
    directory = ctx.store.dir(session) / "claude-code"
    if directory.is_dir():
        operator = ctx.config["claude_managed_settings"]
        managed.write(directory, managed.compose(operator, kind))


def _running_filtered(ctx: Context, store: metadata.SessionStore) -> list[str]:
    """Filtered sessions whose companion runs, each asked on its own engine (one that
    cannot be reached is skipped: it gets its credentials at its next start)."""
    result = []
    for name, session in store.load_all().items():
        if session.network != Network.FILTERED:
            continue
        try:
            info = inspect_ours(ctx.engine_for(name), names.companion_name(name))
        except CageError:
            continue
        if info and info.running:
            result.append(name)
    return result


def _refresh(ctx: Context, session: str, store: metadata.SessionStore) -> bool:
    """Push to one session if its companion runs; record its new kind. Locks it."""
    engine = ctx.engine_for(session)
    with store.lock(session):
        found = store.load(session)
        if found is None or found.network != Network.FILTERED:
            return False
        info = inspect_ours(engine, names.companion_name(session))
        running = bool(info and info.running)
        kind = push(engine, store, session, running)
        if found.credential != kind:
            _rewrite_claude_settings(ctx, session, kind)
            store.save(dataclasses.replace(found, credential=kind))
        return running


# --- set / list / rm ------------------------------------------------------------------


@dataclass
class SecretResult:
    name: str  # the credential's, not a session's
    kind: str
    hosts: list[str]
    fingerprint: str
    session: str | None
    updated: list[str] = field(default_factory=list)  # running sessions that got it now

    def event_details(self) -> dict[str, Any]:  # never the value
        return {
            "kind": self.kind,
            "hosts": self.hosts,
            "fingerprint": self.fingerprint,
            "scope": self.session or "all",
            "sessions_updated": self.updated,
        }


def check_allowed(hosts: Sequence[str], allowlist: Sequence[str], where: str, fix: str) -> None:
    """A credential is added only on the way to its hosts, and those must be reachable:
    refuse rather than widen the allowlist behind the user's back."""
    for host in hosts:
        if not credentials.covered(host, allowlist):
            raise BadInput(
                f"{host} is not in {where}: the credential could never be used",
                fix.replace("HOST", host),
            )


def _check_scope(ctx: Context, hosts: list[str], session: str | None) -> None:
    if session is None:
        # a preset's hosts are reachable too (GET and HEAD: a token to install with)
        allowlist = [*ctx.config["allowed_hosts"], *presets.hosts(ctx.config["allowed_presets"])]
        where = "the configured allowed_hosts"
        fix = "add it to allowed_hosts in the config file ('claude-cage config path')"
    else:
        found = ctx.store.load(session)
        if found is None or found.network != Network.FILTERED:
            raise BadInput(
                f"session {session} has no filtered network, so no proxy to add a credential",
                "start a session with --network filtered (the default)",
            )
        allowlist = [*found.allowed_hosts, *presets.hosts(found.allowed_presets)]
        where = f"session {session}'s allowlist"
        fix = f"allow it first: claude-cage allow {session} HOST"
    check_allowed(hosts, allowlist, where, fix)


def store_secret(
    ctx: Context,
    name: str,
    value: str,
    hosts: list[str],
    kind: str | None = None,
    header: str | None = None,
    session: str | None = None,
) -> SecretResult:
    credentials.check_name(name)
    store = ctx.store
    if session is not None and store.load(session) is None:
        raise SessionNotFound(session)
    if kind in credentials.ANTHROPIC_KINDS and not hosts:
        hosts = [credentials.ANTHROPIC_HOST]
    if not hosts:
        raise BadInput("a credential needs at least one --host", "e.g. --host api.github.com")
    checked = list(dict.fromkeys(credentials.check_host(h) for h in hosts))
    kind = kind or credentials.default_kind(checked)
    if kind not in credentials.KINDS:
        raise BadInput(f"unknown kind {kind!r}", "one of: " + ", ".join(credentials.KINDS))
    if kind == "header":
        if not header:
            raise BadInput("--kind header needs --header NAME", "e.g. --header X-Api-Key")
        header = credentials.check_header(header)
    elif header:
        raise BadInput(f"--header goes with --kind header, not {kind}", "drop --header")
    value = credentials.check_value(value, "the secret")
    credentials.check_kind_value(kind, value)
    _check_scope(ctx, checked, session)
    cred = Secret(name, kind, tuple(checked), value, header, metadata.now_iso())
    others, damaged = scan(session)
    for broken in damaged:
        if broken.name != name:  # the one of this name is what this replaces
            raise broken
    for other in others:
        clash = credentials.clashes(other, cred)
        if other.name != name and clash:
            raise BadInput(
                f"credential {other.name!r} already sets that header for {', '.join(clash)}",
                f"replace it under its name ({other.name}), or remove it first",
            )
    save(cred, session)
    targets = [session] if session else _running_filtered(ctx, store)
    updated = [s for s in targets if _refresh(ctx, s, store)]
    return SecretResult(name, kind, checked, cred.fingerprint(), session, updated)


# `secret set`, recorded as its own event (`key set` stores through store_secret too)
set_secret = operation("secret-set")(store_secret)


def list_secrets(ctx: Context, session: str | None = None) -> list[dict[str, Any]]:
    """The credentials for all sessions, then each session's own (`session` names
    whose): of one session with `session`, else of every session."""
    store = ctx.store
    if session is not None and store.load(session) is None:
        raise SessionNotFound(session)
    shown: list[dict[str, Any]] = []
    for owner in [None, *([session] if session is not None else store.names())]:
        found, damaged = scan(owner)
        shown += [{**c.public(), "session": owner, "damaged": None} for c in found]
        shown += [
            {
                "name": broken.name,
                "kind": None,
                "hosts": [],
                "header": None,
                "fingerprint": None,
                "scope": broken.scope,
                "created": None,
                "session": owner,
                "damaged": broken.message,
            }
            for broken in damaged
        ]
    return shown


@operation("secret-rm")
def remove_secret(ctx: Context, name: str, session: str | None = None) -> SecretResult:
    credentials.check_name(name)
    store = ctx.store
    if session is not None and store.load(session) is None:
        raise SessionNotFound(session)
    creds, damaged = scan(session)
    found = [c for c in creds if c.name == name]
    broken = [d for d in damaged if d.name == name]
    if not found and not broken:
        scope = f"session {session}" if session else "all sessions"
        raise NotFound(
            f"no credential named {name!r} for {scope}",
            "see 'claude-cage secret list'" + (f" --session {session}" if session else ""),
        )
    path = _dir(session) / f"{name}.json"
    try:
        if path.is_dir() and not path.is_symlink():  # a damaged one: a directory in its place
            shutil.rmtree(path)
        else:
            path.unlink()
    except OSError as exc:
        raise file_error(exc, path) from None
    if session is not None and name == ANTHROPIC:
        store_path = store.dir(session) / API_KEY_SECRET
        store_path.unlink(missing_ok=True)
    targets = [session] if session else _running_filtered(ctx, store)
    updated = []
    for target in targets:
        try:
            if _refresh(ctx, target, store):
                updated.append(target)
        except CageError:
            continue
    if not found:  # a damaged file: nothing of it is known
        return SecretResult(name, "damaged", [], "", session, updated)
    cred = found[0]
    return SecretResult(name, cred.kind, list(cred.hosts), cred.fingerprint(), session, updated)
