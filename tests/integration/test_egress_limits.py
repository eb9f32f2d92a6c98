"""Limits of the egress path, each tested as the attack and the expected refusal: broad
allowlist entries, upload hosts in the defaults, a session flooding its own log, and a
session flooding its companion's sockets to knock it out."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import Cage, inspect, owned
from tests.integration.conftest import TestHost
from tests.polling import within

pytestmark = pytest.mark.engine

KEY = "sk-ant-test-" + "k" * 40


def sh(name: str, script: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", "exec", f"cage-{name}", "bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def code(name: str, url: str) -> str:
    return sh(name, f"curl -s -o /dev/null -m 10 -w '%{{http_code}}' {url}").stdout


@pytest.mark.parametrize(
    "entry", ["*.com", "*.co.uk", "*.github.io", "com", "localhost", "10.0.0.1", "*.127.1"]
)
def test_broad_allowlist_entries_are_refused(cage: Cage, entry: str) -> None:
    name = cage.name("broad")
    result = cage("start", "--name", name, "--detach", "--allow-host", entry)
    assert result.code == 2, result.output
    error, hint = result.stderr.strip().splitlines()
    assert error.startswith("error: --allow-host") and entry in error
    assert hint.startswith("hint: use a name under a registrable domain")
    assert owned(cage.owner()) == ([], [])  # nothing made


def test_broad_entries_are_refused_in_the_config_and_by_allow(
    cage: Cage, test_hosts: dict[str, TestHost]
) -> None:
    config = cage.config_dir / "config.yaml"
    config.write_text("allowed_hosts: ['allowed.test', '*.co.uk']\n")
    refused = cage("start", "--detach")
    assert refused.code == 2 and "*.co.uk" in refused.stderr and "public suffix" in refused.stderr
    assert "*.co.uk" in cage("config", "validate").output
    config.unlink()
    name = cage.name("live")
    assert cage("start", "--name", name, "--detach").code == 0
    before = (cage.data_dir / "sessions" / name / "metadata").read_text()
    for entry in ("*.test", "1.2.3.4", "*.com"):
        result = cage("allow", name, entry)
        assert result.code == 2 and "error:" in result.stderr, result.output
    assert (cage.data_dir / "sessions" / name / "metadata").read_text() == before
    assert code(name, "http://denied.test/") == "403"  # still refused by the proxy


def test_defaults_have_no_anonymous_upload_host(cage: Cage) -> None:
    name = cage.name("defaults")
    assert cage("start", "--name", name, "--detach").code == 0
    for url in (
        "http://sentry.io/api/1/store/",
        "https://o1.ingest.sentry.io/api/1/envelope/",
        "https://statsig.anthropic.com/v1/rgstr",
        "https://registry.npmjs.org/-/v1/login",
    ):
        result = sh(name, f"curl -s -o /dev/null -w '%{{http_code}}' -m 10 {url}; echo \" $?\"")
        # http: the proxy's 403; https: the tunnel refused (curl 56 after a 403).
        assert result.stdout.startswith("403") or " 56" in result.stdout, (url, result.stdout)
    env = cage("exec", name, "--", "env").stdout
    for switch in ("DISABLE_ERROR_REPORTING=1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1"):
        assert switch in env
    hosts = cage("status", name, "--json").json()["session"]["allowed_hosts"]
    assert not [h for h in hosts if "sentry" in h or "npmjs" in h or "statsig" in h], hosts


@pytest.mark.slow
def test_the_session_log_is_capped(cage: Cage) -> None:
    name = cage.name("noisy")
    assert cage("start", "--name", name, "--detach", "--network", "none").code == 0
    config = inspect(f"cage-{name}")["HostConfig"]["LogConfig"]
    assert config["Type"] == "json-file" and config["Config"]["max-file"] == "2"
    cap = 2 * int(config["Config"]["max-size"])
    # The agent writes 40 MiB into the container's own output (its PID 1's stdout).
    result = sh(name, "head -c 41943040 /dev/zero | tr '\\0' x | fold -w 1000 > /proc/1/fd/1")
    assert result.returncode == 0, result.stderr
    log = Path(inspect(f"cage-{name}")["LogPath"])
    on_disk = sum(p.stat().st_size for p in log.parent.glob(log.name + "*"))
    assert on_disk <= cap + 64 * 1024, (on_disk, cap)


FLOOD = r"""
use IO::Socket::UNIX; use Time::HiRes qw(time sleep); $| = 1; $SIG{PIPE} = "IGNORE"; my @held;
for my $path ("/sock/out/proxy.sock") {
  my ($n, $until) = (0, time + 8);
  while ($n < 400 && time < $until) {  # a full backlog refuses at once: try again
    my $c = IO::Socket::UNIX->new(Peer => $path, Type => SOCK_STREAM, Timeout => 1);
    if (!$c) { sleep 0.01; next; }
    print $c "GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n";  # never ends
    push @held, $c; $n++;
  }
}
print scalar(@held), " held\n"; sleep 120;
"""


@pytest.mark.slow
def test_the_companion_survives_a_connection_flood(
    cage: Cage, test_hosts: dict[str, TestHost]
) -> None:
    name = cage.name("flood")
    started = cage("start", "--name", name, "--detach", "--allow-host", "allowed.test",
                   env={"ANTHROPIC_API_KEY": KEY})  # fmt: skip
    assert started.code == 0, started.output
    companion = f"companion-cage-{name}"
    # The session opens 400 connections to the companion's proxy socket, straight
    # to the socket volume (its own bridge is no limit it cannot go around), and holds.
    flood = subprocess.Popen(
        ["docker", "exec", f"cage-{name}", "perl", "-e", FLOOD],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert flood.stdout is not None
        assert "held" in flood.stdout.readline()
        processes = subprocess.run(["docker", "top", companion], capture_output=True, text=True)
        bridge = [line for line in processes.stdout.splitlines() if "proxy.sock" in line]
        assert 90 <= len(bridge) <= 97  # the bridge is full, and capped
        assert inspect(companion)["State"]["Running"]
        # The operator's commands still work through the companion.
        began = time.monotonic()
        assert cage("allow", name, "denied.test").code == 0
        assert cage("key", "set", name, input="sk-ant-test-" + "n" * 40).code == 0
        ready = subprocess.run(
            ["docker", "exec", companion, "companion-entrypoint", "wait-ready"], capture_output=True
        )
        assert ready.returncode == 0
        assert cage("egress", name).code == 0
        status = cage("status", name, "--json").json()["session"]
        assert status["companion"]["status"] == "running"
        assert time.monotonic() - began < 30
    finally:
        flood.kill()
        subprocess.run(["docker", "exec", f"cage-{name}", "pkill", "perl"], capture_output=True)
    assert inspect(companion)["State"]["Running"]
    assert within(lambda: code(name, "http://denied.test/") == "200", 20, 0.2)


def test_a_dead_companion_is_named_and_start_restarts_it_alone(
    cage: Cage, test_hosts: dict[str, TestHost]
) -> None:
    name = cage.name("revive")
    started = cage("start", "--name", name, "--detach", "--allow-host", "allowed.test",
                   env={"ANTHROPIC_API_KEY": KEY})  # fmt: skip
    assert started.code == 0, started.output
    session_started = inspect(f"cage-{name}")["State"]["StartedAt"]
    subprocess.run(["docker", "kill", f"companion-cage-{name}"], capture_output=True, check=True)
    assert code(name, "http://allowed.test/") != "200"
    status = cage("status", name)
    assert "companion" in status.output and f"claude-cage start {name}" in status.output
    problem = cage("status", name, "--json").json()["session"]["companion"]
    assert problem["status"] == "stopped" and problem["problem"]
    restarted = cage("start", name)
    assert restarted.code == 0, restarted.output
    assert "companion" in restarted.stderr
    assert inspect(f"cage-{name}")["State"]["StartedAt"] == session_started  # not restarted
    assert inspect(f"companion-cage-{name}")["State"]["Running"]
    assert code(name, "http://allowed.test/") == "200"
    rules = subprocess.run(  # the credential is handed to the new companion again
        ["docker", "exec", f"companion-cage-{name}", "grep", "-c", "request_header_add",
         "/run/cage/tls/creds.conf"], capture_output=True, text=True,
    )  # fmt: skip
    assert rules.stdout.strip() == "1", rules
    assert cage("status", name, "--json").json()["session"]["companion"].get("problem") is None
