"""Claude Code's managed settings as claude-cage composes and writes them (the mount and
what the agent cannot do are in tests/integration/test_managed_settings.py)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from claude_cage import managed
from claude_cage.credentials import PLACEHOLDER
from claude_cage.errors import BadInput

HELPER = "/usr/local/bin/cage-api-key"
KEY = PLACEHOLDER["api-key"]


def test_operator_policy_plus_claude_cages_own_key_helper(tmp_path: Path) -> None:
    policy = tmp_path / "p.json"
    policy.write_text(json.dumps({"permissions": {"deny": ["Bash"]}, "apiKeyHelper": "/x"}))
    settings = managed.compose(str(policy), "api-key-file")
    assert settings == {"permissions": {"deny": ["Bash"]}, "apiKeyHelper": HELPER}
    # A filtered session's helper prints a placeholder: the proxy adds the real key.
    proxied = managed.compose(str(policy), "api-key-proxy")
    assert proxied == {"permissions": {"deny": ["Bash"]}, "apiKeyHelper": f"echo {KEY}"}
    # Without a key claude-cage adds nothing: the operator's helper stays.
    assert managed.compose(str(policy), "none")["apiKeyHelper"] == "/x"
    assert managed.compose(None, "none") == {}
    assert managed.compose(None, "api-key-file") == {"apiKeyHelper": HELPER}


def test_a_subscription_token_is_a_placeholder_in_claude_codes_env() -> None:
    settings = managed.compose(None, "claude-token-proxy")
    assert settings == {"env": {"CLAUDE_CODE_OAUTH_TOKEN": PLACEHOLDER["claude-token"]}}


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read"), ("{nope", "not valid JSON"), ('"text"', "not a JSON object"),
     (b"\xff\xfe", "not valid JSON"), ("x" * (1024 * 1024 + 1), "larger than 1 MiB")],
)  # fmt: skip
def test_a_bad_policy_file_is_bad_input(
    tmp_path: Path, content: str | bytes | None, message: str
) -> None:
    path = tmp_path / "p.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(BadInput) as raised:
        managed.operator_settings(str(path))
    assert message in raised.value.message and raised.value.hint


def test_written_readable_by_the_session_and_replaced_atomically(tmp_path: Path) -> None:
    directory = tmp_path / "sessions" / "web" / "claude-code"
    managed.write(directory, {"a": 1})
    managed.write(directory, {"b": 2})
    target = directory / managed.FILE
    assert json.loads(target.read_text()) == {"b": 2}
    assert stat.S_IMODE(directory.stat().st_mode) == 0o755
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in directory.iterdir()] == [managed.FILE]  # no temporary left
