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

from tests.conftest import ensure_egress_network, inspect
from tests.integration.model import ModelServer, start_model_server
from tests.isolation import EGRESS_NETWORK, IMAGE_COMPANION, LIMITS

SERVER = Path(__file__).with_name("testserver.py")
TEST_LABEL = "cage-test=1"
# These modules run once per runtime: runc and gVisor (runsc). Without runsc registered
# the runsc half is skipped, or fails in CI (tests/conftest.py: the `runtime` fixture).
# (test_desktop is not: desktop sessions are refused on gVisor, see runtimes.refusal.)
# The gVisor half is marked slow (make test-fast leaves it out).
RUNTIME_MODULES = {"test_agent", "test_egress", "test_sandbox"}
RUNTIMES = ["runc", pytest.param("runsc", marks=pytest.mark.slow)]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rpartition(".")[2]
    if module in RUNTIME_MODULES and "runtime" in metafunc.fixturenames:
        metafunc.parametrize("runtime", RUNTIMES, indirect=True, scope="module")


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


def start_test_host(
    alias: str,
    prefix: str,
    tls: Path | None = None,
    aliases: tuple[str, ...] = (),
    image: str = IMAGE_COMPANION,
    setup: str = "",
) -> TestHost:
    """A recording server reached as `alias` (and `aliases`) on the egress network; with
    `tls` (a directory holding cert.pem and key.pem) it also answers HTTPS on 443."""
    name = f"cage-testhost-{prefix}-{alias.replace('.', '-')}"
    args = ["/testserver.py", alias] + (["/tls/cert.pem", "/tls/key.pem"] if tls else [])
    subprocess.run(
        [
            "docker",
            "run",
            "-d",
            "--rm",
            *LIMITS,
            "--name",
            name,
            "--label",
            TEST_LABEL,
            "--network",
            EGRESS_NETWORK,
            *(f"--network-alias={a}" for a in (alias, *aliases)),
            "--user",
            "0",
            "-v",
            f"{SERVER}:/testserver.py:ro",
            *(["-v", f"{tls}:/tls:ro"] if tls else []),
            "--entrypoint",
            "sh",
            image,
            "-c",
            f"{setup} exec python3 " + " ".join(args),
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
            hosts[alias] = start_test_host(alias, prefix, aliases=more)
        yield hosts
    finally:
        names = [h.container for h in hosts.values()]
        if names:
            subprocess.run(["docker", "rm", "-f", *names], capture_output=True)


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory of the tests' own CA (ca.pem): see make_ca and make_cert."""
    directory = tmp_path_factory.mktemp("pki")
    directory.chmod(0o755)
    make_ca(directory)
    return directory


@pytest.fixture(scope="session")
def model_server(test_ca: Path) -> Iterator[ModelServer]:
    """The scripted Messages API server, on the egress network as api.anthropic.com,
    over HTTPS with a certificate from the test CA.

    Point a session at it with `start` and `env=model_server.session_env()`."""
    ensure_egress_network()
    tls = make_cert(test_ca, ("api.anthropic.com",))
    server = start_model_server(uuid.uuid4().hex[:6], tls, test_ca / "ca.pem")
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


# --- TLS: a test CA, and certificates it signs for the tests' hosts -------------------


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], capture_output=True, check=True)


def make_ca(directory: Path) -> Path:
    """A CA of the tests' own: the companion trusts it (config upstream_ca_certs) to
    verify the servers it adds credentials for; sessions never do."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-new", "-nodes", "-newkey", "ec", "-pkeyopt",
        "ec_paramgen_curve:prime256v1", "-keyout", str(directory / "ca.key"),
        "-out", str(directory / "ca.pem"), "-days", "2", "-subj", "/CN=claude-cage test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return directory / "ca.pem"


def make_cert(ca_dir: Path, hosts: tuple[str, ...]) -> Path:
    """A server certificate for `hosts`, signed by the test CA, in its own directory."""
    out = ca_dir / hosts[0]
    out.mkdir(exist_ok=True)
    ext = ca_dir / f"{hosts[0]}.ext"
    ext.write_text(
        "subjectAltName=" + ",".join(f"DNS:{h}" for h in hosts) + "\n"
        "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-keyout", str(out / "key.pem"), "-out", str(out / "req.csr"), "-subj", f"/CN={hosts[0]}",
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(out / "req.csr"), "-CA", str(ca_dir / "ca.pem"),
        "-CAkey", str(ca_dir / "ca.key"), "-CAcreateserial", "-days", "2",
        "-out", str(out / "cert.pem"), "-extfile", str(ext),
    )  # fmt: skip
    for path in (out, out / "key.pem", out / "cert.pem"):  # the servers run as root anyway
        path.chmod(0o755 if path.is_dir() else 0o644)
    return out
