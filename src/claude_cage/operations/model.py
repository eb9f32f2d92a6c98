"""Does the session's model endpoint answer? Asked from inside the session, with the
environment its Claude Code has (ANTHROPIC_BASE_URL, the proxy variables), so the
answer covers the same path: the bridge, the key proxy and its upstream, or the
egress proxy and its allowlist. Any HTTP answer from the model's server counts; the
key proxy's own 502/504 means its upstream did not answer."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from claude_cage import validators
from claude_cage.engine.api import EngineAPI
from claude_cage.errors import CageError
from claude_cage.operations import answer

TIMEOUT_SECONDS = 4
DEFAULT_URL = "https://api.anthropic.com"
_PROBE = (
    f'url="${{ANTHROPIC_BASE_URL:-{DEFAULT_URL}}}"; echo "$url"; '
    "curl -q -sS -o /dev/null -w '%{http_code} %{time_total}\\n' "
    f'--max-time {TIMEOUT_SECONDS} "$url/v1/messages" 2>&1 || true'
)
_GATEWAY = (502, 503, 504)
# curl's words for the proxy's answer to CONNECT: 403 is squid's refusal; a 5xx (500
# for a name it cannot resolve or forward, 503 for a refused connection) means the host
# is allowed but squid could not reach it.
_PROXY_ANSWER = re.compile(r"CONNECT tunnel failed, response (\d{3})")


@dataclass
class ModelCheck:
    ok: bool
    url: str  # what Claude Code in the session talks to
    detail: str
    http_status: int | None = None
    upstream: str | None = None  # where the key proxy forwards, for secretless sessions

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def interpret(output: str, upstream: str | None) -> ModelCheck:
    """Read the probe's output (the URL, then curl's status line or error). Pure."""
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    url = lines[0] if lines else DEFAULT_URL
    proxied = url.startswith("http://127.0.0.1:")
    via = upstream if proxied else None
    last = lines[-1] if len(lines) > 1 else ""
    code_text, _, seconds = last.partition(" ")
    if code_text.isdigit() and code_text != "000":
        code = int(code_text)
        millis = round(float(seconds or 0) * 1000)
        if proxied and code in _GATEWAY:
            return ModelCheck(
                False,
                url,
                f"the key proxy got no answer from {upstream} (HTTP {code}): check "
                "anthropic_upstream, and that the companion can reach it",
                code,
                via,
            )
        return ModelCheck(True, url, f"answers (HTTP {code} in {millis} ms)", code, via)
    error = " ".join(line for line in lines[1:] if not line.startswith("000")) or "no answer"
    error = error.removeprefix("curl: ")
    host = urllib.parse.urlsplit(url).hostname or url
    proxy_said = _PROXY_ANSWER.search(error)
    if "Could not resolve host" in error:
        detail = f"unreachable: the session has no network to reach {url} ({error})"
    elif proxy_said and int(proxy_said.group(1)) >= 500:
        detail = (
            f"{host} is allowed, but the egress proxy could not reach it ({error}): check "
            "this machine's network and DNS (claude-cage egress NAME shows the proxy's reason)"
        )
    elif proxy_said and proxy_said.group(1) == "403" and validators.is_address(host):
        detail = (
            f"the egress proxy refused it ({error}): {host} is an IP address, which the "
            "allowlist never takes; give the model's address as a host name"
        )
    elif proxy_said and proxy_said.group(1) == "403":
        detail = f"the egress proxy refused it ({error}): allow the host with claude-cage allow"
    elif proxy_said:
        detail = f"the egress proxy answered {proxy_said.group(1)} ({error})"
    elif "timed out" in error:
        detail = f"no answer within {TIMEOUT_SECONDS} s ({error})"
    else:
        detail = f"no answer ({error})"
    return ModelCheck(False, url, detail, None, via)


def check(engine: EngineAPI, container: str, upstream: str | None) -> ModelCheck:
    """Probe from inside the running session (about TIMEOUT_SECONDS at most)."""
    try:
        _code, output = answer.probe(
            engine, container, ["sh", "-c", _PROBE], limit=TIMEOUT_SECONDS + answer.PROBE_TIME
        )
    except CageError as exc:
        return ModelCheck(False, "", f"could not probe: {exc.message}")
    return interpret(output.decode(errors="replace"), upstream)


def unreachable(network: str, env: Mapping[str, str]) -> str | None:
    """Why Claude Code in such a session could reach no model at all (else None), for
    `start`: a session with no network reaches a model only if one is served inside it."""
    if network != "none":
        return None
    base = urllib.parse.urlsplit(env.get("ANTHROPIC_BASE_URL", ""))
    if base.hostname in ("localhost", "127.0.0.1", "::1"):
        return None
    return (
        "--network none: Claude Code in this session cannot reach any model. Use "
        "--network filtered (the default: the API through the proxy), or serve a model "
        "inside the session and pass --env ANTHROPIC_BASE_URL=http://127.0.0.1:PORT"
    )
