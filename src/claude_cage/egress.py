"""The egress allowlist and audit log, as pure functions.

The allowlist holds exact host names and `*.example.com` suffix patterns. A suffix
pattern matches any subdomain of example.com, not example.com itself. The companion's
squid enforces it (dstdomain for exact names, an anchored dstdom_regex for suffixes)
together with the allowed ports (config `allowed_ports`, 80 and 443 by default).

Squid writes one line per request to the companion's standard output, in the `cage`
log format (images/companion/squid.conf):
    <seq> <epoch.millis> <host> <port> <status> <upstream status> <squid status>
    <error page> <method> <rule> <path>
`seq` is squid's own line counter (from 0 for each companion): a gap in it means lines
were lost, and that is how the audit counts what the log's rotation dropped. `rule` is
the policy rule that decided (netpolicy: `user:2`, `session`, `default`, or `-`), and
`path` the request's path where squid saw it (a plain http:// request, or HTTPS that the
companion decrypts); companions from before the policy file log neither. A refusal
logged with `-` came before any rule (a port no rule names, an IP literal, the proxy's
own names, squid's own refusals): no rule could allow it, so it is `default`. `session`
is numbered on the host (`session_rule`): the allowlist's lines in squid.conf share one
tag.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# Results of one request, as `egress` shows them.
ALLOWED = "allowed"  # reached an allowlisted upstream, which answered below 500
FAILED = "failed"  # allowlisted, but the upstream failed (5xx) or could not be reached
BLOCKED_HOST = "blocked-host"  # the host is not on the allowlist
BLOCKED_PORT = "blocked-port"  # the port is not in allowed_ports
BLOCKED_ADDRESS = "blocked-address"  # an allowed name, at an internal address (the guard)
BLOCKED_RULE = "blocked-rule"  # a deny rule of the egress policy, or its managed default
REFUSED = "refused"  # squid rejected the request itself (400, 411, 417, 501, ...)
DEFAULT = "default"  # the rule of a request no rule allowed
# never reached an allowed upstream
NOT_SENT = (BLOCKED_HOST, BLOCKED_PORT, BLOCKED_ADDRESS, BLOCKED_RULE, REFUSED)

# The error pages squid.conf names (deny_info) for its refusals: the allowlist's two, an
# IP literal and the proxy's own names (which no `allow` can admit), the address
# guard's, an absolute-form https:// request, and the cache manager.
PAGE_HOST = "ERR_CAGE_HOST"
PAGE_LITERAL = "ERR_CAGE_LITERAL"
PAGE_SELF = "ERR_CAGE_SELF"
PAGE_PORT = "ERR_CAGE_PORT"
PAGE_ADDRESS = "ERR_CAGE_ADDRESS"
PAGE_SCHEME = "ERR_CAGE_SCHEME"
PAGE_INTERNAL = "ERR_CAGE_INTERNAL"
PAGE_RULE = "ERR_CAGE_DENY_"  # + layer_index: a deny rule's own (netpolicy/squid.py)
PAGE_PRESET = "ERR_CAGE_PRESET_"  # + layer_index: the default, at a registry preset's host
PAGE_MANAGED = "ERR_CAGE_MANAGED"  # the managed layer's `default: deny`
PAGE_PATH = "ERR_CAGE_PATH"  # a dot or empty path segment, at a host path rules name
_REFUSAL_PAGES = frozenset({PAGE_SCHEME, PAGE_INTERNAL})
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


# What the address guard refuses an allowed name to resolve to: this network, loopback,
# private (RFC 1918, carrier-grade NAT 100.64/10, IPv6 unique local fc00::/7), link-local
# (169.254/16, where cloud metadata services answer on 169.254.169.254, and fe80::/10),
# the IETF's and benchmarking blocks, multicast and the reserved rest, and NAT64's
# prefixes (64:ff9b::/96 and the local-use 64:ff9b:1::/48: on an IPv6-only host a gateway
# maps them to IPv4 addresses, internal ones too), and the two that carry an IPv4 address
# inside (6to4 2002::/16, Teredo 2001::/32); the host's own addresses are added by the
# caller. An IPv4-mapped IPv6 answer is compared as IPv4.
GUARDED_RANGES = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/3",
    "::/127",
    "64:ff9b::/96",
    "64:ff9b:1::/48",
    "2001::/32",
    "2002::/16",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
)
# Squid needs at least one entry in an ACL file: a documentation address (RFC 5737) that
# nothing answers on stands in when allowed_address_ranges covers all the rest.
_NOTHING = "192.0.2.255/32"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def blocked_ranges(allowed: list[str], host_addresses: tuple[str, ...] = ()) -> list[str]:
    """The guard's ranges minus config allowed_address_ranges, plus the host's own
    addresses (each kept unless allowed_address_ranges names exactly that address: a
    range that merely holds the host's bridge address does not open the host), as the
    CIDR list squid's `dst` ACL reads. Squid refuses a name when any of its addresses is
    in it, so a name with one guarded address among public ones is refused too."""
    holes = [ipaddress.ip_network(text, strict=False) for text in allowed]
    guarded: list[IPNetwork] = [ipaddress.ip_network(r) for r in GUARDED_RANGES]
    for hole in holes:
        kept: list[IPNetwork] = []
        for net in guarded:
            if net.version != hole.version or not net.overlaps(hole):
                kept.append(net)
            elif not hole.supernet_of(net):  # type: ignore[arg-type]
                kept += net.address_exclude(hole)  # type: ignore[arg-type]
        guarded = kept
    guarded += [n for n in map(ipaddress.ip_network, host_addresses) if n not in holes]
    v4 = [n for n in guarded if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in guarded if isinstance(n, ipaddress.IPv6Network)]
    out = [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]
    return [str(net) for net in out] or [_NOTHING]


def split_allowlist(hosts: Sequence[str]) -> tuple[list[str], list[str]]:
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
    result: str  # ALLOWED, FAILED, or one of NOT_SENT
    status: int  # what the session got (squid's status)
    reason: str  # squid's error page (ERR_...), or "" when there was none
    method: str
    rule: str = ""  # the policy rule that decided ("" when the log does not say)
    path: str = ""

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
            "rule": self.rule,
            "path": self.path,
        }

    def event_value(self) -> dict[str, Any]:
        """The event-log value of a refused request: the first of a folded event, which
        counts the ones like it that follow (eventlog/folds.py)."""
        return {
            "status": self.result,
            "host": self.host,
            "port": self.port,
            "code": self.status,
            "reason": self.reason,
            "method": self.method,
            "rule": self.rule,
            "count": 1,
            "first": self.time,
            "last": self.time,
            "seq": self.seq,
            "last_seq": self.seq,
        }


def classify(status: int, upstream: str, squid_status: str, page: str) -> str:
    if page == PAGE_PORT:
        return BLOCKED_PORT
    if page == PAGE_ADDRESS:
        return BLOCKED_ADDRESS
    if page.startswith((PAGE_RULE, PAGE_PRESET)) or page in (PAGE_MANAGED, PAGE_PATH):
        return BLOCKED_RULE
    if page in _REFUSAL_PAGES:
        return REFUSED
    if page in (PAGE_HOST, PAGE_LITERAL, PAGE_SELF) or "DENIED" in squid_status:
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
    ruled = len(parts) != 9  # a companion from before the policy file logs no rule
    if not ruled:
        parts += ["-", "-"]
    if len(parts) != 11:
        return None
    seq, stamp, host, port, status, upstream, squid_status, page, method, rule, path = parts
    seconds, _, millis = stamp.partition(".")
    try:
        number, code = int(seq), int(status)
        time = f"{_utc(int(seconds))}.{int(millis or 0):03d}Z"
    except (ValueError, OverflowError, OSError):
        return None
    if code == 0 and method == "-":
        return None
    result = classify(code, upstream, squid_status, page)
    if rule == "-" and ruled and result in NOT_SENT:
        rule = DEFAULT  # refused before any rule: nothing could have allowed it
    return Request(
        seq=number,
        time=time,
        host=host,
        port=int(port) if port.isdigit() else None,
        result=result,
        status=code,
        reason="" if page == "-" else page,
        method=method,
        rule="" if rule == "-" else rule,
        path="" if path == "-" else path,
    )


def session_rule(request: Request, hosts: Sequence[str], first: int = 1) -> Request:
    """A request the session layer's allowlist decided, with its rule's number: the
    first entry of the allowlist that covers the host, the allowlist's rules numbered
    from `first` (after the session's presets: netpolicy.rules.first_host); squid's log
    says only `session`."""
    if request.rule != "session":
        return request
    host = request.host.lower()
    for index, pattern in enumerate(hosts, first):
        if host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:])):
            return dataclasses.replace(request, rule=f"session:{index}")
    return request


def line_seq(line: str) -> int | None:
    """Squid's sequence number of a log line (every line has one, requests or not)."""
    head = line.split(" ", 1)[0]
    return int(head) if head.isdigit() else None


def parse_log(text: str) -> list[Request]:
    return [r for r in map(parse_line, text.splitlines()) if r is not None]
