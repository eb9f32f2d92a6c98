"""Anthropic credentials given to `start` or `key set`: read, check, hand over.

A filtered session's key or subscription token is its `anthropic` credential
(operations/secret_store.py), added by its companion; the session never holds it. A
none/host session's key is a 0600 file inside it, handed over on an exec's stdin:
never in argv, the environment, `docker inspect`, metadata, logs or error messages.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from claude_cage import credentials, metadata, names, policy
from claude_cage.credentials import Secret
from claude_cage.engine.api import EngineAPI
from claude_cage.errors import BadInput, EngineError, SessionNotFound
from claude_cage.kinds import Credential, Network
from claude_cage.operations import operation, secret_store
from claude_cage.operations.owned import inspect_ours

if TYPE_CHECKING:
    from claude_cage.context import Context

API_KEY_SECRET = secret_store.API_KEY_SECRET
_API_KEY = re.compile(r"^[A-Za-z0-9._~+/=-]{8,512}$")
_VALUE_MAX = 64 * 1024  # the most of a --file read: a key is at most 512 bytes
# What Anthropic's keys look like: "sk-ant-" then a kind ("api03-", "admin01-", ...) and a
# long url-safe body (a real one is about 100 characters).
_ANTHROPIC_KEY = re.compile(r"^sk-ant-[A-Za-z0-9]+-[A-Za-z0-9_-]{16,}$")


def read_value_file(path: str, flag: str) -> str:
    """A key's or a secret's value from the file `flag` names: at most _VALUE_MAX bytes
    (not all of /dev/zero), UTF-8 text. Never echoed in errors."""
    try:
        with Path(path).expanduser().open("rb") as file:
            raw = file.read(_VALUE_MAX + 1)
    except OSError as exc:
        raise BadInput(f"cannot read {flag} {path}: {exc.strerror}", "check the path") from None
    hint = "give a file that holds the value alone, on one line"
    if len(raw) > _VALUE_MAX:
        raise BadInput(f"{flag} {path} is larger than {_VALUE_MAX >> 10} KiB", hint)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput(f"{flag} {path} is not UTF-8 text", hint) from None


def read_api_key(api_key_file: str | None, environ: Mapping[str, str]) -> str | None:
    """The key from --api-key-file, else ANTHROPIC_API_KEY (of the command's environment,
    Context.environ). Never echoed in errors."""
    if api_key_file:
        key = read_value_file(api_key_file, "--api-key-file").strip()
        source = f"--api-key-file {api_key_file}"
    else:
        key = environ.get("ANTHROPIC_API_KEY", "").strip()
        source = "ANTHROPIC_API_KEY"
    if not key:
        if api_key_file:
            raise BadInput(f"{source} is empty", "put the API key in the file")
        return None
    return check_api_key(key, f"the API key from {source}")


def check_api_key(key: str, what: str, kind: str = "api-key") -> str:
    """Refuse anything that is not key-shaped (it ends up in a proxy's config file),
    and a subscription token where a key belongs (or the other way round)."""
    if not _API_KEY.match(key):
        raise BadInput(
            f"{what} has characters an API key never has",
            "check that it holds the key alone, on one line",
        )
    credentials.check_kind_value(kind, key)
    return key


def read_start_credential(
    environ: Mapping[str, str], api_key_file: str | None, network: Network
) -> Secret | None:
    """The Anthropic credential a start was given: an API key (--api-key-file or
    ANTHROPIC_API_KEY) or a subscription token (CLAUDE_CODE_OAUTH_TOKEN)."""
    key = read_api_key(api_key_file, environ)
    token = environ.get("CLAUDE_CODE_OAUTH_TOKEN", "").strip()
    if key and token:
        raise BadInput(
            "both an API key and CLAUDE_CODE_OAUTH_TOKEN are set",
            "unset the one this session should not use",
        )
    if token:
        check_api_key(token, "CLAUDE_CODE_OAUTH_TOKEN", "claude-token")
        policy.check_token(network)
    value, kind = (key, "api-key") if key else (token, "claude-token")
    if not value:
        return None
    host = (credentials.ANTHROPIC_HOST,)
    return Secret(secret_store.ANTHROPIC, kind, host, value, None, metadata.now_iso(), "session")


def inject_key(engine: EngineAPI, name: str, key: str) -> None:
    """Hand a none/host session its key file on stdin. (A filtered session never gets
    it: its companion adds it, see operations/secret_store.py.)"""
    target = names.container_name(name)
    # mkdir: on gVisor this exec can come before the entrypoint made the directory.
    cmd = ["sh", "-c", "umask 077 && mkdir -p /run/cage/secrets && cat > /run/cage/secrets/api_key"]
    code, _output = engine.exec_run(target, cmd, stdin=key.encode())
    if code != 0:
        raise EngineError(f"could not hand the API key to {target} (exit {code})")


@dataclass
class KeyResult:
    name: str
    credential: Credential
    live: bool

    def event_details(self) -> dict[str, Any]:
        return {"credential": self.credential.value, "live": self.live}  # never the key


def check_key_shape(key: str) -> str:
    """Refuse what is not an Anthropic API key at all (an empty line, a word, a token of
    another service): `key set` is the one place a key is typed in by hand."""
    key = key.strip()
    if not key:
        raise BadInput(
            "no key was given (standard input was empty)",
            "pass the key on standard input or with --file: claude-cage key set NAME < key",
        )
    key = check_api_key(key, "the key given")
    if not _ANTHROPIC_KEY.match(key):
        raise BadInput(
            "the key given does not look like an Anthropic API key (sk-ant-api03-...)",
            "check that it is the key itself; pass --force to set an unusual key anyway",
        )
    return key


@operation("key-set")
def set_key(ctx: Context, name: str, key: str, force: bool = False) -> KeyResult:
    engine = ctx.engine_for(name)
    store = ctx.store
    found = store.load(name)
    if found is None:
        raise SessionNotFound(name)
    key = check_api_key(key.strip(), "the key given") if force else check_key_shape(key)
    if found.network == Network.FILTERED:
        result = secret_store.store_secret(
            ctx, secret_store.ANTHROPIC, key, [], "api-key", None, name
        )
        return KeyResult(name, Credential.API_KEY_PROXY, bool(result.updated))
    with store.lock(name):
        session = store.load(name)
        if session is None:
            raise SessionNotFound(name)
        credential = session.credential
        if credential != Credential.API_KEY_FILE:
            raise BadInput(
                f"session {name} was started without an API key, so it has no key path",
                "destroy it and start it again with ANTHROPIC_API_KEY or --api-key-file",
            )
        store.write_secret(name, API_KEY_SECRET, key)
        info = inspect_ours(engine, session.container)
        live = bool(info and info.running)
        if live:
            inject_key(engine, name, key)
    return KeyResult(name, credential, live)
