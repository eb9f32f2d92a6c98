"""The egress allowlist and audit log, as pure functions.

The allowlist holds exact host names and `*.example.com` suffix patterns. A suffix
pattern matches any subdomain of example.com, not example.com itself. The companion's
squid enforces it (dstdomain for exact names, an anchored dstdom_regex for suffixes)
together with the allowed ports (config `allowed_ports`, 80 and 443 by default).

Squid writes one line per request to the companion's standard output, in the `cage`
log format (images/companion/squid.conf):
    <seq> <epoch.millis> <host> <port> <status> <upstream status> <squid status>
    <error page> <method>
`seq` is squid's own line counter (from 0 for each companion): a gap in it means lines
were lost, and that is how the audit counts what the log's rotation dropped.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# Results of one request, as `egress` shows them.
ALLOWED = "allowed"  # reached an allowlisted upstream, which answered below 500
FAILED = "failed"  # allowlisted, but the upstream failed (5xx) or could not be reached
BLOCKED_HOST = "blocked-host"  # the host is not on the allowlist
BLOCKED_PORT = "blocked-port"  # the port is not in allowed_ports
REFUSED = "refused"  # squid rejected the request itself (400, 411, 417, 501, ...)
NOT_SENT = (BLOCKED_HOST, BLOCKED_PORT, REFUSED)  # never reached an allowed upstream

# The error pages squid.conf names (deny_info) for the two allowlist refusals.
PAGE_HOST = "ERR_CAGE_HOST"
PAGE_PORT = "ERR_CAGE_PORT"
# Squid's errors for a request that passed the allowlist and then failed on its way.
_UPSTREAM_ERRORS = frozenset(
    {
        "ERR_CONNECT_FAIL",
        "ERR_DNS_FAIL",
        "ERR_READ_ERROR",
        "ERR_READ_TIMEOUT",
        "ERR_WRITE_ERROR",
        "ERR_ZERO_SIZE_OBJECT",
        "ERR_SECURE_CONNECT_FAIL",
        "ERR_GATEWAY_FAILURE",
        "ERR_INVALID_RESP",
        "ERR_LIFETIME_EXP",
        "ERR_SOCKET_FAILURE",
        "ERR_CANNOT_FORWARD",
        "ERR_SHUTTING_DOWN",
    }
)


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
    seq: int
    time: str
    host: str
    port: int | None
    result: str  # one of ALLOWED, FAILED, BLOCKED_HOST, BLOCKED_PORT, REFUSED
    status: int  # what the session got (squid's status)
    reason: str  # squid's error page (ERR_...), or "" when there was none
    method: str

    @property
    def allowed(self) -> bool:
        """Passed the allowlist (it may still have failed upstream)."""
        return self.result in (ALLOWED, FAILED)

    @property
    def refused(self) -> bool:
        """Never reached an allowed upstream: blocked by the allowlist, or by squid."""
        return self.result in NOT_SENT

    def label(self) -> str:
        """The RESULT column: 'failed (502)', 'refused (417)', 'blocked-host', ..."""
        if self.result in (FAILED, REFUSED):
            return f"{self.result} ({self.status})"
        return self.result

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "host": self.host,
            "port": self.port,
            "allowed": self.allowed,
            "result": self.result,
            "status": self.status,
            "reason": self.reason,
            "method": self.method,
        }

    def event_value(self) -> dict[str, Any]:
        """The event-log value of a refused request: the first of a folded event, which
        counts the ones like it that follow (event_folds.py)."""
        return {
            "status": self.result,
            "host": self.host,
            "port": self.port,
            "code": self.status,
            "reason": self.reason,
            "method": self.method,
            "count": 1,
            "first": self.time,
            "last": self.time,
            "seq": self.seq,
            "last_seq": self.seq,
        }


def classify(status: int, upstream: str, squid_status: str, page: str) -> str:
    if page == PAGE_PORT:
        return BLOCKED_PORT
    if page == PAGE_HOST or "DENIED" in squid_status:
        return BLOCKED_HOST
    if page in _UPSTREAM_ERRORS:
        return FAILED
    if upstream.isdigit():
        return ALLOWED if int(upstream) < 500 else FAILED
    return REFUSED if status >= 400 or page != "-" else ALLOWED


@functools.lru_cache(maxsize=4096)
def _utc(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def parse_line(line: str) -> Request | None:
    """One squid log line; None for anything else, and for a connection that closed
    before sending a request (status 0, no method: the readiness probe, say)."""
    parts = line.split()
    if len(parts) != 9:
        return None
    seq, stamp, host, port, status, upstream, squid_status, page, method = parts
    seconds, _, millis = stamp.partition(".")
    try:
        number, code = int(seq), int(status)
        time = f"{_utc(int(seconds))}.{int(millis or 0):03d}Z"
    except (ValueError, OverflowError, OSError):
        return None
    if code == 0 and method == "-":
        return None
    return Request(
        seq=number,
        time=time,
        host=host,
        port=int(port) if port.isdigit() else None,
        result=classify(code, upstream, squid_status, page),
        status=code,
        reason="" if page == "-" else page,
        method=method,
    )


def line_seq(line: str) -> int | None:
    """Squid's sequence number of a log line (every line has one, requests or not)."""
    head = line.split(" ", 1)[0]
    return int(head) if head.isdigit() else None


def parse_log(text: str) -> list[Request]:
    return [r for r in map(parse_line, text.splitlines()) if r is not None]
