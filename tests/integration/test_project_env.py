"""A project's own environment in the stock image: its packages from the registries a
preset allows, with the clients' caches kept across a restart, and somewhere to write
for a session without a project.

The registries are the tests' own (registry_server.py), reached under the real names
(pypi.org, files.pythonhosted.org, registry.npmjs.org) through network aliases. A
preset's hosts are decrypted in the companion (their rules allow GET and HEAD only), so
the clients trust the session's CA, as every session's do, and the companion trusts the
test CA through config upstream_ca_certs: nothing in the sandbox changes for it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Cage
from tests.integration.conftest import TEST_LABEL, ensure_egress_network, make_cert
from tests.isolation import EGRESS_NETWORK, IMAGE_COMPANION

pytestmark = pytest.mark.engine

SERVER = Path(__file__).with_name("registry_server.py")
PYPI_HOSTS = ("pypi.org", "files.pythonhosted.org")
NPM_HOSTS = ("registry.npmjs.org",)
PYTEST_WHEELS = ("pytest==8.3.4", "pluggy==1.5.0", "iniconfig==2.0.0", "packaging==24.2")


@dataclass
class Registry:
    container: str
    root: Path  # served at https://<alias>/

    def requests(self) -> list[str]:
        out = subprocess.run(
            ["docker", "exec", self.container, "cat", "/srv/requests.log"],
            capture_output=True,
            text=True,
        )
        return out.stdout.split()


def start_registry(root: Path, ca_dir: Path, hosts: tuple[str, ...]) -> Registry:
    tls = make_cert(ca_dir, hosts)
    name = f"cage-testhost-registry-{uuid.uuid4().hex[:6]}"
    subprocess.run(
        [
            "docker", "run", "-d", "--rm", "--name", name, "--label", TEST_LABEL,
            "--network", EGRESS_NETWORK, *(f"--network-alias={h}" for h in hosts),
            "--user", "0", "-v", f"{SERVER}:/server.py:ro", "-v", f"{root}:/srv/root:ro",
            "-v", f"{tls}:/tls:ro", "--entrypoint", "python3", IMAGE_COMPANION,
            "/server.py", "/srv/root", "/tls/cert.pem", "/tls/key.pem",
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    registry = Registry(name, root)
    for _ in range(100):
        probe = subprocess.run(
            ["docker", "exec", name, "python3", "-c",
             "import socket;socket.create_connection(('127.0.0.1', 443), 1)"],
            capture_output=True,
        )  # fmt: skip
        if probe.returncode == 0:
            return registry
    raise RuntimeError("the test registry did not come up")


# --- a Python package index (PEP 503) -------------------------------------------------


def build_wheel(directory: Path, name: str, version: str, module: str) -> Path:
    """A real wheel: a module, its METADATA and WHEEL, and a RECORD of their hashes."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": module,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join([*record, f"{dist}/RECORD,,"]) + "\n"
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def simple_index(root: Path, wheels: list[Path]) -> None:
    """/simple/<project>/ pages linking to files on files.pythonhosted.org, as PyPI's."""
    packages = root / "packages"
    packages.mkdir(parents=True)
    projects: dict[str, list[str]] = {}
    for wheel in wheels:
        shutil.copy(wheel, packages / wheel.name)
        sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
        project = wheel.name.split("-")[0].lower().replace("_", "-")
        url = f"https://files.pythonhosted.org/packages/{wheel.name}#sha256={sha}"
        projects.setdefault(project, []).append(f'<a href="{url}">{wheel.name}</a>')
    for project, links in projects.items():
        page = root / "simple" / project
        page.mkdir(parents=True)
        (page / "index.html").write_text("<html><body>" + "".join(links) + "</body></html>")


@pytest.fixture(scope="module")
def pypi(tmp_path_factory: pytest.TempPathFactory, test_ca: Path) -> Iterator[Registry]:
    ensure_egress_network()
    work = tmp_path_factory.mktemp("pypi")
    wheels = work / "wheels"
    wheels.mkdir()
    download = subprocess.run(
        ["python3", "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels),
         *PYTEST_WHEELS],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if download.returncode != 0:
        pytest.skip(f"pytest's wheels for the test index: {download.stderr[-200:]}")
    greet = build_wheel(wheels, "greet", "1.0", "def hello(who):\n    return f'hello {who}'\n")
    simple_index(work / "root", [*wheels.glob("*.whl")])
    assert greet.exists()
    work.chmod(0o755)
    registry = start_registry(work / "root", test_ca, PYPI_HOSTS)
    try:
        yield registry
    finally:
        subprocess.run(["docker", "rm", "-f", registry.container], capture_output=True)


def python_project(directory: Path, ca: Path) -> Path:
    project = directory / "proj"
    (project / "tests").mkdir(parents=True)
    (project / "requirements.txt").write_text("greet==1.0\npytest==8.3.4\n")
    (project / "tests" / "test_greet.py").write_text(
        "import greet\n\ndef test_hello():\n    assert greet.hello('cage') == 'hello cage'\n"
    )
    shutil.copy(ca, project / "test-ca.pem")
    return owned_by_a_user(project)


def owned_by_a_user(project: Path) -> Path:
    """A read-write mount's owner runs the session, and never root (the tests run as it)."""
    subprocess.run(["chown", "-R", "1000:1000", str(project)], check=True)
    return project


def sh(cage: Cage, name: str, script: str, timeout: float = 180):
    return cage("exec", name, "--", "bash", "-c", script, timeout=timeout)


INSTALL = "python3 -m venv .venv && .venv/bin/pip install -q -r requirements.txt"


def test_python_project_installs_from_the_preset_and_its_tests_pass(
    cage: Cage, tmp_path: Path, pypi: Registry, test_ca: Path
) -> None:
    project = python_project(tmp_path, test_ca / "ca.pem")
    cage.env["CAGE_UPSTREAM_CA_CERTS"] = str(test_ca / "ca.pem")
    name = cage.name()
    started = cage(
        "start", "--name", name, "-d", "--allow-preset", "python", "--mount", str(project)
    )
    assert started.code == 0, started.output

    installed = sh(cage, name, f"{INSTALL} && .venv/bin/python -m pytest -q tests")
    assert installed.code == 0, installed.output
    assert "1 passed" in installed.stdout
    first = pypi.requests()
    assert "/packages/greet-1.0-py3-none-any.whl" in first
    assert "/simple/greet/" in first

    # The preset opens its registry's hosts, and no other.
    refused = sh(cage, name, "curl -sS -o /dev/null https://registry.npmjs.org/ 2>&1; true")
    assert "403" in refused.stdout, refused.output

    # pip's cache is in the data volume: after a restart, nothing is downloaded again.
    assert cage("stop", name).code == 0
    assert cage("start", name, "-d").code == 0
    again = sh(cage, name, f"rm -rf .venv && {INSTALL} && .venv/bin/python -m pytest -q tests")
    assert again.code == 0, again.output
    second = pypi.requests()[len(first) :]
    assert [p for p in second if p.startswith("/packages/")] == [], second


def test_a_session_without_the_preset_cannot_reach_the_index(
    cage: Cage, tmp_path: Path, pypi: Registry, test_ca: Path
) -> None:
    project = python_project(tmp_path, test_ca / "ca.pem")
    cage.env["CAGE_UPSTREAM_CA_CERTS"] = str(test_ca / "ca.pem")
    name = cage.name()
    started = cage("start", "--name", name, "-d", "--mount", str(project))
    assert started.code == 0, started.output
    before = len(pypi.requests())
    refused = sh(cage, name, f"{INSTALL} --retries 0 --timeout 5")
    assert refused.code != 0
    assert pypi.requests()[before:] == []
    blocked = cage("egress", name, "--blocked")
    assert "pypi.org" in blocked.stdout and "blocked-host" in blocked.stdout, blocked.output
    # allow --preset opens it live
    allowed = cage("allow", name, "--preset", "python")
    assert allowed.code == 0, allowed.output
    assert "preset python" in allowed.stderr + allowed.stdout
    assert sh(cage, name, INSTALL).code == 0


# --- an npm registry ------------------------------------------------------------------


def npm_package(directory: Path) -> tuple[bytes, str]:
    """greet 1.0.0 as an npm tarball, and its integrity (sha512, base64)."""
    buffer = io.BytesIO()
    files = {
        "package/package.json": json.dumps({"name": "greet", "version": "1.0.0"}),
        "package/index.js": "exports.hello = (who) => `hello ${who}`;\n",
    }
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o644
            archive.addfile(info, io.BytesIO(data))
    tgz = buffer.getvalue()
    return tgz, "sha512-" + base64.b64encode(hashlib.sha512(tgz).digest()).decode()


@pytest.fixture(scope="module")
def npm_registry(tmp_path_factory: pytest.TempPathFactory, test_ca: Path) -> Iterator[Registry]:
    ensure_egress_network()
    work = tmp_path_factory.mktemp("npm")
    tgz, integrity = npm_package(work)
    files = work / "root" / "greet" / "-"
    files.mkdir(parents=True)
    (files / "greet-1.0.0.tgz").write_bytes(tgz)
    url = "https://registry.npmjs.org/greet/-/greet-1.0.0.tgz"
    version = {
        "name": "greet",
        "version": "1.0.0",
        "dist": {"tarball": url, "integrity": integrity},
    }
    packument = {"name": "greet", "dist-tags": {"latest": "1.0.0"}, "versions": {"1.0.0": version}}
    (work / "root" / "greet" / "index.json").write_text(json.dumps(packument))
    (work / "integrity").write_text(integrity)
    work.chmod(0o755)
    registry = start_registry(work / "root", test_ca, NPM_HOSTS)
    try:
        yield registry
    finally:
        subprocess.run(["docker", "rm", "-f", registry.container], capture_output=True)


def test_node_project_installs_with_npm_ci_from_the_preset(
    cage: Cage, tmp_path: Path, npm_registry: Registry, test_ca: Path
) -> None:
    project = tmp_path / "web"
    project.mkdir()
    integrity = (npm_registry.root.parent / "integrity").read_text()
    package = {
        "name": "web",
        "version": "1.0.0",
        "dependencies": {"greet": "1.0.0"},
        "scripts": {"test": "node -e \"require('assert').equal(require('greet')"
                    ".hello('cage'), 'hello cage')\""},
    }  # fmt: skip
    (project / "package.json").write_text(json.dumps(package))
    lock = {
        "name": "web",
        "version": "1.0.0",
        "lockfileVersion": 3,
        "requires": True,
        "packages": {
            "": {"name": "web", "version": "1.0.0", "dependencies": {"greet": "1.0.0"}},
            "node_modules/greet": {
                "version": "1.0.0",
                "resolved": "https://registry.npmjs.org/greet/-/greet-1.0.0.tgz",
                "integrity": integrity,
            },
        },
    }
    (project / "package-lock.json").write_text(json.dumps(lock))
    owned_by_a_user(project)
    cage.env["CAGE_UPSTREAM_CA_CERTS"] = str(test_ca / "ca.pem")
    name = cage.name()
    started = cage("start", "--name", name, "-d", "--allow-preset", "node", "--mount", str(project))
    assert started.code == 0, started.output
    installed = sh(cage, name, "npm ci --no-audit --no-fund && npm test")
    assert installed.code == 0, installed.output
    assert "/greet/-/greet-1.0.0.tgz" in npm_registry.requests()
    cached = sh(cage, name, "ls $npm_config_cache")
    assert cached.stdout.split() and "_cacache" in cached.stdout, cached.output


# --- somewhere to write ---------------------------------------------------------------


def test_a_session_without_a_project_writes_in_its_scratch_directory(cage: Cage) -> None:
    name = cage.name()
    assert cage("start", "--name", name, "--network", "none", "-d").code == 0
    wrote = sh(cage, name, "pwd && echo kept > notes.txt && mkdir -p src && touch src/a.py")
    assert wrote.code == 0, wrote.output
    assert wrote.stdout.strip() == "/workspace"
    assert cage("stop", name).code == 0
    assert cage("start", name, "-d").code == 0
    assert sh(cage, name, "cat /workspace/notes.txt").stdout.strip() == "kept"
    # the image's root stays read-only: only the scratch directory is writable
    assert sh(cage, name, "touch /etc/x").code != 0


def test_a_session_without_a_project_or_data_volume_writes_and_runs_in_workspace(
    cage: Cage,
) -> None:
    name = cage.name()
    assert cage("start", "--name", name, "--network", "none", "--no-persist", "-d").code == 0
    ran = sh(cage, name, "printf '#!/bin/sh\\necho ran\\n' > run.sh && chmod +x run.sh && ./run.sh")
    assert ran.code == 0 and ran.stdout.strip() == "ran", ran.output
