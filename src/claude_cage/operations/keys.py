"""API keys: rotate a running session's key without restarting it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from claude_cage import metadata
from claude_cage.engine import Engine
from claude_cage.errors import BadInput, SessionNotFound
from claude_cage.operations import operation
from claude_cage.operations.query import inspect_ours
from claude_cage.operations.session import API_KEY_SECRET, check_api_key, inject_key


@dataclass
class KeyResult:
    name: str
    credential: str
    live: bool

    def event_details(self) -> dict[str, Any]:
        return {"credential": self.credential, "live": self.live}  # never the key


@operation("key-set")
def set_key(name: str, key: str, engine: Engine | None = None) -> KeyResult:
    engine = engine or Engine()
    store = metadata.SessionStore()
    if store.read(name) is None:
        raise SessionNotFound(name)
    key = check_api_key(key.strip(), "the key given")
    with store.lock(name):
        meta = store.read(name)
        if meta is None:
            raise SessionNotFound(name)
        credential = meta.get("credential", "none")
        if credential not in ("api-key-proxy", "api-key-file"):
            raise BadInput(
                f"session {name} was started without an API key, so it has no key path",
                "destroy it and start it again with ANTHROPIC_API_KEY or --api-key-file",
            )
        store.write_secret(name, API_KEY_SECRET, key)
        target = meta["companion"] if credential == "api-key-proxy" else meta["container"]
        info = inspect_ours(engine, target)
        live = bool(info and info["State"]["Running"])
        if live:
            inject_key(engine, name, credential, key)
    return KeyResult(name, credential, live)
