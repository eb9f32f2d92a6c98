"""The proxy's internal interfaces are closed to the session: squid's cache manager
answers nobody, and an allowed name that resolves to an internal address (loopback,
private, link-local, the metadata service, the host's own) is refused as
`blocked-address` unless config allowed_address_ranges holds that address.

The tests' own hosts live on the egress network, at private addresses: every other test
allows that network's subnet (tests/conftest.py); here a session is started without it.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import Cage
from tests.integration.conftest import TestHost

pytestmark = pytest.mark.engine

CLIENT = Path(__file__).with_name("proxy_client.py").read_text()


def start(cage: Cage, name: str, env: dict[str, str] | None = None) -> None:
    result = cage("start", "--name", name, "--detach", "--allow-host", "allowed.test", env=env)
    assert result.code == 0, result.output


def sh(cage: Cage, name: str, script: str):  # type: ignore[no-untyped-def]
    return cage("exec", name, "--", "bash", "-c", script, timeout=60)


def raw(cage: Cage, name: str, request: str) -> str:
    """One raw request to the session's proxy (proxy_client.py); its status."""
    steps = [[{"send": request}]]
    result = cage("exec", name, "--", "python3", "-c", CLIENT, json.dumps(steps))
    assert result.code == 0, result.output
    return json.loads(result.stdout)[0][0]  # type: ignore[no-any-return]


def egress_rows(cage: Cage, name: str) -> list[dict]:
    return cage("egress", name, "--json", "--all").json()["requests"]  # type: ignore[no-any-return]


MANAGER = [
    "GET cache_object://api.anthropic.com:443/menu HTTP/1.1\r\nHost: api.anthropic.com\r\n\r\n",
    "GET cache_object://allowed.test/info HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
    "GET http://allowed.test/squid-internal-mgr/menu HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
    "GET http://api.anthropic.com/squid-internal-mgr/info HTTP/1.1\r\n"
    "Host: api.anthropic.com\r\n\r\n",
]


def test_the_cache_manager_answers_no_session(cage: Cage, test_hosts: dict[str, TestHost]) -> None:
    name = cage.name("mgr")
    start(cage, name)
    for request in MANAGER:
        assert raw(cage, name, request) == "403", request
    menu = sh(
        cage,
        name,
        "curl -sS --request-target cache_object://allowed.test/menu http://allowed.test/",
    )
    assert "internal interfaces answer no session" in menu.stdout, menu.output
    assert "Cache Manager" not in menu.stdout
    refused = [r for r in egress_rows(cage, name) if r["reason"] == "ERR_CAGE_INTERNAL"]
    assert len(refused) == len(MANAGER) + 1
    assert {r["result"] for r in refused} == {"refused"}
    # The same proxy still serves the allowed host itself.
    served = sh(cage, name, "curl -sS -o /dev/null -w '%{http_code}' http://allowed.test/")
    assert served.stdout == "200", served.output


@pytest.mark.parametrize("ranges", ["", "10.0.0.0/8, fd00::/8"])
def test_an_allowed_name_at_an_internal_address_is_blocked(
    cage: Cage, test_hosts: dict[str, TestHost], ranges: str
) -> None:
    """allowed.test is on the allowlist but resolves to the egress network's private
    address, which allowed_address_ranges does not hold: refused for plain http and for
    CONNECT, with its own reason, in the answer, the egress view and the event log."""
    guarded, control = cage.name("guard"), cage.name("ctl")
    start(cage, guarded, env={"CAGE_ALLOWED_ADDRESS_RANGES": ranges})
    start(cage, control)  # the tests' default: the egress network's subnet is allowed
    marker = uuid.uuid4().hex
    plain = sh(cage, guarded, f"curl -sS -w ' %{{http_code}}' http://allowed.test/{marker}p")
    assert plain.stdout.endswith(" 403"), plain.output
    assert "resolves to an internal address" in plain.stdout
    assert "allowed_address_ranges" in plain.stdout
    tunnel = sh(cage, guarded, f"curl -sS -o /dev/null https://allowed.test/{marker}c")
    assert tunnel.code == 56 and "403" in tunnel.stderr, tunnel.output
    assert raw(cage, guarded, f"GET http://allowed.test:80/{marker}r HTTP/1.1\r\n"
               "Host: allowed.test\r\n\r\n") == "403"  # fmt: skip
    # A name that is not on the allowlist stays blocked-host: no lookup, no new reason.
    sh(cage, guarded, "curl -sS -o /dev/null http://denied.test/")
    assert not [r for r in test_hosts["allowed.test"].received() if marker in r["path"]]
    rows = egress_rows(cage, guarded)
    results = {(r["host"], r["port"], r["method"]): (r["result"], r["reason"]) for r in rows}
    assert results[("allowed.test", 80, "GET")] == ("blocked-address", "ERR_CAGE_ADDRESS")
    assert results[("allowed.test", 443, "CONNECT")] == ("blocked-address", "ERR_CAGE_ADDRESS")
    assert results[("denied.test", 80, "GET")][0] == "blocked-host"
    events = ""
    deadline = time.monotonic() + 60  # the audit files them in seconds (more when loaded)
    while "ERR_CAGE_ADDRESS" not in events and time.monotonic() < deadline:
        events = cage("events", "--json", "--type", "egress", "--session", guarded).stdout
        time.sleep(0.2)
    assert "blocked-address" in events and "ERR_CAGE_ADDRESS" in events
    # The control: the same host, with its range allowed.
    ok = sh(
        cage, control, f"curl -sS -o /dev/null -w '%{{http_code}}' http://allowed.test/{marker}k"
    )
    assert ok.stdout == "200", ok.output
