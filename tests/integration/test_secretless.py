"""Secretless sessions: the API key stays in the companion, which adds it on the way
to the upstream. The upstream here is the tests' own recording server."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import Cage, inspect
from tests.integration.conftest import TestHost

pytestmark = pytest.mark.engine

UPSTREAM = "http://upstream.test"


def new_key() -> str:
    return f"sk-ant-test-{secrets.token_hex(16)}"


def sh(cage: Cage, name: str, script: str, timeout: float = 60):
    return cage("exec", name, "--", "bash", "-c", script, timeout=timeout)


def api_request(cage: Cage, name: str, marker: str) -> str:
    """A request from inside the session to its API endpoint, as Claude Code sends one."""
    result = sh(
        cage,
        name,
        "curl -s -m 20 -o /dev/null -w '%{http_code}' "
        f"-H 'x-api-key: sk-ant-cage-placeholder' http://127.0.0.1:8082/v1/{marker}",
    )
    return result.stdout.strip()


def received(host: TestHost, marker: str) -> list[dict]:
    return [r for r in host.received() if marker in r["path"]]


@pytest.fixture(scope="module")
def key_and_session(cage_module: Cage, test_hosts: dict[str, TestHost]) -> tuple[str, str]:
    key = new_key()
    name = cage_module.name("secretless")
    result = cage_module(
        "start",
        "--name",
        name,
        "--detach",
        "--allow-host",
        "allowed.test",
        env={"ANTHROPIC_API_KEY": key, "CAGE_ANTHROPIC_UPSTREAM": UPSTREAM},
    )
    assert result.code == 0, result.output
    assert key not in result.output
    return key, name


def test_request_reaches_upstream_with_the_real_key(
    cage_module: Cage, key_and_session, test_hosts: dict[str, TestHost]
) -> None:
    key, name = key_and_session
    marker = uuid.uuid4().hex
    assert api_request(cage_module, name, marker) == "200"
    [request] = received(test_hosts["upstream.test"], marker)
    assert request["headers"]["x-api-key"] == key
    assert "authorization" not in request["headers"]


def test_claude_code_itself_uses_the_proxy(
    cage_module: Cage, key_and_session, test_hosts: dict[str, TestHost]
) -> None:
    key, name = key_and_session
    before = len(test_hosts["upstream.test"].received())
    sh(cage_module, name, "timeout 60 claude -p hello </dev/null >/dev/null 2>&1; true", timeout=90)
    calls = test_hosts["upstream.test"].received()[before:]
    messages = [c for c in calls if c["path"].startswith("/v1/messages")]
    assert messages, [c["path"] for c in calls]
    assert all(c["headers"].get("x-api-key") == key for c in messages)


def test_streamed_response_arrives_in_chunks_with_the_upstream_pace(
    cage_module: Cage, key_and_session
) -> None:
    _, name = key_and_session
    client = (
        "const http=require('http');const t0=Date.now();const times=[];"
        "const req=http.request({host:'127.0.0.1',port:8082,path:'/v1/messages',method:'POST',"
        "headers:{'content-type':'application/json','x-api-key':'placeholder'}},res=>{"
        "res.on('data',()=>times.push(Date.now()-t0));"
        "res.on('end',()=>console.log(JSON.stringify({status:res.statusCode,times})))});"
        "req.end('{\"stream\":true}');"
    )
    result = cage_module("exec", name, "--", "node", "-e", client)
    report = json.loads(result.stdout)
    assert report["status"] == 200
    times = report["times"]
    assert len(times) >= 4, times  # not one buffered blob
    assert times[0] < 1000, times  # the first chunk does not wait for the last
    assert times[-1] - times[0] >= 900, times  # spread like the upstream's 5 x 0.3 s


def test_key_is_nowhere_in_the_session_or_inspect(cage_module: Cage, key_and_session) -> None:
    key, name = key_and_session
    for container in (f"cage-{name}", f"companion-cage-{name}"):
        raw = subprocess.run(
            ["docker", "inspect", container], capture_output=True, text=True, check=True
        ).stdout
        assert key not in raw, f"key in docker inspect {container}"
    # The session's whole filesystem, as the host sees it (tmpfs and volumes included).
    pids = subprocess.run(
        ["docker", "top", f"cage-{name}", "-o", "pid"], capture_output=True, text=True, check=True
    ).stdout.split()[1:]
    root = f"/proc/{pids[0]}/root"
    grep = subprocess.run(
        [
            "grep",
            "-rlsF",
            "--exclude-dir=proc",
            "--exclude-dir=sys",
            "--exclude-dir=dev",
            key,
            f"{root}/",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert grep.stdout == "", f"key found in: {grep.stdout}"
    assert grep.returncode == 1  # searched, found nothing (2 would be an error)
    assert Path(f"{root}/sock/out").is_dir()  # the shared socket volume was searched too
    for pid in pids:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert key.encode() not in environ
    # And from inside, as the agent: no variable, no helper output holds it.
    inside = sh(
        cage_module, name, "env; cage-api-key; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'"
    )
    assert key not in inside.stdout
    meta = (cage_module.data_dir / "sessions" / name / "metadata").read_text()
    assert key not in meta
    assert key not in cage_module("status", name, "--json").stdout
    key_file = cage_module.data_dir / "sessions" / name / "api_key"
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_other_hosts_never_get_the_key(
    cage_module: Cage, key_and_session, test_hosts: dict[str, TestHost]
) -> None:
    key, name = key_and_session
    marker = uuid.uuid4().hex
    code = sh(
        cage_module,
        name,
        "curl -s -o /dev/null -w '%{http_code}' "
        f"-H 'x-api-key: sk-ant-cage-placeholder' http://allowed.test/{marker}",
    )
    assert code.stdout.strip() == "200"
    [request] = received(test_hosts["allowed.test"], marker)
    assert key not in json.dumps(request)


def test_key_set_rotates_without_restart(
    cage_module: Cage, key_and_session, test_hosts: dict[str, TestHost]
) -> None:
    _, name = key_and_session
    started = inspect(f"cage-{name}")["State"]["StartedAt"]
    rotated = new_key()
    result = cage_module("key", "set", name, input=rotated + "\n")
    assert result.code == 0, result.output
    assert rotated not in result.output
    marker = uuid.uuid4().hex
    assert api_request(cage_module, name, marker) == "200"
    [request] = received(test_hosts["upstream.test"], marker)
    assert request["headers"]["x-api-key"] == rotated
    assert inspect(f"cage-{name}")["State"]["StartedAt"] == started
    assert "api-key" in cage_module("status", name, "--json").json()["session"]["credential"]


def test_upstream_down_or_wrong_gives_a_clear_http_error(
    cage: Cage, test_hosts: dict[str, TestHost]
) -> None:
    for upstream in ("http://denied.test:81", "http://nowhere.invalid"):
        name = cage.name("bad")
        started = cage(
            "start",
            "--name",
            name,
            "--detach",
            env={"ANTHROPIC_API_KEY": new_key(), "CAGE_ANTHROPIC_UPSTREAM": upstream},
        )
        assert started.code == 0, started.output
        began = time.monotonic()
        code = api_request(cage, name, "x")
        assert code in ("502", "503", "504"), (upstream, code)
        assert time.monotonic() - began < 20
        assert cage("destroy", "--force", name).code == 0


def test_a_stopped_secretless_session_starts_again_with_its_key(
    cage: Cage, test_hosts: dict[str, TestHost]
) -> None:
    key, name = new_key(), cage.name("again")
    env = {"ANTHROPIC_API_KEY": key, "CAGE_ANTHROPIC_UPSTREAM": UPSTREAM}
    assert cage("start", "--name", name, "--detach", env=env).code == 0
    assert cage("stop", name).code == 0
    again = cage("start", "--name", name, "--detach", env={"CAGE_ANTHROPIC_UPSTREAM": UPSTREAM})
    assert again.code == 0, again.output
    marker = uuid.uuid4().hex
    assert api_request(cage, name, marker) == "200"
    [request] = received(test_hosts["upstream.test"], marker)
    assert request["headers"]["x-api-key"] == key


def test_upstream_must_be_a_plain_url(cage: Cage) -> None:
    result = cage("start", "--detach", env={"CAGE_ANTHROPIC_UPSTREAM": 'https://x|"; evil'})
    assert result.code == 2 and "anthropic_upstream" in result.stderr
    assert cage("list", "--json").json()["sessions"] == []
