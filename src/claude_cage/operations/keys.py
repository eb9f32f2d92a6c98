"""API keys: read and check the user's key, hand it to a session, rotate it live.

A key travels only on an exec's stdin: never in argv, the environment, `docker
inspect`, metadata, logs or error messages. It is kept 0600 beside the metadata so a
stopped session can get it again.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from claude_cage import metadata, names
from claude_cage.engine import Engine
from claude_cage.errors import BadInput, EngineError, SessionNotFound
from claude_cage.kinds import Credential
from claude_cage.operations import operation
from claude_cage.operations.objects import inspect_ours

API_KEY_SECRET = "api_key"
_API_KEY = re.compile(r"^[A-Za-z0-9._~+/=-]{8,512}$")


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


def inject_key(engine: Engine, name: str, credential: Credential, key: str) -> None:
    """Hand the key over on stdin: never in argv, env, inspect output or the image."""
    if credential == Credential.API_KEY_PROXY:
        target, cmd = names.companion_name(name), ["companion-entrypoint", "set-key"]
    else:
        target = names.container_name(name)
        cmd = ["sh", "-c", "umask 077 && cat > /run/cage/secrets/api_key"]
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


@operation("key-set")
def set_key(name: str, key: str, engine: Engine | None = None) -> KeyResult:
    engine = engine or Engine()
    store = metadata.SessionStore()
    if store.load(name) is None:
        raise SessionNotFound(name)
    key = check_api_key(key.strip(), "the key given")
    with store.lock(name):
        session = store.load(name)
        if session is None:
            raise SessionNotFound(name)
        credential = session.credential
        if credential not in (Credential.API_KEY_PROXY, Credential.API_KEY_FILE):
            raise BadInput(
                f"session {name} was started without an API key, so it has no key path",
                "destroy it and start it again with ANTHROPIC_API_KEY or --api-key-file",
            )
        store.write_secret(name, API_KEY_SECRET, key)
        proxied = credential == Credential.API_KEY_PROXY
        target = session.companion if proxied else session.container
        info = inspect_ours(engine, target)
        live = bool(info and info["State"]["Running"])
        if live:
            inject_key(engine, name, credential, key)
    return KeyResult(name, credential, live)
