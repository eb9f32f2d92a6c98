"""Secrets never reach an event or an error message: keys named like secrets are masked,
and so are credentials inside URIs. Only the standard library is imported here."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

MASK = "****"

_SECRET_SUBSTRINGS = ("password", "passwd", "secret", "apikey", "authorization")
_SECRET_WORDS = frozenset({"token", "passphrase", "credential", "credentials", "cookie"})
_SECRET_PAIRS = frozenset({("api", "key"), ("private", "key"), ("access", "key")})
_WORD_RE = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")

# scheme://user:PASSWORD@host: the password runs to the last '@' before a blank or quote,
# so an unescaped '@' or '/' in it is masked too.
URI_USERINFO_RE = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:@/\s'\"<>]*:)(?P<pw>[^\s'\"<>]*)@"
)
_URI_QUERY_SECRET_RE = re.compile(
    r"(?P<head>[?&;][^=&\s'\"]*(?:password|secret|token|apikey|api_key)[^=&\s'\"]*=)"
    r"[^&#\s'\"]*",
    re.IGNORECASE,
)


# Tokens of a well-known form, wherever they stand (a transcript line quoting one, a URL
# with one as its user, `https://ghp_...@github.com`): Anthropic's and OpenAI-style keys,
# GitHub's, GitLab's and Slack's tokens, AWS access key ids.
KNOWN_TOKEN_RE = re.compile(
    r"(?<![\w-])(?:sk-ant-[\w-]{12,}|sk-[\w-]{20,}|gh[pousr]_[A-Za-z0-9]{20,}"
    r"|github_pat_\w{20,}|glpat-[\w-]{20,}|xox[abporse]-[\w-]{10,}|AKIA[0-9A-Z]{16}(?!\w))"
)


def mask_tokens(text: str) -> str:
    """Every token of a well-known form in `text` masked."""
    return KNOWN_TOKEN_RE.sub(MASK, text)


def _is_secret_key(key: str) -> bool:
    flat = re.sub(r"[^a-z0-9]", "", key.lower())
    if any(s in flat for s in _SECRET_SUBSTRINGS):
        return True
    words = [w.lower() for w in _WORD_RE.findall(key)]
    if any(w in _SECRET_WORDS for w in words):
        return True
    return any(pair in _SECRET_PAIRS for pair in itertools.pairwise(words))


def mask_uri(uri: str) -> str:
    """`mongodb://user:pass@h/db` -> `mongodb://user:****@h/db`, for every URI in `uri`.

    Passwords-like query parameters (`?password=...`, `&token=...`) are masked too.
    Text without credentials comes back unchanged.
    """
    if "://" not in uri and "=" not in uri:
        return uri
    masked = URI_USERINFO_RE.sub(lambda m: f"{m.group('head')}{MASK}@", uri)
    return _URI_QUERY_SECRET_RE.sub(lambda m: f"{m.group('head')}{MASK}", masked)


def mask_with_password(text: str, uri: str | None) -> str:
    """`mask_uri(text)`, and the password of `uri` masked wherever it appears in `text`
    (an error message may quote it without its URI, escaped or not)."""
    text = mask_uri(text)
    if uri:
        for m in URI_USERINFO_RE.finditer(uri):
            pw = m.group("pw")
            if len(pw) >= 3:
                for form in {pw, unquote(pw)}:
                    text = text.replace(form, MASK)
    return text


# How deep `redact` goes. A session writes its transcripts: a line of nested arrays
# that json.loads takes (some 1,000 deep) would otherwise make redact, json.dumps or the
# OTLP encoding recurse past the interpreter's limit, and `destroy` (which archives it)
# or `events export` end in a traceback. What lies deeper is masked whole.
MAX_DEPTH = 100


def redact(value: Any, _depth: int = 0) -> Any:
    """A copy of `value` with secrets masked, recursively.

    Keys named like api_key/apikey, password, secret, token, authorization (any case, any
    separator: `ANTHROPIC_API_KEY`, `authToken`, `X-Api-Key`) get `"****"` (None stays
    None); every string has URI credentials masked (`mask_uri`). Counters such as
    `input_tokens` are kept: only the singular word `token` marks a secret. Tokens of a
    well-known form (`KNOWN_TOKEN_RE`) are masked in every string. A container nested
    deeper than MAX_DEPTH is `"****"` whole.
    """
    if isinstance(value, Mapping | list | tuple | set | frozenset) and _depth >= MAX_DEPTH:
        return MASK
    if isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            if isinstance(k, str) and _is_secret_key(k):
                out[k] = None if v is None else MASK
            else:
                out[k] = redact(v, _depth + 1)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v, _depth + 1) for v in value]
    if isinstance(value, str):
        return mask_tokens(mask_uri(value))
    return value
