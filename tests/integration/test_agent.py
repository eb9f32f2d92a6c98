"""Claude Code itself, end to end: a real agent run in a filtered session with every
hardening in place, against the scripted model server under the real API host name.

The model makes Claude Code call Write, Read, Edit and Bash in the mounted project, and
one Bash call tries a host the allowlist does not name. The checks are on what the host
sees: the files in the project, the blocked request in `egress`, and which credential
reached the model server.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import Cage, docker_json
from tests.integration.model import ModelServer, agent_script
from tests.isolation import IMAGE_CLI

pytestmark = pytest.mark.engine

PLACEHOLDER = "sk-ant-cage-placeholder"


def inspect_image(image: str) -> dict:
    return docker_json("image", "inspect", image)[0]  # type: ignore[index]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = tmp_path / "proj"
    path.mkdir()
    os.chown(path, 1000, 1000)  # a read-write mount: the session runs as its owner
    return path


def run_agent(
    cage: Cage, model_server: ModelServer, project: Path, key: str, blocked: str
) -> tuple[str, object]:
    """Start a session on `project`, run `claude -p` in it; (session name, exec result)."""
    name = cage.name("agent")
    started = cage(
        "start",
        "--name",
        name,
        "--detach",
        "--mount",
        str(project),
        env={"ANTHROPIC_API_KEY": key, **model_server.session_env()},
    )
    assert started.code == 0, started.output
    status = cage("status", name, "--json").json()["session"]
    assert status["network"] == "filtered"
    assert status["sandbox"]["ok"], status["sandbox"]
    checks = {c["check"]: c for c in status["sandbox"]["checks"]}
    assert checks["runtime"]["ok"] and checks["runtime"]["detail"].startswith(
        cage.env["CAGE_RUNTIME"]
    )
    model_server.reset()
    model_server.set_script(agent_script(f"/workspace/{project.name}", blocked))
    result = cage(
        "exec",
        name,
        "--",
        "bash",
        "-c",
        f"cd /workspace/{project.name} && "
        "claude -p 'Update the notes.' --dangerously-skip-permissions --output-format json"
        " </dev/null",
        timeout=240,
    )
    return name, result


@pytest.mark.slow
def test_claude_code_does_real_work_in_a_hardened_filtered_session(
    cage: Cage, model_server: ModelServer, project: Path, runtime: str
) -> None:
    key = f"sk-ant-test-{secrets.token_hex(16)}"
    blocked = f"exfil-{uuid.uuid4().hex[:8]}.example.net"
    name, result = run_agent(cage, model_server, project, key, blocked)
    assert result.code == 0, result.output
    assert '"is_error":false' in result.stdout.replace(" ", ""), result.stdout

    # Write, Read and Edit reached the project on the host; Bash ran in it.
    assert (project / "notes.txt").read_text() == "edited from the cage\n"
    assert (project / "size.txt").read_text().strip() == "21"

    received = model_server.received()
    agent = [r for r in received if r["kind"] == "agent"]
    assert [r["turn"] for r in agent] == [0, 1, 2, 3, 4, 5], [r["turn"] for r in agent]
    results = [r["tool_results"] for r in agent[1:]]
    assert all(len(r) == 1 and not r[0]["is_error"] for r in results), results
    read, bash, curl = results[1][0]["content"], results[3][0]["content"], results[4][0]["content"]
    assert "hello from the cage" in read
    # The agent's own tool call runs as uid 1000 with no privileges; on runc the host's
    # kernel filters its syscalls, on runsc gVisor's kernel answers them.
    assert "uid=1000" in bash and "CapEff: 0000000000000000" in bash, bash
    if runtime == "runsc":
        assert "Starting gVisor" in bash, bash
    else:
        assert "Seccomp: 2" in bash and "NoNewPrivs: 1" in bash, bash
        assert "Operation not permitted" in bash, bash  # dmesg: syslog(2) is not allowed
    # The host that is not allowed: the proxy refused the tunnel (curl exit 56).
    assert "proxy=403" in curl and "exit=56" in curl, curl

    egress = cage("egress", name, "--blocked", "--json").json()["requests"]
    assert [r for r in egress if r["host"] == blocked and not r["allowed"]], egress

    # Every model call carried the real key, added outside the session; never the
    # placeholder Claude Code holds, and no other credential.
    messages = [r for r in received if r["path"].startswith("/v1/messages")]
    assert messages
    for request in messages:
        assert request["headers"].get("x-api-key") == key, request["headers"]
        assert "authorization" not in request["headers"]
        assert PLACEHOLDER not in str(request["headers"])
        assert request["path"] == "/v1/messages?beta=true"
        assert request["stream"] is True


def test_the_image_holds_the_native_release_its_label_names() -> None:
    labels = inspect_image(IMAGE_CLI)["Config"]["Labels"]
    release = labels["cage.claude-code-version"]
    script = (
        "claude --version; readlink -f /usr/local/bin/claude; "
        "head -c 4 $(readlink -f /usr/local/bin/claude) | od -An -c; "
        "ls /usr/local/lib/node_modules/@anthropic-ai 2>&1"
    )
    run = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--user", "1000:1000", "--read-only",
         "--tmpfs", "/home/claude:uid=1000", "--tmpfs", "/run/cage:uid=1000",
         "--entrypoint", "sh", IMAGE_CLI, "-c", script],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lines = run.stdout.splitlines()
    assert lines[0] == f"{release} (Claude Code)", run.stdout + run.stderr
    assert lines[1] == "/opt/claude-code/claude"
    assert lines[2].split() == ["177", "E", "L", "F"]  # the native binary, not the JS wrapper
    assert "No such file" in lines[3]  # no npm wrapper whose postinstall could have failed
