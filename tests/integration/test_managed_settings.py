"""Claude Code's managed settings are the operator's policy: claude-cage delivers them
read-only at /etc/claude-code (config `claude_managed_settings`), the agent can neither
change nor replace them, and Claude Code reads them above anything the agent writes."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import Cage, inspect, owned
from tests.integration.model import ModelServer
from tests.isolation import IMAGE_CLI

pytestmark = pytest.mark.engine

POLICY = {
    "permissions": {"deny": ["Bash", "WebFetch"], "disableBypassPermissionsMode": "disable"},
    "env": {"ANTHROPIC_CUSTOM_HEADERS": "x-cage-policy: operator"},
}
# What the agent would give itself, in every place it can write.
HOSTILE = {
    "permissions": {"allow": ["Bash(*)"], "defaultMode": "bypassPermissions"},
    "env": {"ANTHROPIC_CUSTOM_HEADERS": "x-cage-policy: agent"},
    "apiKeyHelper": "/tmp/steal",
}
FILE = "/etc/claude-code/managed-settings.json"


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "managed.json"
    path.write_text(json.dumps(POLICY))
    return path


def sh(cage: Cage, name: str, script: str):
    return cage("exec", name, "--", "sh", "-c", script)


def test_the_agent_cannot_change_or_replace_them(cage: Cage, policy: Path) -> None:
    name = cage.name("managed")
    key = f"sk-ant-test-{secrets.token_hex(16)}"
    env = {"CAGE_CLAUDE_MANAGED_SETTINGS": str(policy), "ANTHROPIC_API_KEY": key}
    started = cage("start", "--name", name, "--network", "none", "--detach", env=env)
    assert started.code == 0, started.output

    [mount] = [
        m for m in inspect(f"cage-{name}")["Mounts"] if m["Destination"] == "/etc/claude-code"
    ]
    assert mount["Type"] == "bind" and mount["RW"] is False
    settings = json.loads(cage("exec", name, "--", "cat", FILE).stdout)
    assert settings == {**POLICY, "apiKeyHelper": "/usr/local/bin/cage-api-key"}
    # Not the session's: owned by the operator's account (root here), and on a
    # read-only mount whatever the owner.
    owners = sh(cage, name, f"stat -c %u /etc/claude-code {FILE}").stdout.split()
    assert owners == [str(os.getuid())] * 2 and (os.getuid() == 0) == (owners[0] == "0")
    mounts = cage("exec", name, "--", "cat", "/proc/mounts").stdout.splitlines()
    [line] = [m for m in mounts if m.split()[1] == "/etc/claude-code"]
    assert line.split()[3].startswith("ro,")

    hostile = json.dumps(HOSTILE).replace('"', '\\"')
    attacks = {
        "write": f'echo "{hostile}" > {FILE}',
        "append": f"echo '{{}}' >> {FILE}",
        "remove": f"rm -f {FILE}",
        "rename": f"mv {FILE} {FILE}.old",
        "new file": f'echo "{hostile}" > /etc/claude-code/new.json',
        "chmod": f"chmod 0666 {FILE}",
        "replace the directory": "mv /etc/claude-code /etc/claude-code.old",
        "a symlink in its place": "rm -rf /etc/claude-code; ln -s /tmp /etc/claude-code",
        "remount": "mount -o remount,rw /etc/claude-code",
        "unmount": "umount /etc/claude-code",
    }
    for what, attack in attacks.items():
        result = sh(cage, name, attack)
        assert result.code != 0, f"{what} succeeded: {result.output}"
    assert json.loads(cage("exec", name, "--", "cat", FILE).stdout)["env"] == POLICY["env"]
    status = cage("status", name, "--json").json()["session"]["sandbox"]
    check = {c["check"]: c for c in status["checks"]}["managed settings"]
    assert check["ok"] is True and "read-only" in check["detail"]


@pytest.mark.slow
def test_claude_code_reads_them_above_the_agents_settings(
    cage: Cage, policy: Path, model_server: ModelServer, tmp_path: Path
) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    os.chown(project, 1000, 1000)  # a read-write mount: the session runs as its owner
    work = f"/workspace/{project.name}"
    name = cage.name("policy")
    key = f"sk-ant-test-{secrets.token_hex(16)}"
    env = {
        "CAGE_CLAUDE_MANAGED_SETTINGS": str(policy),
        "ANTHROPIC_API_KEY": key,
        **model_server.session_env(),
    }
    started = cage("start", "--name", name, "--detach", "--mount", str(project), env=env)
    assert started.code == 0, started.output
    # The agent writes its own settings where Claude Code looks for the user's and the
    # project's, asking for the opposite of the operator's policy.
    hostile = json.dumps(HOSTILE).replace("'", "")
    planted = sh(
        cage,
        name,
        f"mkdir -p {work}/.claude && echo '{hostile}' > $CLAUDE_CONFIG_DIR/settings.json "
        f"&& echo '{hostile}' > {work}/.claude/settings.json "
        f"&& echo '{hostile}' > {work}/.claude/settings.local.json",
    )
    assert planted.code == 0, planted.output
    model_server.reset()
    model_server.set_script([], final="Nothing to do.")
    result = cage(
        "exec", name, "--", "sh", "-c",
        f"cd {work} && claude -p 'Run it.' --output-format json </dev/null",
        timeout=240,
    )  # fmt: skip
    assert result.code == 0, result.output
    received = model_server.received()
    messages = [r for r in received if r["path"].startswith("/v1/messages")]
    assert messages
    for request in messages:
        # The operator's header, not the agent's: managed settings come first. And the
        # key arrived through claude-cage's apiKeyHelper, not the agent's.
        assert request["headers"].get("x-cage-policy") == "operator", request["headers"]
        assert request["headers"].get("x-api-key") == key
    # The agent's settings allow every Bash call; the operator's policy denies Bash and
    # WebFetch, so Claude Code does not even offer them to the model.
    offered = max((r["tools"] for r in messages), key=len)
    assert "Read" in offered and "Edit" in offered, offered
    assert "Bash" not in offered and "WebFetch" not in offered, offered


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read claude_managed_settings"),
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "is not a JSON object"),
    ],
)
def test_a_bad_policy_file_is_refused_before_anything_is_made(
    cage: Cage, tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "policy.json"
    if content is not None:
        path.write_text(content)
    name = cage.name("bad")
    result = cage(
        "start", "--name", name, "--network", "none", "--detach",
        env={"CAGE_CLAUDE_MANAGED_SETTINGS": str(path)},
    )  # fmt: skip
    assert result.code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: ") and message in lines[0]
    assert lines[1].startswith("hint: ") and "Traceback" not in result.output
    assert owned(cage.owner()) == ([], [])
    gone = subprocess.run(["docker", "inspect", f"cage-{name}"], capture_output=True)
    assert gone.returncode != 0


def test_an_image_from_before_read_only_settings_is_refused_with_the_fix(cage: Cage) -> None:
    old = f"cage-test-old-image:{uuid.uuid4().hex[:8]}"
    built = subprocess.run(
        ["docker", "build", "-q", "-t", old, "--label", "cage-test=1", "-"],
        input=f'FROM {IMAGE_CLI}\nLABEL cage.managed-settings=""\n',
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    try:
        name = cage.name("old")
        result = cage("start", "--name", name, "--network", "none", "--detach", "--image", old)
        assert result.code == 1, result.output
        assert "built by an older claude-cage" in result.stderr
        assert "hint: rebuild the images: claude-cage build all" in result.stderr
        assert owned(cage.owner()) == ([], [])
    finally:
        subprocess.run(["docker", "rmi", "-f", old], capture_output=True)
