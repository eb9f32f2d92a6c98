"""The user's Claude Code setup as it is copied (userconfig.py): what is left out, what
is kept, the files' modes, and the session's Claude Code state."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from claude_cage import config as config_mod
from claude_cage import userconfig
from claude_cage.errors import BadInput


def test_settings_lose_credential_helpers_secrets_and_host_paths() -> None:
    left_out: list[str] = []
    cleaned = userconfig.clean_settings(
        {
            "model": "opus",
            "apiKeyHelper": "/Users/me/key.sh",
            "awsAuthRefresh": "aws sso login",
            "awsCredentialExport": "x",
            "otelHeadersHelper": "/opt/h",
            "env": {
                "EDITOR": "vim",
                "GITHUB_TOKEN": "t",
                "HTTPS_PROXY": "http://x",
                "Api_Key": "k",
            },
            "permissions": {"allow": ["Bash(ls)"], "additionalDirectories": ["/Users/me/x"]},
            "statusLine": {"type": "command", "command": "~/.claude/status.sh"},
            "hooks": {
                "PreToolUse": [
                    {"matcher": "Bash", "hooks": [{"type": "command", "command": "$HOME/h.sh"}]},
                    {"matcher": "Edit", "hooks": [{"type": "command", "command": "npx prettier"}]},
                ]
            },
        },
        left_out,
    )
    assert cleaned == {
        "model": "opus",
        "env": {"EDITOR": "vim"},
        "permissions": {"allow": ["Bash(ls)"]},
        "hooks": {
            "PreToolUse": [
                {"matcher": "Edit", "hooks": [{"type": "command", "command": "npx prettier"}]}
            ]
        },
    }
    assert {"apiKeyHelper", "env.GITHUB_TOKEN", "statusLine", "hooks.PreToolUse"} <= set(left_out)


def test_mcp_servers_lose_headers_and_secret_env() -> None:
    left_out: list[str] = []
    servers = userconfig.clean_mcp_servers(
        {
            "gh": {"command": "gh-mcp", "env": {"GH_TOKEN": "t", "LOG": "1"}},
            "web": {"type": "http", "url": "https://m.example.com", "headers": {"A": "b"}},
        },
        left_out,
    )
    assert servers == {
        "gh": {"command": "gh-mcp", "env": {"LOG": "1"}},
        "web": {"type": "http", "url": "https://m.example.com"},
    }
    assert userconfig.stdio_programs(servers) == {"gh": "gh-mcp"}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_URL", "postgres://u:PW@db.example.com/app"),
        ("GITHUB_PAT", "ghp_x"),
        ("GPG_PASSPHRASE", "p"),
        ("SENTRY_DSN", "https://k@o1.ingest.sentry.io/1"),
        ("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T/B/X"),
        ("DB_PWD", "p"),
        ("ANTHROPIC_CUSTOM_HEADERS", "x-api-key: sk-1"),
        ("SERVICE", "https://api.example.com/v1?access_token=abc"),
        ("EXTRA", "Authorization: Bearer abc"),
        # a credential under a harmless name
        ("GH", "ghp_0123456789abcdefghij"),
        ("NOTIFY", "https://hooks.slack.com/services/T0/B0/XYZ"),
        ("RUN_ARGS", "-e OPENAI_API_KEY=sk-1 --rm"),
    ],
)
def test_env_entries_carrying_a_secret_are_left_out(name: str, value: str) -> None:
    left_out: list[str] = []
    env = {name: value, "EDITOR": "vim", "PYTHONPATH": "/opt/lib", "SITE": "https://x.org/"}
    cleaned = userconfig.clean_settings({"env": env}, left_out)
    assert cleaned["env"] == {"EDITOR": "vim", "PYTHONPATH": "/opt/lib", "SITE": "https://x.org/"}
    assert left_out == [f"env.{name}"]
    servers = userconfig.clean_mcp_servers({"s": {"command": "s-mcp", "env": env}}, [])
    assert name not in servers["s"]["env"]


@pytest.mark.parametrize(
    "command",
    [
        "curl -H 'Authorization: Bearer abc' https://x.example.com",
        "notify --token abc",
        "curl https://u:pw@hooks.example.com/x",
        "curl 'https://x.example.com/h?api_key=abc'",
        "GITHUB_TOKEN=ghp_x gh api /notifications",
        "env SLACK_BOT=1 API_KEY=abc notify",
        "curl -d done https://hooks.slack.com/services/T0/B0/XYZ",
        "curl -d done https://discord.com/api/webhooks/1/abc",
    ],
)
def test_hook_and_status_commands_carrying_a_secret_are_left_out(command: str) -> None:
    left_out: list[str] = []
    hook = {"type": "command", "command": command}
    cleaned = userconfig.clean_settings(
        {
            "statusLine": hook,
            "hooks": {"Stop": [{"hooks": [hook, {"type": "command", "command": "echo ok"}]}]},
        },
        left_out,
    )
    assert cleaned == {"hooks": {"Stop": [{"hooks": [{"type": "command", "command": "echo ok"}]}]}}
    assert command not in json.dumps(cleaned)
    assert set(left_out) == {"statusLine", "hooks.Stop"}


@pytest.mark.parametrize(
    "server",
    [
        {"command": "gh-mcp", "args": ["--token", "ghp_x"]},
        {"command": "gh-mcp", "args": ["--api-key=abc"]},
        {"command": "db-mcp", "args": ["postgres://u:pw@db/app"]},
        {"type": "http", "url": "https://m.example.com/mcp?api_key=abc"},
        {"type": "sse", "url": "https://u:pw@m.example.com/sse"},
        # GitHub's MCP server as often configured: the token in docker's arguments
        {"command": "docker", "args": ["-e", "GITHUB_PERSONAL_ACCESS_TOKEN=ghp_x", "ghcr.io/gh"]},
        {"command": "env", "args": ["API_KEY=abc", "node", "server.js"]},
        {"command": "srv", "args": ["xoxb-0123456789-abcdefgh"]},
        {"type": "http", "url": "https://m.example.com/mcp/github_pat_11ABCDEFG0123456789"},
    ],
)
def test_mcp_servers_carrying_a_secret_are_left_out_whole(server: dict[str, object]) -> None:
    left_out: list[str] = []
    kept = {"fs": {"command": "npx", "args": ["-y", "@mcp/server-filesystem", "/workspace"]}}
    servers = userconfig.clean_mcp_servers({"bad": server, **kept}, left_out)
    assert servers == kept
    assert left_out == ["mcpServers.bad"]


def test_write_copies_the_named_entries_only(tmp_path: Path) -> None:
    home = tmp_path / ".claude"
    (home / "agents").mkdir(parents=True)
    (home / "CLAUDE.md").write_text("be brief\n")
    (home / "agents" / "a.md").write_text("agent\n")
    (home / ".credentials.json").write_text('{"token": "secret"}')
    (home / "settings.json").write_text('{"apiKeyHelper": "x", "model": "opus"}')
    (tmp_path / ".claude.json").write_text(
        json.dumps({"primaryApiKey": "sk", "theme": "light", "mcpServers": {"s": {"command": "c"}}})
    )
    target = tmp_path / "session" / "user-claude"
    carried = userconfig.write(target, home)
    assert sorted(p.name for p in target.iterdir()) == sorted(
        [*userconfig.FILES, *userconfig.DIRECTORIES]
    )
    assert (target / "CLAUDE.md").read_text() == "be brief\n"
    assert json.loads((target / "settings.json").read_text()) == {"model": "opus"}
    assert (target / "agents" / "a.md").stat().st_mode & 0o777 == 0o644
    assert (target / "skills").is_dir() and not list((target / "skills").iterdir())
    assert "secret" not in "".join(p.read_text() for p in target.rglob("*") if p.is_file())
    assert carried.theme == "light" and carried.mcp_servers == {"s": {"command": "c"}}
    # Again with nothing: every entry is there, empty (the container's mounts stay).
    assert userconfig.write(target, None).mcp_servers == {}
    assert (target / "CLAUDE.md").read_text() == "" and not list((target / "agents").iterdir())


def test_hidden_and_special_files_and_links_to_them_stay_out(tmp_path: Path) -> None:
    """A skill's `.env`, a cloned skill's `.git/config` with a token in its remote, a
    link to `.credentials.json` under a harmless name, a fifo and a link to a device are
    not copied; a skill linked in from elsewhere (a dotfiles repository) is."""
    home = tmp_path / ".claude"
    skill = home / "skills" / "deploy"
    skill.mkdir(parents=True)
    (skill / "SKILL.md").write_text("deploy\n")
    (skill / ".env").write_text("API_TOKEN=secret-env\n")
    (home / "skills" / ".git").mkdir()
    (home / "skills" / ".git" / "config").write_text("url = https://u:secret-git@x/y\n")
    (home / ".credentials.json").write_text('{"token": "secret-cred"}')
    (home / "agents").mkdir()
    (home / "agents" / "notes.md").symlink_to(home / ".credentials.json")
    elsewhere = tmp_path / "dotfiles" / "review"
    elsewhere.mkdir(parents=True)
    (elsewhere / "SKILL.md").write_text("review\n")
    (home / "skills" / "review").symlink_to(elsewhere)
    os.mkfifo(home / "skills" / "pipe.md")  # would hold the start
    (home / "commands").mkdir()
    (home / "commands" / "zero.md").symlink_to("/dev/zero")  # would fill the disk
    target = tmp_path / "session" / "user-claude"
    userconfig.write(target, home)
    copied = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert [p for p in copied if "/" in p] == ["skills/deploy/SKILL.md", "skills/review/SKILL.md"]
    assert "secret" not in "".join((target / p).read_text() for p in copied)


def test_a_damaged_settings_file_is_refused_with_the_way_out(tmp_path: Path) -> None:
    (tmp_path / "settings.json").write_text("{not json")
    with pytest.raises(BadInput) as caught:
        userconfig.write(tmp_path / "out", tmp_path)
    assert "--no-user-config" in (caught.value.hint or "")


def test_seed_state_keeps_claude_codes_own_and_trusts_the_project() -> None:
    carried = userconfig.Carried(mcp_servers={"s": {"command": "c"}}, theme=None)
    state = userconfig.seed_state(
        {"numStartups": 3, "projects": {"/workspace/p": {"history": [1]}}},
        carried,
        ["/workspace/p", "/workspace"],
    )
    assert state["numStartups"] == 3 and state["hasCompletedOnboarding"]
    assert state["theme"] == "dark" and state["mcpServers"] == {"s": {"command": "c"}}
    assert state["projects"]["/workspace/p"] == {
        "history": [1],
        "hasTrustDialogAccepted": True,
        "hasCompletedProjectOnboarding": True,
    }


@pytest.mark.parametrize(("value", "expected"), [(False, "off"), ("off", "off"), ("~/c", "~/c")])
def test_claude_config_is_a_path_or_off(value: object, expected: str) -> None:
    cfg = config_mod.Config()
    assert cfg.check({"claude_config": value}, "test") == {"claude_config": expected}
    assert userconfig.source(expected) == (None if expected == "off" else Path.home() / "c")
