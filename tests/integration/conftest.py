"""Fixtures for engine tests: the tests' own hosts on the egress network."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import inspect
from tests.integration.model import ModelServer, start_model_server
from tests.isolation import EGRESS_NETWORK, IMAGE_COMPANION

SERVER = Path(__file__).with_name("testserver.py")
TEST_LABEL = "cage-test=1"


@dataclass
class TestHost:
    __test__ = False
    alias: str
    container: str
    ip: str

    def received(self) -> list[dict]:
        """What this host has received so far (asked from inside its own container)."""
        out = subprocess.run(
            [
                "docker",
                "exec",
                self.container,
                "python3",
                "-c",
                "import urllib.request;print(urllib.request.urlopen("
                "'http://127.0.0.1/_received').read().decode())",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return json.loads(out)


def ensure_egress_network() -> None:
    if (
        subprocess.run(
            ["docker", "network", "inspect", EGRESS_NETWORK], capture_output=True
        ).returncode
        != 0
    ):
        subprocess.run(
            [
                "docker",
                "network",
                "create",
                "--label",
                "managed-by=claude-cage",
                "--label",
                "cage.role=network",
                EGRESS_NETWORK,
            ],
            capture_output=True,
        )


def start_test_host(alias: str, prefix: str, *more_aliases: str) -> TestHost:
    name = f"cage-testhost-{prefix}-{alias.replace('.', '-')}"
    extra = [arg for more in more_aliases for arg in ("--network-alias", more)]
    subprocess.run(
        [
            "docker",
            "run",
            "-d",
            "--rm",
            "--name",
            name,
            "--label",
            TEST_LABEL,
            "--network",
            EGRESS_NETWORK,
            "--network-alias",
            alias,
            *extra,
            "--user",
            "0",
            "-v",
            f"{SERVER}:/testserver.py:ro",
            "--entrypoint",
            "python3",
            IMAGE_COMPANION,
            "/testserver.py",
            alias,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    ip = inspect(name)["NetworkSettings"]["Networks"][EGRESS_NETWORK]["IPAddress"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        probe = subprocess.run(
            [
                "docker",
                "exec",
                name,
                "python3",
                "-c",
                "import urllib.request;urllib.request.urlopen('http://127.0.0.1/')",
            ],
            capture_output=True,
        )
        if probe.returncode == 0:
            return TestHost(alias, name, ip)
        time.sleep(0.1)
    raise RuntimeError(f"test host {alias} did not come up")


@pytest.fixture(scope="session")
def test_hosts() -> Iterator[dict[str, TestHost]]:
    """allowed.test, denied.test (also www.denied.test) and upstream.test: our own hosts
    on the egress network."""
    ensure_egress_network()
    prefix = uuid.uuid4().hex[:6]
    hosts: dict[str, TestHost] = {}
    try:
        for alias in ("allowed.test", "denied.test", "upstream.test"):
            # www.denied.test: a subdomain, for *.denied.test patterns
            more = ("www.denied.test",) if alias == "denied.test" else ()
            hosts[alias] = start_test_host(alias, prefix, *more)
        yield hosts
    finally:
        names = [h.container for h in hosts.values()]
        if names:
            subprocess.run(["docker", "rm", "-f", *names], capture_output=True)


@pytest.fixture(scope="session")
def model_server() -> Iterator[ModelServer]:
    """The scripted Messages API server, on the egress network as api.anthropic.com.

    Point a session at it with `start` and `env=model_server.session_env()`."""
    ensure_egress_network()
    server = start_model_server(uuid.uuid4().hex[:6])
    try:
        yield server
    finally:
        subprocess.run(["docker", "rm", "-f", server.container], capture_output=True)


def http_get(url: str, timeout: float = 5) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
