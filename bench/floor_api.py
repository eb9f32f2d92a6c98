"""The floor under `claude-cage list`: one engine API call from a bare Python process.

    python3 bench/floor_api.py OWNER

Asks the engine, over its unix socket, for the containers `claude-cage list` shows
(labels managed-by=claude-cage, cage.role=session, cage.owner=OWNER) with one
GET /containers/json, and prints one line per container. Only the standard library
is imported. The benchmark also uses `get()` for inspect and stats calls.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys
import urllib.parse
from typing import Any

DEFAULT_SOCKET = "/var/run/docker.sock"


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=60)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def socket_path() -> str:
    host = os.environ.get("DOCKER_HOST", "")
    return host[len("unix://") :] if host.startswith("unix://") else DEFAULT_SOCKET


def get(path: str, query: dict[str, str] | None = None) -> Any:
    """GET an engine API path; the decoded JSON, or None on 404."""
    conn = UnixConnection(socket_path())
    try:
        conn.request("GET", path + ("?" + urllib.parse.urlencode(query) if query else ""))
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status == 404:
        return None
    if response.status >= 400:
        raise RuntimeError(f"GET {path}: {response.status} {body[:200]!r}")
    return json.loads(body)


def main() -> None:
    owner = sys.argv[1]
    labels = ["managed-by=claude-cage", "cage.role=session", f"cage.owner={owner}"]
    containers = get("/containers/json", {"all": "1", "filters": json.dumps({"label": labels})})
    for c in containers:
        print(c["Names"][0].lstrip("/"), c["State"], c["Labels"].get("cage.session", ""))


if __name__ == "__main__":
    main()
