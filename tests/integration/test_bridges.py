"""Dead bridges, from detection to repair. An agent can kill the socat bridges in its
own session (they stay in the process table as `[socat] <defunct>`): `status` uses
each bridge from inside the session and reports a dead one as a FAIL with its fix;
`start NAME` repairs it and says so; then traffic flows again."""

from __future__ import annotations

import secrets
import subprocess

import pytest

from tests.conftest import Cage
from tests.integration.conftest import TestHost

pytestmark = pytest.mark.engine

UPSTREAM = "http://upstream.test"
BRIDGES = {"egress proxy bridge", "port 5000 bridge"}


def sh(cage: Cage, name: str, script: str) -> str:
    return cage("exec", name, "--", "bash", "-c", script, timeout=60).stdout


def bridge_checks(cage: Cage, name: str) -> dict[str, dict]:
    result = cage("status", name, "--json")
    assert result.code == 0, result.output
    checks = result.json()["session"]["sandbox"]["checks"]
    return {c["check"]: c for c in checks if c["check"] in BRIDGES}


def traffic(cage: Cage, name: str) -> str:
    """Egress through the proxy, as an HTTP code."""
    return sh(cage, name, "curl -s -o /dev/null -m 10 -w '%{http_code}' http://allowed.test/")


@pytest.fixture
def session(cage: Cage, test_hosts: dict[str, TestHost]) -> tuple[str, str]:
    key = f"sk-ant-test-{secrets.token_hex(16)}"
    name = cage.name("bridges")
    result = cage(
        "start", "--name", name, "--detach", "--allow-host", "allowed.test",
        "--port", "18765:5000",
        env={"ANTHROPIC_API_KEY": key, "CAGE_ANTHROPIC_UPSTREAM": UPSTREAM},
    )  # fmt: skip
    assert result.code == 0, result.output
    return name, key


def test_a_killed_bridge_is_a_fail_and_start_repairs_it(
    cage: Cage, session: tuple[str, str], test_hosts: dict[str, TestHost]
) -> None:
    name, _key = session
    checks = bridge_checks(cage, name)
    assert set(checks) == BRIDGES and all(c["ok"] for c in checks.values()), checks
    assert traffic(cage, name) == "200"

    # The agent kills its bridges: the processes stay, as zombies.
    sh(cage, name, "pkill socat; sleep 0.3")
    assert "[socat] <defunct>" in sh(cage, name, "ps ax")
    assert traffic(cage, name) == "000"
    status = cage("status", name, "--json").json()["session"]
    assert status["sandbox"]["ok"] is False
    checks = {c["check"]: c for c in status["sandbox"]["checks"] if c["check"] in BRIDGES}
    assert not any(c["ok"] for c in checks.values()), checks
    assert all(f"claude-cage start --name {name}" in c["detail"] for c in checks.values())
    assert "FAIL  egress proxy bridge" in cage("status", name).stdout

    repaired = cage("start", "--name", name)
    assert repaired.code == 0, repaired.output
    assert "repaired: " in repaired.stderr
    for bridge in BRIDGES:
        assert bridge in repaired.stderr

    checks = bridge_checks(cage, name)
    assert all(c["ok"] for c in checks.values()), checks
    assert traffic(cage, name) == "200"

    again = cage("start", "--name", name)  # nothing left to repair
    assert again.code == 2 and "already running" in again.stderr


def test_a_dead_companion_is_started_again_with_its_key(
    cage: Cage, session: tuple[str, str], test_hosts: dict[str, TestHost]
) -> None:
    name, _key = session
    subprocess.run(["docker", "kill", f"companion-cage-{name}"], check=True, capture_output=True)
    status = cage("status", name, "--json").json()["session"]
    failed = {c["check"] for c in status["sandbox"]["checks"] if not c["ok"]}
    assert {"egress proxy bridge"} <= failed

    repaired = cage("start", "--name", name)
    assert repaired.code == 0, repaired.output
    assert "repaired: companion" in repaired.stderr
    assert traffic(cage, name) == "200"
    assert all(c["ok"] for c in bridge_checks(cage, name).values())


def test_status_checks_are_not_the_agents_traffic(cage: Cage, session: tuple[str, str]) -> None:
    """Each `status` uses the proxy bridge from inside the session; none of it may show in
    the session's egress or its events as if the agent had asked for it."""
    name, _key = session
    for _ in range(3):
        checks = bridge_checks(cage, name)
        assert checks["egress proxy bridge"]["ok"], checks
    assert traffic(cage, name) == "200"  # the agent's own request, for contrast
    requests = cage("egress", name, "--json", "--all").json()["requests"]
    assert "allowed.test" in [r["host"] for r in requests], requests
    assert [r for r in requests if not r["allowed"]] == [], requests  # Claude Code's own only
    events = cage("events", "--session", name, "--json").json()["events"]
    assert not [e for e in events if e["key"].startswith("blocked:")], events
