"""The user's own Claude Code setup, carried into a session, read-only.

At every start of a session that carries it (config `claude_config`, default
~/.claude; `off` or `start --no-user-config`: nothing), claude-cage copies from the
user's Claude Code directory `CLAUDE.md`, `settings.json` (cleaned, see
`clean_settings`), `agents/`, `commands/`, `skills/` and `output-styles/` into the
session's directory on the host (sessions/NAME/user-claude/), and binds each entry
read-only over the same name in the session's ~/.claude (its data volume, which stays
writable for Claude Code's own state). Inside, the agent can read them but neither
change, replace nor remove them (EROFS; a mount point cannot be renamed: EBUSY). Every
entry is bound, empty when the user has none, so the container's mounts never change
and a restart shows the setup of that moment.

From ~/.claude.json (beside the directory, or inside it) only the user-scope MCP
servers (`mcpServers`) and the theme are taken, and written with the onboarding marks
(`seed_state`) into the session's own, writable ~/.claude/.claude.json. Never copied:
`.credentials.json`, any other file of either, the OAuth account, API keys and tokens
of ~/.claude.json, the headers of remote MCP servers (their credentials belong in
`claude-cage secret set`), any MCP server, hook or status line whose command,
arguments or url carries a credential (`carries_credential`), and the settings and environment
entries listed below.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from claude_cage.errors import BadInput, file_error
from claude_cage.record import Mount

OFF = "off"
DIRECTORY = "user-claude"  # in the session's directory on the host
FILES = ("CLAUDE.md", "settings.json")
DIRECTORIES = ("agents", "commands", "skills", "output-styles")
STATE_FILE = ".claude.json"

# settings.json keys left out, and why:
#   apiKeyHelper, awsAuthRefresh, awsCredentialExport, otelHeadersHelper: host commands
#     that produce credentials; the session gets its own from claude-cage.
#   permissions.additionalDirectories: host paths, which do not exist in the session.
DROPPED_SETTINGS = ("apiKeyHelper", "awsAuthRefresh", "awsCredentialExport", "otelHeadersHelper")
# env entries left out: names that look like secrets, and the variables the session
# itself sets (its proxy, its CA bundle, its config directory, its model endpoint).
SECRET_NAME = re.compile(
    r"KEY|TOKEN|SECRET|PASSW|PASSPHRASE|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE|WEBHOOK"
    r"|CUSTOM_HEADERS|(^|_)(PAT|PWD|PASS|DSN)(_|$)",
    re.I,
)
# Text that carries a credential, wherever it is (env values, hook and status line
# commands, MCP server commands, arguments and urls): a url with user:password@, a
# query parameter named like a credential, an HTTP credential header, a credential flag.
SECRET_TEXT = re.compile(
    r"[a-z][\w+.-]*://[^/\s:@]+:[^/\s@]+@"
    r"|[?&][\w.-]*(token|key|secret|passw|pwd|auth|sig|signature|credential)[\w.-]*="
    r"|\b(authorization|proxy-authorization|x-api-key|api-key|x-auth-token|cookie)\s*:"
    r"|\bbearer\s+\S"
    r"|(^|\s)--?[\w-]*(token|api[-_]?key|secret|passw|passphrase|credential|auth)[\w-]*(=|\s|$)"
    # a token of a well-known form, whatever carries it, and webhook urls (the url is
    # the credential)
    r"|(^|[^\w-])(sk-ant-|sk-|ghp_|gho_|ghu_|ghs_|ghr_|github_pat_|glpat-|xox[abporse]-)[\w-]{12}"
    r"|\bAKIA[0-9A-Z]{16}\b"
    r"|\bhooks\.slack\.com/(services|workflows|triggers)/|\bdiscord(app)?\.com/api/webhooks/",
    re.I,
)
# A shell-style assignment (`GITHUB_TOKEN=ghp_... cmd`, `docker run -e API_KEY=...`,
# `env TOKEN=... server`): a credential when its name is one SECRET_NAME leaves out.
ASSIGNMENT = re.compile(r"(?:^|[\s'\"`;&|(])([A-Za-z_]\w*)=")


def carries_credential(text: str) -> bool:
    """Text (an env value, a hook, status line or MCP server command, argument or url)
    that carries a credential: SECRET_TEXT, or an assignment to a secret's name."""
    return bool(SECRET_TEXT.search(text)) or any(
        SECRET_NAME.search(name) for name in ASSIGNMENT.findall(text)
    )


SESSION_VARS = frozenset(
    {
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "ALL_PROXY",
        "NODE_EXTRA_CA_CERTS",
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "CLAUDE_CONFIG_DIR",
        "ANTHROPIC_BASE_URL",
        "HOME",
        "PATH",
    }
)
# Text of a hook or status line command that names the user's home on the host.
HOST_HOME = re.compile(r"(^|[\s'\"=:])(~/|\$HOME\b|\$\{HOME\}|/Users/|/home/)")


@dataclass
class Carried:
    """What a start carried in: the user-scope MCP servers (cleaned), the theme, and
    what was left out (setting names, for the README's promise and the tests)."""

    mcp_servers: dict[str, Any] = field(default_factory=dict)
    theme: str | None = None
    left_out: list[str] = field(default_factory=list)


def source(value: str | None) -> Path | None:
    """The user's Claude Code directory named by config `claude_config`, or None (off)."""
    if value in (None, "", OFF):
        return None
    return Path(str(value)).expanduser()


def _clean_env(env: Any, where: str, left_out: list[str]) -> dict[str, str]:
    if not isinstance(env, dict):
        return {}
    kept = {}
    for key, value in env.items():
        if (
            SECRET_NAME.search(str(key))
            or str(key).upper() in SESSION_VARS
            or carries_credential(str(value))
        ):
            left_out.append(f"{where}.{key}")
        else:
            kept[str(key)] = value
    return kept


def clean_settings(settings: dict[str, Any], left_out: list[str]) -> dict[str, Any]:
    """settings.json without credential helpers, secret-looking or session-owned env
    entries, host directories, and hook or status line commands naming the host's home."""
    cleaned = dict(settings)
    for key in DROPPED_SETTINGS:
        if cleaned.pop(key, None) is not None:
            left_out.append(key)
    if "env" in cleaned:
        cleaned["env"] = _clean_env(cleaned["env"], "env", left_out)
    permissions = cleaned.get("permissions")
    if isinstance(permissions, dict) and "additionalDirectories" in permissions:
        cleaned["permissions"] = {
            k: v for k, v in permissions.items() if k != "additionalDirectories"
        }
        left_out.append("permissions.additionalDirectories")
    status = cleaned.get("statusLine")
    if isinstance(status, dict) and _unsafe_command(status.get("command")):
        del cleaned["statusLine"]
        left_out.append("statusLine")
    if isinstance(cleaned.get("hooks"), dict):
        cleaned["hooks"] = _clean_hooks(cleaned["hooks"], left_out)
    return cleaned


def _unsafe_command(command: Any) -> bool:
    """A hook or status line command that names the host's home or carries a credential."""
    text = str(command or "")
    return bool(HOST_HOME.search(text)) or carries_credential(text)


def _carries_secret(server: dict[str, Any]) -> bool:
    """An MCP server whose command, arguments or url carry a credential."""
    args = server.get("args")
    words = [str(a) for a in args] if isinstance(args, list) else [str(args or "")]
    texts = [str(server.get("command") or ""), " ".join(words), str(server.get("url") or "")]
    return any(carries_credential(text) for text in texts)


def _clean_hooks(hooks: dict[str, Any], left_out: list[str]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for event, matchers in hooks.items():
        if not isinstance(matchers, list):
            continue
        kept_matchers = []
        for matcher in matchers:
            if not isinstance(matcher, dict):
                continue
            commands = [
                hook
                for hook in matcher.get("hooks", [])
                if isinstance(hook, dict) and not _unsafe_command(hook.get("command"))
            ]
            if len(commands) != len(matcher.get("hooks", [])):
                left_out.append(f"hooks.{event}")
            if commands:
                kept_matchers.append({**matcher, "hooks": commands})
        if kept_matchers:
            kept[event] = kept_matchers
    return kept


def clean_mcp_servers(servers: Any, left_out: list[str]) -> dict[str, Any]:
    """User-scope MCP servers: stdio ones without secret-looking env entries, remote
    ones (http, sse) without their headers or header helpers (credentials go through
    the proxy: `claude-cage secret set`); a server whose command, arguments or url
    carry a credential is left out whole."""
    if not isinstance(servers, dict):
        return {}
    kept = {}
    for name, server in servers.items():
        if not isinstance(server, dict):
            continue
        if _carries_secret(server):
            left_out.append(f"mcpServers.{name}")
            continue
        server = dict(server)
        for key in ("headers", "headersHelper", "oauth"):
            if server.pop(key, None) is not None:
                left_out.append(f"mcpServers.{name}.{key}")
        if "env" in server:
            server["env"] = _clean_env(server["env"], f"mcpServers.{name}.env", left_out)
        kept[str(name)] = server
    return kept


def stdio_programs(servers: dict[str, Any]) -> dict[str, str]:
    """The program each stdio MCP server runs, by server name."""
    return {
        name: str(server["command"])
        for name, server in servers.items()
        if server.get("type", "stdio") == "stdio" and server.get("command")
    }


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror}", _HINT) from None
    except (ValueError, UnicodeDecodeError):
        raise BadInput(f"{path} is not valid JSON", _HINT) from None
    if not isinstance(data, dict):
        raise BadInput(f"{path} is not a JSON object", _HINT)
    return data


_HINT = "fix the file, or start without your setup: --no-user-config (config claude_config: off)"


def _user_state(home: Path) -> dict[str, Any]:
    """The user's ~/.claude.json: beside the directory (the default layout), or inside it
    (a CLAUDE_CONFIG_DIR)."""
    for candidate in (home.parent / STATE_FILE, home / STATE_FILE):
        if candidate.is_file():
            return _read_json(candidate)
    return {}


def _left_out(directory: str, names: list[str]) -> set[str]:
    """What of `directory` is not copied: hidden entries (a skill's `.env`, a cloned
    skill's `.git/config` with a token in its remote), links to a hidden file (such as
    `~/.claude/.credentials.json`), and what is neither a file nor a folder (a fifo or a
    device would hold the start, or fill the disk). Other links are followed: a setup
    kept elsewhere (a dotfiles repository) is linked in."""
    return {name for name in names if name.startswith(".") or not _plain(Path(directory, name))}


def _plain(path: Path) -> bool:
    target = path.resolve()
    return not target.name.startswith(".") and (target.is_file() or target.is_dir())


def _copy_tree(src: Path, dst: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dst, symlinks=False, ignore=_left_out, ignore_dangling_symlinks=True)
    else:
        dst.mkdir()
    for root, _dirs, files in os.walk(dst):
        os.chmod(root, 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)


def write(directory: Path, home: Path | None) -> Carried:
    """Fill `directory` with the user's setup from `home` (None: every entry empty), made
    afresh; return what else the session gets (MCP servers, theme)."""
    carried = Carried()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o755)
        staging = Path(tempfile.mkdtemp(dir=directory, prefix=".new-"))
        try:
            for name in FILES:
                text = ""
                if home is not None and (home / name).is_file():
                    text = (home / name).read_text(encoding="utf-8", errors="replace")
                if name == "settings.json":
                    raw = _read_json(home / name) if home is not None else {}
                    text = json.dumps(clean_settings(raw, carried.left_out), indent=2) + "\n"
                (staging / name).write_text(text, encoding="utf-8")
                (staging / name).chmod(0o644)
            for name in DIRECTORIES:
                _copy_tree(home / name if home is not None else staging / ".none", staging / name)
            for name in (*FILES, *DIRECTORIES):
                old = directory / name
                if old.is_dir() and not old.is_symlink():
                    shutil.rmtree(old)
                os.replace(staging / name, old)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except OSError as exc:
        raise file_error(exc, directory) from None
    if home is not None:
        state = _user_state(home)
        carried.mcp_servers = clean_mcp_servers(state.get("mcpServers"), carried.left_out)
        theme = state.get("theme")
        carried.theme = theme if isinstance(theme, str) else None
    return carried


def binds(directory: Path, config_dir: str) -> list[Mount]:
    """Each entry of `directory`, read-only over its name in the session's ~/.claude."""
    return [
        Mount(str(directory / name), f"{config_dir}/{name}", read_only=True)
        for name in (*FILES, *DIRECTORIES)
    ]


def seed_state(state: dict[str, Any], carried: Carried, projects: list[str]) -> dict[str, Any]:
    """The session's ~/.claude/.claude.json with the onboarding done (theme, notices,
    trust in the project directories) and the user's MCP servers; Claude Code's own
    state in it is kept."""
    state = dict(state)
    state["hasCompletedOnboarding"] = True
    state["theme"] = carried.theme or state.get("theme") or "dark"
    state["bypassPermissionsModeAccepted"] = state.get("bypassPermissionsModeAccepted", False)
    known = state.get("projects")
    known = dict(known) if isinstance(known, dict) else {}
    for project in projects:
        entry = known.get(project)
        entry = dict(entry) if isinstance(entry, dict) else {}
        entry.update(hasTrustDialogAccepted=True, hasCompletedProjectOnboarding=True)
        known[project] = entry
    state["projects"] = known
    state["mcpServers"] = carried.mcp_servers
    return state
