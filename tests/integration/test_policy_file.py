"""The egress policy file on the real engine: method and path rules over HTTPS (the
companion decrypts those hosts), presets that only read, live `policy apply`, and the
layers a session cannot widen: the managed one, and the project file the session holds a
copy of (the host's copy is the one read).

The hosts are the tests' own servers under real names (api.github.com, pypi.org), with
certificates from the test CA that only the companion trusts.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Cage
from tests.integration.conftest import TestHost, make_cert, start_test_host

pytestmark = pytest.mark.engine

READ_ONLY_API = """\
version: 1
rules:
  - action: deny
    host: api.github.com
    methods: [POST, PUT, PATCH, DELETE]
    reason: the GitHub API is read-only for agents here
  - action: allow
    host: api.github.com
  - include: python
"""


@dataclass
class World:
    github: TestHost  # api.github.com and github.com
    pypi: TestHost  # pypi.org and files.pythonhosted.org


@pytest.fixture(scope="module")
def world(cage_module: Cage, test_ca: Path) -> Iterator[World]:
    prefix = uuid.uuid4().hex[:6]
    hosts: list[TestHost] = []
    try:
        hosts.append(
            start_test_host(
                "api.github.com",
                prefix,
                make_cert(test_ca, ("api.github.com", "github.com")),
                aliases=("github.com",),
            )
        )
        hosts.append(
            start_test_host(
                "pypi.org",
                prefix,
                make_cert(test_ca, ("pypi.org", "files.pythonhosted.org")),
                aliases=("files.pythonhosted.org",),
            )
        )
        cage_module.env["CAGE_UPSTREAM_CA_CERTS"] = str(test_ca / "ca.pem")
        yield World(*hosts)
    finally:
        if hosts:
            subprocess.run(
                ["docker", "rm", "-f", *(h.container for h in hosts)], capture_output=True
            )


def write_policy(cage: Cage, text: str) -> Path:
    path = cage.config_dir / "policy.yaml"
    path.write_text(text)
    return path


def curl(cage: Cage, name: str, method: str, url: str) -> tuple[str, str]:
    """(status, body) of one request from inside the session."""
    result = cage(
        "exec",
        name,
        "--",
        "bash",
        "-c",
        f"curl -sS -m 20 -X {method} -o /tmp/body -w '%{{http_code}}' '{url}'; echo; cat /tmp/body",
        timeout=60,
    )
    status, _, body = result.stdout.partition("\n")
    return status.strip() or result.stderr.strip(), body


def received(host: TestHost, marker: str) -> list[dict]:
    return [r for r in host.received() if marker in r["path"]]


def rows(cage: Cage, name: str) -> list[dict]:
    result = cage("egress", name, "--json")
    assert result.code == 0, result.output
    return result.json()["requests"]


@pytest.fixture(scope="module")
def read_only(cage_module: Cage, world: World) -> str:
    write_policy(cage_module, READ_ONLY_API)
    name = cage_module.name("ro")
    result = cage_module("start", "--name", name, "--detach")
    assert result.code == 0, result.output
    return name


def test_get_is_allowed_and_post_refused_with_the_reason(
    cage_module: Cage, world: World, read_only: str
) -> None:
    marker = uuid.uuid4().hex[:8]
    status, _ = curl(cage_module, read_only, "GET", f"https://api.github.com/repos/{marker}")
    assert status == "200"
    status, body = curl(cage_module, read_only, "POST", f"https://api.github.com/x/{marker}p")
    assert status == "403"
    assert "the GitHub API is read-only for agents here" in body
    assert "user:1" in body
    assert [r["method"] for r in received(world.github, marker)] == ["GET"]
    seen = [r for r in rows(cage_module, read_only) if marker in r["path"]]
    assert [(r["method"], r["result"], r["rule"]) for r in seen] == [
        ("GET", "allowed", "user:2"),
        ("POST", "blocked-rule", "user:1"),
    ]
    blocked = cage_module("events", "--type", "egress", "--json")
    assert "user:1" in blocked.output


def test_policy_check_names_the_deciding_rule(cage_module: Cage, read_only: str) -> None:
    allowed = cage_module("policy", "check", read_only, "https://api.github.com/user")
    assert allowed.code == 0, allowed.output
    assert "allowed by user:2" in allowed.stdout
    denied = cage_module(
        "policy", "check", read_only, "https://api.github.com/user", "--method", "post"
    )
    assert denied.code == 1
    assert "denied by user:1" in denied.stdout and "read-only" in denied.stdout
    other = cage_module("policy", "check", read_only, "https://evil.example/x", "--json")
    assert other.code == 1 and other.json()["rule"] == "default"


def test_policy_show_names_layer_file_and_line(cage_module: Cage, read_only: str) -> None:
    shown = cage_module("policy", "show", read_only, "--json")
    assert shown.code == 0, shown.output
    user = next(x for x in shown.json()["layers"] if x["layer"] == "user")
    assert [r["source"].rsplit("/", 1)[1] for r in user["rules"][:3]] == [
        "policy.yaml:3",
        "policy.yaml:7",
        "policy.yaml:9",
    ]
    assert user["rules"][2]["preset"] == "python"


def test_a_registry_preset_refuses_a_publish(
    cage_module: Cage, world: World, read_only: str
) -> None:
    marker = uuid.uuid4().hex[:8]
    status, _ = curl(cage_module, read_only, "GET", f"https://pypi.org/simple/{marker}/")
    assert status == "200"
    for method, url in (
        ("POST", f"https://pypi.org/legacy/?{marker}"),  # twine upload
        ("PUT", f"https://files.pythonhosted.org/{marker}"),  # a publish-style PUT
    ):
        status, body = curl(cage_module, read_only, method, url)
        assert status == "403", (method, status, body)
    assert [r["method"] for r in received(world.pypi, marker)] == ["GET"]
