"""Credentials the companion adds to a session's requests, as pure functions.

A credential is a value plus the hosts it belongs to and the way it is sent (its
kind). The session never holds the value: the companion's squid terminates TLS for
those hosts only, with the session's own CA, and adds the header on the way out over
its own verified TLS connection. Every other host stays a plain CONNECT tunnel.

`squid_rules()` renders the rules squid includes (images/companion/squid.conf). A
header is added only when the request's host AND the verified certificate of the
server squid is connected to both name one of the credential's hosts, and only on a
TLS connection to port 443 that the companion opened and verified itself: a request for
another host sent down a tunnel opened to a credentialed one, a plain-http request, an
absolute-form `https://` request (refused by squid.conf) or one for another port never
carries it.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from publicsuffixlist import PublicSuffixList

from claude_cage.errors import BadInput
from claude_cage.kinds import Credential

ANTHROPIC_HOST = "api.anthropic.com"
# What each kind sends. The Anthropic kinds are the two ways Claude Code authenticates:
# an API key in x-api-key, or the long-lived subscription token (`claude setup-token`)
# as a bearer token; Claude Code adds the `anthropic-beta: oauth-...` header itself
# when it holds a token, so only the value is replaced.
KINDS = {
    "api-key": "Anthropic API key (x-api-key)",
    "claude-token": "Claude subscription token (Authorization: Bearer)",
    "github": "GitHub token (git over HTTPS: Basic x-access-token; API: Bearer)",
    "bearer": "Authorization: Bearer VALUE",
    "header": "any header: --header NAME, sent as NAME: VALUE",
}
ANTHROPIC_KINDS = ("api-key", "claude-token")
# The placeholders the session sees in place of an Anthropic credential.
PLACEHOLDER = {
    "api-key": "sk-ant-api03-cage-placeholder-the-proxy-adds-the-real-key",
    "claude-token": "sk-ant-oat01-cage-placeholder-the-proxy-adds-the-real-token",
}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_HEADER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")
_LABEL = r"[a-z0-9]([a-z0-9-]*[a-z0-9])?"
_HOST = re.compile(rf"^(\*\.)?{_LABEL}(\.{_LABEL})*$")
# Header values: printable ASCII and spaces. Squid's config quoting has no way to carry
# `"` or `\` safely, and a newline would end the header (or the config line).
_VALUE = re.compile(r"^[\x20-\x7e]{1,4096}$")


@dataclass(frozen=True)
class Secret:
    name: str
    kind: str
    hosts: tuple[str, ...]
    value: str
    header: str | None = None  # kind "header" only
    created: str = ""
    scope: str = "all"  # "all" or "session"

    def fingerprint(self) -> str:
        return "sha256:" + hashlib.sha256(self.value.encode()).hexdigest()[:12]

    def public(self) -> dict[str, Any]:
        """What `secret list` shows: never the value."""
        return {
            "name": self.name,
            "kind": self.kind,
            "hosts": list(self.hosts),
            "header": self.header,
            "fingerprint": self.fingerprint(),
            "scope": self.scope,
            "created": self.created,
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.public(), "value": self.value}

    @classmethod
    def from_json(cls, data: dict[str, Any], scope: str) -> Secret:
        return cls(
            name=str(data["name"]),
            kind=str(data["kind"]),
            hosts=tuple(str(h) for h in data["hosts"]),
            value=str(data["value"]),
            header=data.get("header"),
            created=str(data.get("created", "")),
            scope=scope,
        )


@dataclass
class _Rule:
    header: str
    value: str
    hosts: list[str] = field(default_factory=list)
    strip: tuple[str, ...] = ()


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise BadInput(
            f"bad credential name {name!r}",
            "use lowercase letters, digits, '-' and '_' (at most 40), e.g. github",
        )
    return name


def check_value(value: str, what: str = "the value") -> str:
    """One line of printable text. Never echoes the value."""
    value = value.strip()
    if not value:
        raise BadInput(f"{what} is empty", "pass the secret on stdin, e.g. from a file: < token")
    if not _VALUE.match(value) or '"' in value or "\\" in value:
        raise BadInput(
            f"{what} has a newline, a control character or a quote or backslash in it",
            "give the secret alone, on one line (as the service printed it)",
        )
    return value


def check_kind_value(kind: str, value: str) -> None:
    """Refuse a subscription token in an API key's place, and the other way round."""
    if kind == "api-key" and value.startswith("sk-ant-oat"):
        raise BadInput(
            "that is a Claude subscription token, not an API key",
            "set it as a token: claude-cage secret set anthropic --kind claude-token",
        )
    if kind == "claude-token" and value.startswith("sk-ant-api"):
        raise BadInput(
            "that is an Anthropic API key, not a subscription token",
            "set it as a key: claude-cage secret set anthropic --kind api-key "
            "(or 'claude-cage key set NAME')",
        )


def check_host(host: str) -> str:
    """An exact name or `*.domain`, never broader than one registrable domain."""
    host = host.strip().lower().rstrip(".")
    if not _HOST.match(host) or len(host) > 253:
        raise BadInput(f"--host: {host!r} is not a host name", "use e.g. api.github.com")
    domain = host[2:] if host.startswith("*.") else host
    # Reading the bundled list takes ~35 ms, so it is read only when a host is checked.
    if PublicSuffixList().privatesuffix(domain) is None:
        raise BadInput(
            f"--host: {host!r} is broader than one registrable domain",
            "name the service's own hosts, e.g. github.com or *.github.com, not *.com",
        )
    return host


def default_kind(hosts: list[str]) -> str:
    """GitHub's hosts get GitHub's scheme; anything else a bearer token."""
    if hosts and all(h == "github.com" or h.endswith(".github.com") for h in hosts):
        return "github"
    return "bearer"


def covered(host: str, allowlist: Sequence[str]) -> bool:
    """Does the allowlist let the session reach `host` (a name or `*.domain`)?"""
    if host in allowlist:
        return True
    if host.startswith("*."):
        return False  # a pattern is covered only by the same pattern
    return any(p.startswith("*.") and host.endswith(p[1:]) for p in allowlist)


def _rules(cred: Secret) -> list[_Rule]:
    anthropic_strip = ("x-api-key", "Authorization")
    if cred.kind == "api-key":
        return [_Rule("x-api-key", cred.value, list(cred.hosts), anthropic_strip)]
    if cred.kind == "claude-token":
        return [_Rule("Authorization", f"Bearer {cred.value}", list(cred.hosts), anthropic_strip)]
    if cred.kind == "github":
        # git's smart HTTP wants Basic auth (any user name; GitHub documents
        # x-access-token); the REST API takes the token as a bearer token.
        basic = base64.b64encode(f"x-access-token:{cred.value}".encode()).decode()
        git_hosts = [h for h in cred.hosts if h == "github.com"]
        api_hosts = [h for h in cred.hosts if h != "github.com"]
        rules = []
        if git_hosts:
            rules.append(_Rule("Authorization", f"Basic {basic}", git_hosts, ("Authorization",)))
        if api_hosts:
            rules.append(
                _Rule("Authorization", f"Bearer {cred.value}", api_hosts, ("Authorization",))
            )
        return rules
    if cred.kind == "bearer":
        bearer = f"Bearer {cred.value}"
        return [_Rule("Authorization", bearer, list(cred.hosts), ("Authorization",))]
    assert cred.header is not None
    return [_Rule(cred.header, cred.value, list(cred.hosts), (cred.header,))]


def headers_of(cred: Secret) -> set[str]:
    """The headers a credential owns on its hosts (two on one host must not share one)."""
    return {h.lower() for rule in _rules(cred) for h in rule.strip}


def clashes(a: Secret, b: Secret) -> list[str]:
    """The hosts on which two credentials would both set a header."""
    if not headers_of(a) & headers_of(b):
        return []
    return sorted(set(a.hosts) & set(b.hosts))


def _host_regex(host: str) -> str:
    escaped = host.replace(".", "\\.")  # check_host allows only [a-z0-9.-] and a "*."
    if host.startswith("*."):
        return escaped[1:] + "$"  # subdomains only, as in the allowlist
    return "^" + escaped + "$"


def _cert_name(host: str) -> str:
    return host[1:] if host.startswith("*.") else host  # squid's ".domain" form


# The conditions squid.conf defines that every credential's header rule requires: an
# https:// request (cage_https) that arrived decrypted on squid's bumping port
# (cage_bump_port: only a CONNECT to port 443 of a credentialed host reaches it, and only
# through TLS this container ended itself), for port 443 (cage_tls_port). Such a request
# leaves on the connection squid opened to that host and port and pinned to the session's
# connection, whose certificate it verified ({acl}_cert then names one of the hosts).
# An absolute-form request on the session's port never matches cage_bump_port, whatever
# its scheme says: that is how `GET https://HOST:80/` once went out over plaintext.
ONLY_OVER_VERIFIED_TLS = "cage_https cage_bump_port cage_tls_port"


def sni_acls(prefix: str, regexes: list[str]) -> list[str]:
    """cage_bump_sni: the TLS ClientHello's own SNI (--client-requested, never the
    CONNECT's host in its place) names the host the CONNECT names, one pair per host
    regex (all-of lines with one name are ORed). squid.conf terminates every other
    connection to the bumping port, so no SNI, another host's or "host." is refused."""
    lines = []
    for i, regex in enumerate(regexes):
        acl = f"{prefix}{i}"
        lines += [
            f"acl {acl}_d dstdom_regex -n -i {regex}",
            f"acl {acl}_s ssl::server_name_regex --client-requested -i {regex}",
            f"acl cage_bump_sni all-of {acl}_d {acl}_s",
        ]
    return lines


def squid_rules(creds: list[Secret]) -> str:
    """The squid include: which hosts are decrypted, and each credential's header."""
    hosts = sorted({h for c in creds for h in c.hosts})
    if not hosts:
        return ""  # the companion writes its never-matching defaults
    lines = [
        "acl cage_bump_host dstdom_regex -n -i " + " ".join(_host_regex(h) for h in hosts),
        *sni_acls("cage_sni_c", [_host_regex(h) for h in hosts]),
    ]
    for i, rule in enumerate(r for c in creds for r in _rules(c)):
        acl = f"cage_cred_{i}"
        value = rule.value.replace("%", "%%")  # squid expands %-codes in added values
        lines += [
            f"acl {acl}_host dstdom_regex -n -i " + " ".join(_host_regex(h) for h in rule.hosts),
            f"acl {acl}_cert ssl::server_name " + " ".join(_cert_name(h) for h in rule.hosts),
            *(f"request_header_access {h} deny {acl}_host" for h in rule.strip),
            f'request_header_add {rule.header} "{value}" {ONLY_OVER_VERIFIED_TLS} '
            f"{acl}_host {acl}_cert",
        ]
    return "\n".join(lines) + "\n"


def session_kind(creds: list[Secret]) -> Credential:
    """The session's credential as `status` names it (Anthropic's decides)."""
    for cred in creds:
        if cred.kind in ANTHROPIC_KINDS and ANTHROPIC_HOST in cred.hosts:
            if cred.kind == "api-key":
                return Credential.API_KEY_PROXY
            return Credential.CLAUDE_TOKEN_PROXY
    return Credential.NONE


def placeholder_settings(kind: Credential) -> dict[str, Any]:
    """Claude Code's managed settings in a filtered session: a placeholder credential
    of the right kind, so it starts logged in and sends the header the proxy replaces."""
    if kind == Credential.API_KEY_PROXY:
        return {"apiKeyHelper": f"echo {PLACEHOLDER['api-key']}"}
    if kind == Credential.CLAUDE_TOKEN_PROXY:
        return {"env": {"CLAUDE_CODE_OAUTH_TOKEN": PLACEHOLDER["claude-token"]}}
    return {}


def check_header(header: str) -> str:
    if not _HEADER.match(header) or header.lower() in ("host", "content-length", "connection"):
        raise BadInput(f"--header: {header!r} cannot carry a credential", "e.g. --header X-Api-Key")
    return header
