"""The egress allowlist and audit log, as pure functions.

The allowlist holds exact host names and `*.example.com` suffix patterns. A suffix
pattern matches any subdomain of example.com, not example.com itself. The companion's
squid enforces it (dstdomain for exact names, an anchored dstdom_regex for suffixes)
together with the allowed ports (config `allowed_ports`, 80 and 443 by default).

Squid writes one line per request in the `cage` log format (images/companion/squid.conf):
    <epoch.millis> <host> <port> <http status> <squid status> <method>
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


def split_allowlist(hosts: list[str]) -> tuple[list[str], list[str]]:
    """(exact names, suffixes such as '.example.com') as the companion wants them."""
    exact = [h for h in hosts if not h.startswith("*.")]
    suffixes = [h[1:] for h in hosts if h.startswith("*.")]
    return exact, suffixes


def companion_allow_args(hosts: list[str], ports: list[int]) -> list[str]:
    """The companion command that rewrites its allowlist and reloads squid."""
    exact, suffixes = split_allowlist(hosts)
    return [
        "companion-entrypoint",
        "allow",
        " ".join(exact),
        " ".join(suffixes),
        " ".join(str(p) for p in ports),
    ]


@dataclass(frozen=True)
class Request:
    time: str
    host: str
    port: int
    allowed: bool
    status: int
    method: str

    def to_json(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "host": self.host,
            "port": self.port,
            "allowed": self.allowed,
            "status": self.status,
            "method": self.method,
        }


def parse_log(text: str) -> list[Request]:
    requests = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 6 or parts[1] == "-":  # "-": a connection that sent no request
            continue
        stamp, host, port, status, squid_status, method = parts
        try:
            when = datetime.fromtimestamp(float(stamp), UTC)
            number, code = int(port), int(status)
        except ValueError:
            continue
        requests.append(
            Request(
                time=when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
                host=host,
                port=number,
                allowed="DENIED" not in squid_status,
                status=code,
                method=method,
            )
        )
    return requests
