"""--port HOST:CONTAINER: the session has no network, so its companion publishes the
port on 127.0.0.1 and bridges it into the session through a unix socket."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request

import pytest

from tests.conftest import Cage, inspect

pytestmark = pytest.mark.engine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_port_reaches_a_server_in_the_session(cage: Cage) -> None:
    name, port = cage.name("port"), free_port()
    assert (
        cage(
            "start", "--name", name, "--detach", "--network", "none", "--port", f"{port}:3000"
        ).code
        == 0
    )
    subprocess.run(
        [
            "docker",
            "exec",
            "-d",
            f"cage-{name}",
            "node",
            "-e",
            "require('http').createServer((q,r)=>r.end('from the session'))"
            ".listen(3000,'127.0.0.1')",
        ],
        check=True,
    )
    body = b""
    deadline = time.monotonic() + 60  # node's start-up, on a loaded machine
    while time.monotonic() < deadline and not body:
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
        except OSError:
            time.sleep(0.1)
    assert body == b"from the session"
    bindings = inspect(f"companion-cage-{name}")["HostConfig"]["PortBindings"]
    assert bindings == {"3000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    assert inspect(f"cage-{name}")["HostConfig"]["NetworkMode"] == "none"
    assert not inspect(f"cage-{name}")["HostConfig"]["PortBindings"]


def test_port_with_host_network_is_refused(cage: Cage) -> None:
    name = cage.name("hostport")
    result = cage("start", "--name", name, "--detach", "--network", "host", "--port", "1:2")
    assert result.code == 2 and "error:" in result.stderr
    assert (
        subprocess.run(["docker", "inspect", f"cage-{name}"], capture_output=True).returncode != 0
    )
