"""The least policy that allows what a session did, as a file to review.

From the session's egress log: every request that reached its upstream (allowed, or
failed there). A host whose requests the companion decrypted gets one rule per path
(a prefix, query left out) with the methods used on it; a host seen only as a tunnel
gets a host rule; a port outside the session's own is named. Nothing is generalised:
the reviewer widens what should be wider. The session chose every host, method and path
it sent, so only an exact host name, a method and a path the file could hold as written
make a rule: a host such as `*.example.com` (squid passes that CONNECT on, and it fails
upstream) would become a pattern over every subdomain, and text that does not validate
would stop the whole suggestion. What is left out is counted, never quoted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import yaml

from claude_cage.egress import Request
from claude_cage.netpolicy.schema import _METHOD, _PATH, VERSION
from claude_cage.validators import validate_host

CONNECT = "CONNECT"


def suggest(requests: Iterable[Request], ports: Sequence[int], name: str = "") -> str:
    inside: dict[tuple[str, int], dict[str, set[str]]] = {}
    tunnels: dict[tuple[str, int], None] = {}
    left_out = 0
    for r in requests:
        if not r.allowed or r.port is None or not r.host or r.host == "-":
            continue
        if not _exact_name(r.host):
            left_out += 1
            continue
        key = (r.host.lower(), r.port)
        if r.method == CONNECT or not r.path:
            tunnels[key] = None
        else:
            path = r.path.split("?", 1)[0] or "/"
            method = r.method.upper()
            if not _PATH.match(path) or not _METHOD.match(method) or method == CONNECT:
                left_out += 1
                continue
            inside.setdefault(key, {}).setdefault(path, set()).add(method)
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
    if left_out:
        head += (
            f"# {left_out} request(s) left out: a host that is not an exact host name, or a "
            "method or path no rule can hold (see 'claude-cage egress').\n"
        )
    body = yaml.safe_dump(
        {"version": VERSION, "rules": rules}, sort_keys=False, default_flow_style=None, width=100
    )
    return head + body


def _exact_name(host: str) -> bool:
    """A name `allow` and a policy file take as one host: never a `*.` pattern."""
    if host.startswith("*"):
        return False
    try:
        validate_host(host)
    except ValueError:
        return False
    return True
