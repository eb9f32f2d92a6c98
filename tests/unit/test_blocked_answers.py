"""The companion's answers to refused requests (its error pages and the squid rules
that pick them) suggest only an `allow` that `allow` accepts: an IP literal and the
proxy's own names get answers saying why they cannot be allowed."""

from __future__ import annotations

import re

import pytest

from claude_cage import egress, validators
from claude_cage.paths import package_data

IMAGES = package_data("images") / "companion"


def squid_acl(name: str) -> tuple[list[str], list[str]]:
    """(flags, values) of one acl line of squid.conf."""
    conf = (IMAGES / "squid.conf").read_text()
    [line] = [l for l in conf.splitlines() if l.startswith(f"acl {name} ")]  # noqa: E741
    words = line.split()[3:]
    return [w for w in words if w.startswith("-")], [w for w in words if not w.startswith("-")]


def page(name: str) -> str:
    """The text companion-entrypoint writes for an error page."""
    entrypoint = (IMAGES / "companion-entrypoint").read_text()
    end = entrypoint.index(f'> "$dir/{name}"')
    command = entrypoint[entrypoint.rindex("printf", 0, end) : end]
    return " ".join(re.findall(r'^\s+"(.*)"', command, re.MULTILINE))


HOSTS = [
    "1.2.3.4", "10.1", "127.0.0.1", "0.0.0.0", "[::1]", "::1", "[2001:db8::1]",
    "[2001:DB8::A]", "[::ffff:192.0.2.1]", "api.anthropic.com", "example.com", "cafe",
    "dead.beef", "1.2.3.4.nip.io", "a1.example", "xn--bcher-kva.example", "localhost",
]  # fmt: skip


@pytest.mark.parametrize("host", HOSTS)
def test_squid_takes_for_a_literal_what_allow_refuses_as_an_address(host: str) -> None:
    flags, patterns = squid_acl("cage_literal")
    assert flags == ["-n", "-i"]  # no DNS lookup; any case
    squid = any(re.search(p, host, re.IGNORECASE) for p in patterns)
    assert squid == validators.is_address(host)
    if squid:  # and allow refuses it
        with pytest.raises(ValueError, match="IP address"):
            validators.validate_host(host)


def test_literals_and_the_proxy_itself_are_refused_before_any_allow_rule() -> None:
    conf = (IMAGES / "squid.conf").read_text().splitlines()
    access = [line for line in conf if line.startswith("http_access ")]
    first_allow = next(i for i, line in enumerate(access) if line.startswith("http_access allow"))
    for acl in ("cage_self", "cage_literal"):
        assert access.index(f"http_access deny {acl}") < first_allow
        page_name = egress.PAGE_SELF if acl == "cage_self" else egress.PAGE_LITERAL
        assert f"deny_info {page_name} {acl}" in conf
    assert squid_acl("cage_self") == (["-n"], ['"/run/cage/egress/self"'])


def test_the_answers_suggest_only_what_allow_accepts() -> None:
    host = page("ERR_CAGE_HOST")
    assert "claude-cage allow $name %H" in host  # a name: allow takes it
    literal = page("ERR_CAGE_LITERAL")
    assert "is an IP address" in literal and "host names only" in literal
    assert "claude-cage allow $name HOSTNAME" in literal and "%H" not in literal.split("allow")[1]
    own = page("ERR_CAGE_SELF")
    assert "egress proxy itself" in own and "No allow can change that" in own
    assert "claude-cage allow" not in own


def test_the_proxy_knows_its_own_names() -> None:
    entrypoint = (IMAGES / "companion-entrypoint").read_text()
    block = entrypoint[entrypoint.index("squid.conf: cage_self") :]
    block = block[: block.index('> "$RUN/egress/self"')]
    for name in ("localhost", "127.0.0.1", "[::1]", "$(hostname)", "companion-cage-"):
        assert name in block


@pytest.mark.parametrize("page_name", [egress.PAGE_LITERAL, egress.PAGE_SELF])
def test_their_refusals_are_filed_as_blocked_hosts(page_name: str) -> None:
    assert egress.classify(403, "-", "TCP_DENIED", page_name) == egress.BLOCKED_HOST


def test_a_port_warning_never_names_a_host_allow_refuses() -> None:
    """`allow NAME '*.example.com'` warns of hosts under it that were refused on a
    closed port, as a command to copy: squid logs the host the session asked for as it
    was asked (`a;reboot;b.example.com`, `x$(id).example.com`), which must not reach it."""
    from types import SimpleNamespace

    from claude_cage.operations.egress import _port_warnings

    def event(host: str) -> dict[str, object]:
        return {"value": {"host": host, "port": 2222}}

    hostile = ["a;reboot;b.example.com", "x$(id).example.com", "*.wild.example.com"]
    events = [event(h) for h in (*hostile, "ok.example.com")]
    ctx = SimpleNamespace(events=SimpleNamespace(query=lambda **kw: events))
    warnings = _port_warnings(ctx, "web", ["*.example.com"], [80, 443])  # type: ignore[arg-type]
    assert warnings == [
        "ok.example.com was refused on port 2222, which this session does not allow "
        "(allowed ports: 80 443); add it with 'claude-cage allow web ok.example.com --port 2222'"
    ]


def test_the_dashboards_allow_refuses_a_pattern_as_a_requests_host() -> None:
    """A row's Allow button posts the host the session asked for: `*.example.com` (squid
    takes that CONNECT) must not become a pattern over every subdomain in one click."""
    from claude_cage.dashboard.app import Dashboard
    from claude_cage.dashboard.guard import Guard
    from claude_cage.errors import BadInput

    dashboard = Dashboard(Guard(48124))
    with pytest.raises(BadInput, match="pattern"):
        dashboard.allow(None, {"name": "web", "host": "*.wild.example.com"})  # type: ignore[arg-type]
