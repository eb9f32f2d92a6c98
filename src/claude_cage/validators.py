"""How each configuration value is checked: sizes, numbers, choices, host names and
engines. Each check returns the value in its canonical form or raises ValueError with a
message that names the value; config.py maps every key to one of them (VALIDATORS).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import urllib.parse
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any

from claude_cage import presets

# Where each default host comes from (docs/networks.md: what each is for, and who can send to it).
# None of them takes data from anyone without an account: Claude Code runs with error
# reporting (sentry.io), telemetry (statsig) and other non-essential traffic off
# (policy.CLAUDE_CODE_ENV), and npm's registry, which takes `npm publish` from any
# account, is one --allow-host away rather than a default.
#   api.anthropic.com      the Messages API Claude Code calls
#   claude.ai              OAuth login with a Claude subscription
#   console.anthropic.com  OAuth login with an Anthropic Console account
#   platform.claude.com    the Console's new home, used by the login flow
DEFAULT_ALLOWED_HOSTS = [
    "api.anthropic.com",
    "claude.ai",
    "console.anthropic.com",
    "platform.claude.com",
]

_SIZE = re.compile(r"^\d+(\.\d+)?[bkmg]?$", re.IGNORECASE)
_HOST = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")


def parse_size(text: str) -> int:
    """'4g' -> bytes. Raises ValueError on a bad size."""
    text = str(text).strip().lower()
    if not _SIZE.match(text):
        raise ValueError(f"{text!r} is not a size like 512m or 4g")
    units = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
    unit = text[-1] if text[-1] in units else "b"
    number = float(text.rstrip("bkmg")) * units[unit]
    if number == float("inf"):  # more digits than a float holds
        raise ValueError(f"{text!r} is too large a size")
    return int(number)


def choice(kind: type[StrEnum]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        try:
            return kind(value)
        except ValueError:
            raise ValueError(f"must be one of {', '.join(kind)}") from None

    return check


def number(kind: type, low: float, high: float) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        try:
            number = kind(value)
        except (TypeError, ValueError, OverflowError):  # int(.inf): OverflowError
            raise ValueError(f"{value!r} is not a number") from None
        if isinstance(value, bool) or not low <= number <= high:
            raise ValueError(f"must be between {_plain(low)} and {_plain(high)}")
        return number

    return check


def _plain(number: float) -> str:
    """16 -> '16', 1_000_000 -> '1000000' (not '1e+06'), 0.1 -> '0.1'."""
    return str(int(number)) if float(number).is_integer() else str(number)


def size_at_least(minimum: str) -> Callable[[Any], Any]:
    """A size no smaller than `minimum`: Docker and tmpfs read 0 as 'no limit'."""
    floor = parse_size(minimum)

    def check(value: Any) -> Any:
        if parse_size(value) < floor:
            raise ValueError(f"{value!r} is below the minimum of {minimum}")
        return str(value).strip().lower()

    return check


def size_between(minimum: str, maximum: str) -> Callable[[Any], Any]:
    """A size from `minimum` to `maximum`."""
    floor, ceiling = parse_size(minimum), parse_size(maximum)

    def check(value: Any) -> Any:
        if not floor <= parse_size(value) <= ceiling:
            raise ValueError(f"{value!r} is not between {minimum} and {maximum}")
        return str(value).strip().lower()

    return check


def volume_size(value: Any) -> Any:
    """A volume's size limit: 0 for none, else at least 16m (ext4 needs room)."""
    size = parse_size(value)
    if 0 < size < parse_size("16m"):
        raise ValueError(f"{value!r} is below the minimum of 16m (0: no limit)")
    return str(value).strip().lower()


def boolean(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{value!r} is not true or false")


def text(value: Any) -> Any:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty string")
    return value


def optional_text(value: Any) -> Any:
    return None if value in (None, "") else text(value)


def path_or_off(value: Any) -> Any:
    """A path, or "off" (YAML's bare `off` and `false` read as False)."""
    if value is False or (isinstance(value, str) and value.strip().lower() in ("off", "false")):
        return "off"
    if not isinstance(value, str) or not value.strip():
        raise ValueError('must be a path or "off"')
    return value


def auto_or_off(value: Any) -> Any:
    """ "auto" or "off" (YAML's bare `off` and `false` read as False)."""
    if value is False or (isinstance(value, str) and value.strip().lower() in ("off", "false")):
        return "off"
    if value is True or (isinstance(value, str) and value.strip().lower() == "auto"):
        return "auto"
    raise ValueError('must be "auto" or "off"')


HOST_HINT = "use a name under a registrable domain, like api.example.com or *.example.com"


def validate_host(host: str) -> str:
    """A host name or *.suffix pattern under a registrable domain: never an address, a
    public suffix (com, co.uk, github.io) or a pattern over one (*.com, *.co.uk), which
    would open the allowlist to every site under it."""
    host = str(host).strip().lower()
    if is_address(host.removeprefix("*.")):
        raise ValueError(f"{host!r} is an IP address; the allowlist takes host names")
    if not _HOST.match(host) or len(host) > 253:
        raise ValueError(f"{host!r} is not a host name or a *.suffix pattern")
    if host not in DEFAULT_ALLOWED_HOSTS and _public_suffix(host.removeprefix("*.")):
        what = "every host under it" if host.startswith("*.") else "no single site"
        raise ValueError(f"{host!r} covers {what}: {host.removeprefix('*.')} is a public suffix")
    return host


def is_address(text: str) -> bool:
    """An IP literal (brackets allowed), or digits and dots: never a name to allow."""
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return bool(re.match(r"^[0-9.]+$", text))  # 10.1, 127.1: still addresses to many tools
    return True


def _public_suffix(name: str) -> bool:
    """True for a public suffix (or an unknown top-level name, a bare TLD), from the
    Public Suffix List that the publicsuffixlist package bundles (no download)."""
    return _suffix_list().privatesuffix(name) is None


@functools.cache
def _suffix_list() -> Any:
    # start-up: only a host name check needs the list; `list` and `--help` check none
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


def hosts(value: Any) -> Any:
    if isinstance(value, str):
        value = [h for h in value.replace(",", " ").split() if h]
    if not isinstance(value, list):
        raise ValueError("must be a list of host names")
    return [validate_host(h) for h in value]


def preset_names(value: Any) -> Any:
    """A list of package-registry presets (presets.py), each checked."""
    if isinstance(value, str):
        value = [p for p in value.replace(",", " ").split() if p]
    if not isinstance(value, list):
        raise ValueError("must be a list of preset names")
    return list(dict.fromkeys(presets.check(p) for p in value))


def ports(value: Any) -> Any:
    if isinstance(value, str):
        value = [p for p in value.replace(",", " ").split() if p]
    if not isinstance(value, list):
        raise ValueError("must be a list of ports")
    return [number(int, 1, 65535)(p) for p in value]


def address_ranges(value: Any) -> Any:
    """CIDR ranges (10.0.0.0/8, fd00::/8) or single addresses, as a list or one string."""
    if isinstance(value, str):
        value = [r for r in value.replace(",", " ").split() if r]
    if not isinstance(value, list):
        raise ValueError("must be a list of address ranges like 10.0.0.0/8")
    checked = []
    for item in value:
        try:
            checked.append(str(ipaddress.ip_network(str(item).strip(), strict=False)))
        except ValueError:
            raise ValueError(f"{item!r} is not an address range like 10.0.0.0/8") from None
    return checked


def resolution(value: Any) -> Any:
    if not re.match(r"^\d{3,5}x\d{3,5}(x(8|16|24|32))?$", str(value)):
        raise ValueError(f"{value!r} is not a resolution like 1280x800x24")
    return str(value)


PEM_MAX = 16 * 1024**2  # a CA bundle: a few hundred KiB


def pem_files(value: Any) -> Any:
    if isinstance(value, str):
        value = [p for p in value.replace(",", " ").split() if p]
    if not isinstance(value, list):
        raise ValueError("must be a list of PEM certificate files")
    for item in value:
        try:
            with Path(str(item)).expanduser().open("rb") as file:
                raw = file.read(PEM_MAX + 1)  # not all of /dev/zero
        except OSError as exc:
            raise ValueError(f"{item}: {exc.strerror}") from None
        if len(raw) > PEM_MAX:
            raise ValueError(f"{item} is larger than {PEM_MAX >> 20} MiB")
        try:
            text = raw.decode("utf-8")  # the companion's trust store takes it as UTF-8 text
        except UnicodeDecodeError:
            raise ValueError(f"{item} is not UTF-8 text") from None
        if "BEGIN CERTIFICATE" not in text:
            raise ValueError(f"{item} is not a PEM certificate")
    return [str(Path(str(p)).expanduser()) for p in value]


def optional_pem_file(value: Any) -> Any:
    """One PEM certificate file, or none."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ValueError("must be the path of a PEM certificate file")
    return pem_files([value])[0]


_REGISTRY = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?$")


def registry_mirrors(value: Any) -> Any:
    """Registry host -> the base URL of the mirror that answers for it: a mapping, or
    (from the environment) a JSON object or `host=url` pairs."""
    if value in (None, ""):
        return {}
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except ValueError:
                raise ValueError("is not a JSON object of registry host: URL") from None
        else:
            pairs = [p.partition("=") for p in text.replace(",", " ").split()]
            if any(not sep for _, sep, _ in pairs):
                raise ValueError("must be registry=URL pairs, like ghcr.io=https://mirror:5000")
            value = {host: url for host, _, url in pairs}
    if not isinstance(value, dict):
        raise ValueError("must be a mapping of registry host to mirror URL")
    mirrors = {}
    for host, url in value.items():
        name = str(host).strip().lower()
        if not _REGISTRY.match(name):
            raise ValueError(f"{host!r} is not a registry host like ghcr.io")
        parts = urllib.parse.urlsplit(str(url).strip())
        if parts.scheme not in ("https", "http") or not parts.netloc or parts.query:
            raise ValueError(f"{url!r} is not a mirror URL like https://mirror.example:5000")
        mirrors[name] = str(url).strip().rstrip("/")
    return mirrors


def claude_code_version(value: Any) -> Any:
    if value != "latest" and not re.match(r"^\d+\.\d+\.\d+$", str(value)):
        raise ValueError(f"{value!r} is not a Claude Code release like 2.1.332, or latest")
    return str(value)


_ENGINE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$|^(unix|ssh|tcp)://\S+$")


def engine_name(value: Any) -> str:
    if not isinstance(value, str) or not _ENGINE_NAME.match(value) or value == "auto":
        raise ValueError(f"{value!r} is not a Docker context name or an engine URL")
    return value


def engine_list(value: Any) -> list[dict[str, Any]]:
    """A list of engines: each a name or URL, or {name: ..., max_sessions: N}."""
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    if not isinstance(value, list):
        raise ValueError("must be a list of Docker context names or engine URLs")
    engines = []
    for item in value:
        if isinstance(item, dict):
            unknown = set(item) - {"name", "max_sessions"}
            if unknown:
                raise ValueError(f"unknown engine setting {sorted(unknown)[0]!r}")
            limit = item.get("max_sessions")
            engines.append(
                {
                    "name": engine_name(item.get("name")),
                    "max_sessions": None if limit is None else number(int, 1, 10_000)(limit),
                }
            )
        else:
            engines.append({"name": engine_name(item), "max_sessions": None})
    return engines


def bind_address(value: Any) -> Any:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None
    return str(value)
