"""The least policy that allows what a session did, as a file to review.

From the session's egress log: every request that reached its upstream (allowed, or
failed there). A host whose requests the companion decrypted gets one rule per path
(a prefix, query left out) with the methods used on it; a host seen only as a tunnel
gets a host rule; a port outside the session's own is named. Nothing is generalised:
the reviewer widens what should be wider.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import yaml

from claude_cage.egress import Request
from claude_cage.netpolicy.schema import VERSION

CONNECT = "CONNECT"


def suggest(requests: Iterable[Request], ports: Sequence[int], name: str = "") -> str:
    inside: dict[tuple[str, int], dict[str, set[str]]] = {}
    tunnels: dict[tuple[str, int], None] = {}
    for r in requests:
        if not r.allowed or r.port is None or not r.host or r.host == "-":
            continue
        key = (r.host.lower(), r.port)
        if r.method == CONNECT or not r.path:
            tunnels[key] = None
        else:
            path = r.path.split("?", 1)[0] or "/"
            inside.setdefault(key, {}).setdefault(path, set()).add(r.method.upper())
    rules: list[dict[str, object]] = []
    for key in sorted(set(tunnels) | set(inside)):
        host, port = key
        extra: dict[str, object] = {} if port in ports else {"port": port}
        if key not in inside:
            rules.append({"action": "allow", "host": host, **extra})
            continue
        for path, methods in sorted(inside[key].items()):
            rules.append(
                {
                    "action": "allow",
                    "host": host,
                    **extra,
                    "methods": sorted(methods),
                    "paths": [path],
                }
            )
    head = (
        f"# The least egress policy that allows what session {name} did (claude-cage "
        "policy suggest).\n# Review it: widen paths with * or ** where that is meant.\n"
    )
    body = yaml.safe_dump(
        {"version": VERSION, "rules": rules}, sort_keys=False, default_flow_style=None, width=100
    )
    return head + body
