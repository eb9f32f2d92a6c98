"""Rules and layers, and the decision for one request, exactly as squid makes it.

The layers, from the top: managed, user, project, session. How they combine:
1. The managed rules, in order. The first that matches decides if it denies: nothing
   below can allow that request. If it allows, the layers below still may deny it.
   If none matches and the managed file says `default: deny`, the request is refused
   (`managed:default`): nothing below can allow a request the managed layer does not.
2. The user, project and session rules, in that order: the first that matches decides.
3. No rule below matched: allowed if a managed rule allowed it, else refused (`default`),
   or, in learn mode, allowed and recorded (`learn`). Learn mode changes only this step:
   the managed denies, its `default: deny`, and the address guard still refuse.
The session layer: the presets it was given (`--allow-preset`, `allow --preset`, config
`allowed_presets`), expanded as an `include:` is, then the allowlist's hosts.
A registry preset allows GET and HEAD; another method to its hosts is refused by the
default (or `managed:default`), and the answer says that the preset reads only
(`read_only_reason`): publishing needs a rule someone writes.
A rule with methods or paths decides a request inside HTTPS only where the companion
decrypts it (port 443); the CONNECT that opens such a connection is let through by an
allow rule of that kind (its requests are then decided one by one) and never by a deny.
Paths are matched as squid matches them, percent-decoded (%2e is a dot). On a host that
any path rule names, a path a server could resolve to another one is refused before any
rule (`default`, UNSAFE_PATH_REASON): a dot segment (`/../`, `/./`, `/..;`, a backslash
for a slash; anywhere, the query too) or an empty one (`//` before the query). A deny
path rule matches in any case (GitHub's names are not case-sensitive); an allow, only
as written.
squid.py compiles the same order; tests/unit/test_netpolicy.py holds them together.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from claude_cage import presets

if TYPE_CHECKING:  # the reader (PyYAML) stays off `status` and `list`
    from claude_cage.netpolicy.schema import ParsedFile

ALLOW = "allow"
DENY = "deny"
LAYERS = ("managed", "user", "project", "session")
ANTHROPIC = ("api.anthropic.com", "claude.ai", "console.anthropic.com", "platform.claude.com")
GITHUB = (
    "github.com",
    "api.github.com",
    "codeload.github.com",
    "objects.githubusercontent.com",
    "raw.githubusercontent.com",
)
READ_METHODS = ("GET", "HEAD")
TLS_PORT = 443
LEARN = "learn"


@dataclass(frozen=True)
class Rule:
    layer: str
    index: int  # 1-based, in the layer's list once presets are expanded
    action: str
    host: str
    ports: tuple[int, ...] = ()  # () = the session's allowed ports
    methods: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    reason: str = ""
    source: str = ""  # file:line, or how the session layer got it
    preset: str = ""

    @property
    def id(self) -> str:
        return f"{self.layer}:{self.index}"

    @property
    def inside(self) -> bool:
        """Decides requests inside HTTPS (methods or paths): its host is decrypted."""
        return bool(self.methods or self.paths)

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.id,
            "action": self.action,
            "host": self.host,
            "ports": list(self.ports),
            "methods": list(self.methods),
            "paths": list(self.paths),
            "reason": self.reason,
            "source": self.source,
            "preset": self.preset,
        }

    @classmethod
    def from_json(cls, layer: str, value: dict[str, Any]) -> Rule:
        return cls(
            layer=layer,
            index=int(str(value["rule"]).rsplit(":", 1)[1]),
            action=str(value["action"]),
            host=str(value["host"]),
            ports=tuple(int(p) for p in value.get("ports", ())),
            methods=tuple(str(m) for m in value.get("methods", ())),
            paths=tuple(str(p) for p in value.get("paths", ())),
            reason=str(value.get("reason", "")),
            source=str(value.get("source", "")),
            preset=str(value.get("preset", "")),
        )


@dataclass(frozen=True)
class Layer:
    name: str
    rules: tuple[Rule, ...] = ()
    file: str = ""  # where it was read ("" = no file)
    default: str = "defer"  # managed only: "deny" makes its allow rules a ceiling
    note: str = ""  # why a file was not read, say

    def to_json(self) -> dict[str, Any]:
        return {
            "layer": self.name,
            "file": self.file,
            "default": self.default,
            "note": self.note,
            "rules": [r.to_json() for r in self.rules],
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Layer:
        name = str(value["layer"])
        return cls(
            name,
            tuple(Rule.from_json(name, r) for r in value.get("rules", ())),
            str(value.get("file", "")),
            str(value.get("default", "defer")),
            str(value.get("note", "")),
        )


def preset_rules(name: str) -> list[tuple[str, tuple[str, ...]]]:
    """(host, methods) of a preset: the registries read only; Anthropic and GitHub all."""
    if name == "anthropic":
        return [(h, ()) for h in ANTHROPIC]
    if name == "github":
        return [(h, ()) for h in GITHUB]
    return [(h, READ_METHODS) for h in presets.PRESETS[presets.check(name)]]


def expand(layer: str, preset: str, first: int, source: str) -> list[Rule]:
    """A preset's rules in `layer`, numbered from `first`: the one expansion of a
    preset, whether a file includes it or a session is given it."""
    return [
        Rule(layer, first + i, ALLOW, host, (), methods, (), "", source, preset)
        for i, (host, methods) in enumerate(preset_rules(preset))
    ]


def read_only_reason(rule: Rule) -> str:
    """Why a request to a host that only a registry preset allows was refused."""
    return (
        f"the {rule.preset} preset (rule {rule.id}) allows {' and '.join(rule.methods)} "
        f"only: installing, not publishing. To publish from this session, write a policy "
        f"rule that allows it (claude-cage policy, docs/policy.md)"
    )


def layer_from_file(name: str, parsed: ParsedFile, file: str) -> Layer:
    rules: list[Rule] = []
    for raw in parsed.rules:
        source = f"{file}:{raw.line}"
        if raw.include:
            rules += expand(name, raw.include, len(rules) + 1, source)
            continue
        rules.append(
            Rule(
                name,
                len(rules) + 1,
                raw.action,
                raw.host,
                raw.ports,
                raw.methods,
                raw.paths,
                raw.reason,
                source,
            )
        )
    return Layer(name, tuple(rules), file, parsed.default if name == "managed" else "defer")


PRESET_SOURCE = "preset"  # where a session's preset rules come from (policy show)


def session_layer(hosts: Sequence[str], preset_names: Sequence[str] = ()) -> Layer:
    """The session layer: its presets (config allowed_presets, --allow-preset, `allow
    --preset`), expanded first, so that their numbers do not move when the allowlist
    changes; then the allowlist (config allowed_hosts, --allow-host, `allow`): host
    rules that allow, on the session's ports."""
    rules: list[Rule] = []
    for name in preset_names:
        rules += expand("session", name, len(rules) + 1, PRESET_SOURCE)
    first = len(rules) + 1
    rules += [Rule("session", first + i, ALLOW, h, source="allowlist") for i, h in enumerate(hosts)]
    return Layer("session", tuple(rules))


def first_host(preset_names: Sequence[str]) -> int:
    """The number of the session layer's first allowlist rule (after its presets')."""
    return 1 + sum(len(preset_rules(name)) for name in preset_names)


# Paths a server may resolve to another path than the one the rules saw (squid's
# urlpath_regex reads the decoded path; POSIX ERE and Python read these alike).
UNSAFE_PATHS = (r"(/|\\)\.\.?(/|\\|;|\?|$)", r"^[^?]*(/|\\)(/|\\)")
UNSAFE_PATH_REASON = (
    "its path has a dot segment (/./ or /../, also encoded, ..; or with a backslash) or an "
    "empty one (//), which a server may resolve to a path the egress policy's path rules "
    "did not decide. Send the path in its plain form"
)


def unsafe_path(path: str) -> bool:
    decoded = unquote(path)  # as squid decodes it for urlpath_regex
    return any(re.search(pattern, decoded) for pattern in UNSAFE_PATHS)


@dataclass(frozen=True)
class Request:
    host: str
    port: int
    method: str = "GET"  # CONNECT: the tunnel itself
    path: str = "/"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: str  # a rule's id, "managed:default" or "default"
    matched: Rule | None = None
    why: str = ""  # a refusal by the default: why a preset's host refused it

    @property
    def reason(self) -> str:
        if self.matched and self.matched.action == DENY:
            return self.matched.reason
        return self.why


@dataclass(frozen=True)
class Policy:
    """The effective policy of a session: its layers, top first, and its ports."""

    layers: tuple[Layer, ...]
    ports: tuple[int, ...] = (80, 443)
    learn: bool = False  # start --learn: what no rule decides is allowed (rule `learn`)

    def layer(self, name: str) -> Layer:
        return next((x for x in self.layers if x.name == name), Layer(name))

    @property
    def rules(self) -> list[Rule]:
        return [r for x in self.layers for r in x.rules]

    def decide(self, request: Request) -> Decision:
        unsafe = request.method != "CONNECT" and unsafe_path(request.path)
        if unsafe and any(host_matches(h, request.host) for h in self.path_hosts()):
            return Decision(False, "default", why=UNSAFE_PATH_REASON)
        managed = self.layer("managed")
        ceiling: Rule | None = None
        for rule in managed.rules:
            if matches(rule, request, self.ports):
                if rule.action == DENY:
                    return Decision(False, rule.id, rule)
                ceiling = rule
                break
        if ceiling is None and managed.default == "deny":
            return Decision(False, "managed:default")
        for name in LAYERS[1:]:
            for rule in self.layer(name).rules:
                if matches(rule, request, self.ports):
                    return Decision(rule.action == ALLOW, rule.id, rule)
        if ceiling is not None:
            return Decision(True, ceiling.id, ceiling)
        if self.learn:
            return Decision(True, LEARN)
        read_only = self.read_only(request)
        return Decision(False, "default", why=read_only_reason(read_only) if read_only else "")

    def read_only(self, request: Request) -> Rule | None:
        """The first registry preset rule for the request's host and port: the default
        refused the request, and that preset is why (see `read_only_reason`)."""
        for rule in self.rules:
            read_only = rule.preset and rule.action == ALLOW and rule.methods
            if read_only and host_matches(rule.host, request.host) and request.port in self.ports:
                return rule
        return None

    def path_hosts(self) -> list[str]:
        """The hosts a path rule names: their unsafe paths are refused (UNSAFE_PATHS)."""
        return list(dict.fromkeys(r.host for r in self.rules if r.paths))

    def inside_hosts(self) -> list[str]:
        """The hosts whose HTTPS the companion decrypts for method and path rules."""
        return list(dict.fromkeys(r.host for r in self.rules if r.inside))


def host_matches(pattern: str, host: str) -> bool:
    host = host.lower().rstrip(".")
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


def matches(rule: Rule, request: Request, ports: Sequence[int]) -> bool:
    if not host_matches(rule.host, request.host):
        return False
    # A deny that names no port denies the host on every port: "deny *.ngrok.io" must
    # not leave it open on a port another layer, or learn mode, allows.
    if not (rule.action == DENY and not rule.ports) and request.port not in (rule.ports or ports):
        return False
    if not rule.inside:
        return True
    if request.method == "CONNECT":
        if request.port == TLS_PORT:  # the tunnel whose requests are decided inside
            return rule.action == ALLOW
        # a tunnel elsewhere is never decrypted: a method or path deny cannot be checked
        # in it, so it holds for the whole tunnel
        return rule.action == DENY
    if rule.methods and request.method.upper() not in rule.methods:
        return False
    path = unquote(request.path)  # squid matches the decoded path
    return not rule.paths or any(path_regex(p, rule.action).match(path) for p in rule.paths)


def path_regex(path: str, action: str = ALLOW) -> re.Pattern[str]:
    """A path rule as a regex on the request's path and query: without `*` a prefix;
    in a glob `*` is within one segment and `**` across them, and the whole path must
    match (a query may follow). A deny matches in any case, an allow only as written."""
    return re.compile(path_pattern(path), re.IGNORECASE if action == DENY else 0)


def path_pattern(path: str) -> str:
    if "*" not in path:
        return "^" + _escape(path)
    parts = re.split(r"(\*\*|\*)", path)
    body = "".join(".*" if p == "**" else "[^/?]*" if p == "*" else _escape(p) for p in parts)
    return "^" + body + r"(\?.*)?$"


_SPECIAL = set(".[]()*+?{}|^$\\")


def _escape(text: str) -> str:
    """Literal text in a regex that Python and squid's POSIX regex read alike."""
    return "".join("\\" + c if c in _SPECIAL else c for c in text)
