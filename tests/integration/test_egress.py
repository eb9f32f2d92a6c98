"""Egress: a filtered session reaches allowlisted hosts through its companion's proxy,
and nothing else, by any route. All traffic goes to the tests' own hosts."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
import uuid

import pytest

from tests.conftest import Cage, drops_every_capability, inspect
from tests.integration.conftest import TestHost
from tests.isolation import EGRESS_NETWORK

pytestmark = [pytest.mark.engine, pytest.mark.podman]


def sh(cage: Cage, name: str, script: str, timeout: float = 60):
    return cage("exec", name, "--", "bash", "-c", script, timeout=timeout)


def http_code(cage: Cage, name: str, url: str) -> str:
    result = sh(cage, name, f"curl -s -o /dev/null -m 10 -w '%{{http_code}}' {url}")
    return result.stdout.strip()


@pytest.fixture(scope="module")
def session(cage_module: Cage, test_hosts: dict[str, TestHost]) -> str:
    name = cage_module.name("egress")
    result = cage_module("start", "--name", name, "--detach", "--allow-host", "allowed.test")
    assert result.code == 0, result.output
    return name


def test_allowlisted_host_answers_through_the_proxy(cage_module: Cage, session: str) -> None:
    assert http_code(cage_module, session, "http://allowed.test/hello") == "200"


def test_other_host_gets_403_and_shows_as_blocked(cage_module: Cage, session: str) -> None:
    marker = uuid.uuid4().hex[:8]
    assert http_code(cage_module, session, f"http://denied.test/{marker}") == "403"
    log = cage_module("egress", session, "--json", "--blocked").json()
    assert log["version"] == 1
    blocked = [r for r in log["requests"] if r["host"] == "denied.test"]
    assert blocked and all(r["allowed"] is False for r in blocked)
    assert all(r["result"] == "blocked-host" and r["status"] == 403 for r in blocked)
    assert set(blocked[0]) >= {"time", "host", "port", "allowed", "result", "reason"}
    everything = cage_module("egress", session, "--json").json()["requests"]
    assert any(r["host"] == "allowed.test" and r["allowed"] for r in everything)


def test_https_connect_to_a_host_not_on_the_list_is_refused(
    cage_module: Cage, session: str
) -> None:
    result = sh(
        cage_module,
        session,
        "curl -s -m 10 -o /dev/null -w '%{http_code}' https://denied.test/ ; echo \" rc=$?\"",
    )
    assert "403" in result.stdout or "rc=56" in result.stdout  # CONNECT refused by the proxy


def test_ports_other_than_80_and_443_are_refused(cage_module: Cage, session: str) -> None:
    assert http_code(cage_module, session, "http://allowed.test:8080/") == "403"


def test_blocked_answers_suggest_only_what_allow_accepts(cage_module: Cage, session: str) -> None:
    """What the agent reads when refused: a name gets the `allow` command to run; an
    IP literal and the proxy's own names get why no `allow` can admit them, since
    `allow` refuses both."""

    def answer(url: str) -> str:
        via = "--noproxy '' -x http://127.0.0.1:3128"  # even where NO_PROXY would skip it
        return sh(cage_module, session, f"curl -s -m 10 {via} {url}").stdout

    named = answer("http://denied.test/")
    assert f"claude-cage allow {session} denied.test" in named

    for literal in ("93.184.216.34", "93.184.216.34:8080", "[2001:db8::1]"):
        said = answer(f"http://{literal}/")
        assert "is an IP address" in said and "host names only" in said, said
        assert f"claude-cage allow {session} HOSTNAME" in said
        assert f"allow {session} {literal.split(':')[0]}" not in said and "--port" not in said
    refused = cage_module("allow", session, "93.184.216.34")
    assert refused.code == 2 and "IP address" in refused.stderr  # what it would have said

    for own in (f"companion-cage-{session}", f"companion-cage-{session}:8888", "127.0.0.1:3128",
                "localhost:8888", "[::1]:8888"):  # fmt: skip
        said = answer(f"http://{own}/")
        assert "egress proxy itself" in said and "No allow can change that" in said, said
        assert "claude-cage allow" not in said
    refused = cage_module("allow", session, f"companion-cage-{session}")
    assert refused.code == 2, refused.output

    rows = cage_module("egress", session, "--json", "--blocked").json()["requests"]
    reasons = {r["reason"]: r["result"] for r in rows}
    assert reasons["ERR_CAGE_LITERAL"] == reasons["ERR_CAGE_SELF"] == "blocked-host"


@pytest.fixture(scope="module")
def host_server() -> tuple[int, list[str]]:
    """A TCP server on the host itself, bound to 0.0.0.0, and the host's addresses."""
    server = socket.socket()
    server.bind(("0.0.0.0", 0))
    server.listen(8)
    threading.Thread(
        target=lambda: [c.close() for c in iter(lambda: server.accept()[0], None)], daemon=True
    ).start()
    addresses = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
    return server.getsockname()[1], [a for a in addresses if ":" not in a]


def test_no_direct_connection_to_any_address(
    cage_module: Cage,
    session: str,
    test_hosts: dict[str, TestHost],
    host_server: tuple[int, list[str]],
) -> None:
    port, host_addresses = host_server
    companion_ip = inspect(f"companion-cage-{session}")["NetworkSettings"]["Networks"][
        EGRESS_NETWORK
    ]["IPAddress"]
    docker0 = "172.17.0.1"
    assert host_addresses, "the host has addresses to try"
    targets = (
        [f"{h.ip}:80" for h in test_hosts.values()]
        + [f"{companion_ip}:8888", f"{companion_ip}:80", f"{docker0}:{port}"]
        + [f"{a}:{port}" for a in host_addresses]
    )
    script = " ; ".join(
        f"if timeout 5 bash -c 'echo > /dev/tcp/{t.replace(':', '/')}' 2>/dev/null; "
        f"then echo OPEN {t}; else echo closed {t}; fi"
        for t in targets
    )
    result = sh(cage_module, session, script)
    assert result.code == 0, result.output
    assert "OPEN" not in result.stdout, result.stdout
    assert result.stdout.count("closed") == len(targets)
    # The failure is "no route", not a refusal by something listening.
    errno = sh(cage_module, session, f"bash -c 'echo > /dev/tcp/{docker0}/{port}' 2>&1")
    # (gVisor's kernel words it "No route to host")
    assert "Network is unreachable" in errno.output or "No route to host" in errno.output


def test_no_routes_and_no_dns_outside_docker(cage_module: Cage, session: str) -> None:
    routes = sh(cage_module, session, "cat /proc/net/route; cat /proc/net/ipv6_route")
    lines = [line for line in routes.stdout.splitlines()[1:] if line.strip()]
    assert all(" lo" in line or line.split()[0] == "lo" for line in lines), routes.stdout
    dns = sh(cage_module, session, "getent hosts example.com; echo rc=$?")
    assert "rc=2" in dns.stdout or "rc=1" in dns.stdout
    v6 = sh(cage_module, session, "bash -c 'echo > /dev/tcp/2001:db8::1/80' 2>&1; echo rc=$?")
    assert "rc=0" not in v6.stdout


def test_raw_sockets_fail(cage_module: Cage, session: str) -> None:
    result = sh(
        cage_module, session, "socat -u - IP4-SENDTO:127.0.0.1:1 </dev/null 2>&1; echo rc=$?"
    )
    assert "rc=0" not in result.stdout
    assert "Operation not permitted" in result.stdout


def test_allowlist_changes_live_in_both_directions(cage_module: Cage, session: str) -> None:
    assert http_code(cage_module, session, "http://denied.test/") == "403"
    added = cage_module("allow", session, "denied.test", "--json")
    assert added.code == 0, added.output
    assert added.json()["live"] is True
    assert http_code(cage_module, session, "http://denied.test/") == "200"
    assert (
        "denied.test" in cage_module("status", session, "--json").json()["session"]["allowed_hosts"]
    )
    removed = cage_module("allow", session, "--remove", "denied.test")
    assert removed.code == 0, removed.output
    assert http_code(cage_module, session, "http://denied.test/") == "403"
    meta = (cage_module.data_dir / "sessions" / session / "metadata").read_text()
    assert "denied.test" not in meta


def test_suffix_patterns_match_subdomains_only(cage_module: Cage, session: str) -> None:
    assert cage_module("allow", session, "*.denied.test").code == 0
    try:
        assert http_code(cage_module, session, "http://www.denied.test/") == "200"
        assert http_code(cage_module, session, "http://denied.test/") == "403"
    finally:
        assert cage_module("allow", session, "--remove", "*.denied.test").code == 0
    assert http_code(cage_module, session, "http://www.denied.test/") == "403"


def test_killing_the_bridge_only_cuts_the_session_off(cage_module: Cage, session: str) -> None:
    name = cage_module.name("cutoff")
    assert (
        cage_module("start", "--name", name, "--detach", "--allow-host", "allowed.test").code == 0
    )
    sh(cage_module, name, "pkill -f 'TCP-LISTEN:3128' ; sleep 0.2")
    assert http_code(cage_module, name, "http://allowed.test/") == "000"
    direct = sh(cage_module, name, "curl -s --noproxy '*' -m 5 http://allowed.test/; echo rc=$?")
    assert "rc=6" in direct.stdout or "rc=7" in direct.stdout  # no DNS, no route
    assert cage_module("destroy", "--force", name).code == 0


def test_companion_is_hardened_and_labelled(cage_module: Cage, session: str) -> None:
    info = inspect(f"companion-cage-{session}")
    host = info["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert drops_every_capability(host)
    assert any(o.startswith("no-new-privileges") for o in host["SecurityOpt"])
    assert any(o.startswith("seccomp=") for o in host["SecurityOpt"])
    assert host["Memory"] > 0 and host["NanoCpus"] > 0 and host["PidsLimit"] > 0
    assert info["Config"]["User"] not in ("", "0", "root")
    labels = info["Config"]["Labels"]
    assert labels["managed-by"] == "claude-cage"
    assert labels["cage.session"] == session and labels["cage.role"] == "companion"
    assert list(info["NetworkSettings"]["Networks"]) == [EGRESS_NETWORK]
    assert not info["NetworkSettings"]["Ports"]
    volume = f"cage-sock-{session}"
    vol = subprocess.run(["docker", "volume", "inspect", volume], capture_output=True, text=True)
    assert '"managed-by": "claude-cage"' in vol.stdout


def test_two_sessions_cannot_reach_each_other(cage_module: Cage, session: str) -> None:
    other = cage_module.name("other")
    assert cage_module("start", "--name", other, "--detach").code == 0
    try:
        # No shared sockets: each session sees only its own socket volume.
        mine = inspect(f"cage-{session}")["Mounts"]
        theirs = inspect(f"cage-{other}")["Mounts"]
        assert not {m.get("Name") for m in mine if m.get("Name")} & {
            m.get("Name") for m in theirs if m.get("Name")
        }
        # The other's companion is not reachable directly, nor through the proxy.
        companion = f"companion-cage-{other}"
        ip = inspect(companion)["NetworkSettings"]["Networks"][EGRESS_NETWORK]["IPAddress"]
        assert http_code(cage_module, session, f"http://{companion}:6080/") == "403"
        assert http_code(cage_module, session, f"http://{ip}:6080/") == "403"
        result = sh(
            cage_module, session, f"timeout 5 bash -c 'echo > /dev/tcp/{ip}/8888' 2>&1; echo rc=$?"
        )
        assert "rc=0" not in result.stdout
    finally:
        assert cage_module("destroy", "--force", other).code == 0


def test_stop_and_destroy_remove_the_proxy(cage: Cage, test_hosts: dict[str, TestHost]) -> None:
    name = cage.name("gone")
    assert cage("start", "--name", name, "--detach").code == 0
    assert inspect(f"companion-cage-{name}")["State"]["Running"]
    assert cage("stop", name).code == 0
    assert not inspect(f"companion-cage-{name}")["State"]["Running"]
    assert cage("destroy", name).code == 0
    leftovers = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=cage.session={name}"],
        capture_output=True,
        text=True,
    ).stdout.split()
    volumes = subprocess.run(
        ["docker", "volume", "ls", "-q", "--filter", f"label=cage.session={name}"],
        capture_output=True,
        text=True,
    ).stdout.split()
    assert leftovers == [] and volumes == []
    assert cage("list", "--json").json()["sessions"] == []


def test_none_has_no_proxy_and_host_warns(cage: Cage) -> None:
    name = cage.name("none")
    assert cage("start", "--name", name, "--detach", "--network", "none").code == 0
    assert (
        subprocess.run(
            ["docker", "inspect", f"companion-cage-{name}"], capture_output=True
        ).returncode
        != 0
    )
    env = cage("exec", name, "--", "env").stdout
    assert "HTTP_PROXY" not in env
    host = cage.name("host")
    started = cage("start", "--name", host, "--detach", "--network", "host")
    if cage.env.get("CAGE_RUNTIME") == "runsc":  # refused: see runtimes.refusal
        assert started.code == 2 and "hint: " in started.stderr, started.output
        assert "--runtime runc" in started.stderr
        assert cage("status", host).code == 3  # nothing was made
        return
    assert started.code == 0 and "warning" in started.stderr
    assert "warning" in cage("status", host).stderr


def test_blocked_attempts_reach_the_event_log_once(cage_module: Cage, session: str) -> None:
    marker = f"blocked-{uuid.uuid4().hex[:6]}.test"
    assert http_code(cage_module, session, f"http://{marker}/") == "403"
    deadline = time.monotonic() + 60  # the audit files it in seconds; a loaded machine
    hits: list[dict] = []
    while time.monotonic() < deadline and not hits:
        events = cage_module("events", "--type", "egress", "--session", session, "--json").json()
        hits = [e for e in events["events"] if e["value"].get("host") == marker]
    for _ in range(2):  # reading the log again files nothing twice
        assert cage_module("egress", session, "--blocked").code == 0
    time.sleep(0.5)
    events = cage_module("events", "--type", "egress", "--session", session, "--json").json()
    hits = [e for e in events["events"] if e["value"].get("host") == marker]
    assert len(hits) == 1
    assert hits[0]["key"] == f"blocked:{session}"
    assert hits[0]["value"]["status"] == "blocked-host"
    assert hits[0]["value"]["reason"] == "ERR_CAGE_HOST"
