"""The policy file's one schema, and the reader that checks a file against it.

Every key is declared once below (type, default, description); `validate` and the docs
table (docs/policy.md, checked by tests/unit/test_netpolicy.py) come from it. A file is
read with PyYAML's composer, so each rule keeps the line it was written on; without
aliases (`*name`) and at most MAX_DEPTH deep, so that a short file (a project's, which
the project's author or an agent wrote) cannot expand into millions of rules or
overflow the stack.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from claude_cage import presets
from claude_cage.netpolicy.rules import ALLOW, DENY
from claude_cage.validators import validate_host

VERSION = 1
MAX_DEPTH = 8  # a file, its rules, a rule, a list of paths: 4


class _Loader(yaml.SafeLoader):
    """SafeLoader's composer, refusing an alias and nesting past MAX_DEPTH."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        mark: Any = event.start_mark
        if isinstance(event, yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed in a policy", mark
            )
        if self._depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"nested more than {MAX_DEPTH} deep", mark
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


@dataclass(frozen=True)
class Key:
    type: str  # as the docs name it
    default: Any
    description: str


# The top level of a policy file.
TOP: dict[str, Key] = {
    "version": Key("integer", None, f"The file format's version; required, {VERSION}."),
    "default": Key(
        "defer | deny",
        "defer",
        "Managed layer only. `deny`: a request no managed rule allows is refused, whatever "
        "the layers below say; `defer`: the layers below decide it.",
    ),
    "rules": Key("list", [], "The rules, in order: the first that matches decides."),
}
# One entry of `rules`: a rule, or `include: PRESET`.
RULE: dict[str, Key] = {
    "action": Key("allow | deny", None, "What the rule decides; required."),
    "host": Key(
        "string",
        None,
        "Required. An exact name (api.github.com) or `*.domain` (its subdomains, not the "
        "domain itself), under a registrable domain (Public Suffix List).",
    ),
    "port": Key(
        "integer or list", None, "The ports it covers; by default the session's allowed ports."
    ),
    "methods": Key(
        "list of strings",
        None,
        "HTTP methods (GET, POST, ...); by default any. HTTPS on 443 "
        "is decrypted in the companion for a host any such rule names.",
    ),
    "paths": Key(
        "list of strings",
        None,
        "URL paths; by default any. A path without `*` is a prefix; in a glob `*` matches "
        "within one segment and `**` across segments.",
    ),
    "reason": Key("string", "", "Shown to the agent in the answer of a request it denies."),
    "include": Key(
        "string",
        None,
        "A preset's rules, here in the order: "
        + ", ".join(["anthropic", "github", *presets.PRESETS])
        + " (registries: GET and HEAD only).",
    ),
}
_METHOD = re.compile(r"^[A-Z][A-Z-]{0,19}$")
_PATH = re.compile(r"^/[\x21-\x7e]*$")
_REASON_MAX = 200


@dataclass(frozen=True)
class Problem:
    line: int
    message: str

    def text(self, file: str) -> str:
        return f"{file}:{self.line}: {self.message}"


@dataclass(frozen=True)
class RawRule:
    """One checked entry of `rules`, before presets expand."""

    line: int
    action: str = ""
    host: str = ""
    ports: tuple[int, ...] = ()  # () = the session's allowed ports
    methods: tuple[str, ...] = ()  # () = any
    paths: tuple[str, ...] = ()  # () = any
    reason: str = ""
    include: str = ""


@dataclass(frozen=True)
class ParsedFile:
    version: int
    default: str
    rules: tuple[RawRule, ...]


def parse(text: str) -> tuple[ParsedFile | None, list[Problem]]:
    """The file, or None and every problem found (one per line, with its number)."""
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        return None, [Problem(line, f"not YAML: {getattr(exc, 'problem', None) or exc}")]
    if root is None:
        return None, [Problem(1, "empty: a policy needs at least `version: 1`")]
    if not isinstance(root, yaml.MappingNode):
        return None, [Problem(_line(root), "the file must be a mapping of keys (version, rules)")]
    problems: list[Problem] = []
    top = _mapping(root, TOP, problems)
    version = top.get("version")
    if version is None:
        problems.append(Problem(_line(root), "`version` is missing: write `version: 1`"))
    elif _scalar(version) != str(VERSION):
        problems.append(Problem(_line(version), f"version must be {VERSION}"))
    default = TOP["default"].default
    if "default" in top:
        default = _scalar(top["default"])
        if default not in ("defer", "deny"):
            problems.append(Problem(_line(top["default"]), "default must be defer or deny"))
    rules: list[RawRule] = []
    node = top.get("rules")
    if node is not None and not _is_null(node):
        if not isinstance(node, yaml.SequenceNode):
            problems.append(Problem(_line(node), "rules must be a list"))
        else:
            for item in node.value:
                rule = _rule(item, problems)
                if rule is not None:
                    rules.append(rule)
    if problems:
        return None, sorted(problems, key=lambda p: p.line)
    return ParsedFile(VERSION, str(default), tuple(rules)), []


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")


def _scalar(node: yaml.Node) -> str:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else ""


def _mapping(
    node: yaml.MappingNode, keys: dict[str, Key], problems: list[Problem]
) -> dict[str, yaml.Node]:
    out: dict[str, yaml.Node] = {}
    for key_node, value in node.value:
        key = _scalar(key_node)
        if key not in keys:
            known = ", ".join(keys)
            problems.append(Problem(_line(key_node), f"unknown key {key!r} (known: {known})"))
        elif key in out:
            problems.append(Problem(_line(key_node), f"{key!r} is given twice"))
        else:
            out[key] = value
    return out


def _strings(node: yaml.Node, key: str, problems: list[Problem]) -> list[str] | None:
    items = node.value if isinstance(node, yaml.SequenceNode) else [node]
    if not all(isinstance(i, yaml.ScalarNode) and not _is_null(i) for i in items) or not items:
        problems.append(Problem(_line(node), f"{key} must be a string or a list of strings"))
        return None
    return [str(i.value) for i in items]


def _rule(node: yaml.Node, problems: list[Problem]) -> RawRule | None:
    line = _line(node)
    if not isinstance(node, yaml.MappingNode):
        problems.append(Problem(line, "a rule must be a mapping (action, host, ...)"))
        return None
    before = len(problems)
    keys = _mapping(node, RULE, problems)
    if "include" in keys:
        if len(keys) > 1:
            problems.append(Problem(line, "an include takes no other keys"))
            return None
        name = _scalar(keys["include"]).strip().lower()
        if name not in ("anthropic", "github", *presets.PRESETS):
            problems.append(Problem(line, f"include: {name!r} is not a preset ({_PRESETS})"))
            return None
        return RawRule(line, include=name)
    action = _scalar(keys["action"]) if "action" in keys else ""
    if action not in (ALLOW, DENY):
        problems.append(Problem(line, "action must be allow or deny"))
    host = _scalar(keys["host"]) if "host" in keys else ""
    if not host:
        problems.append(Problem(line, "host is missing"))
    else:
        try:
            host = validate_host(host)
        except ValueError as exc:
            problems.append(Problem(_line(keys["host"]), f"host: {exc}"))
    ports: list[int] = []
    if "port" in keys:
        for text in _strings(keys["port"], "port", problems) or []:
            if not text.isdigit() or not 1 <= int(text) <= 65535:
                problems.append(Problem(_line(keys["port"]), f"port {text!r} is not 1-65535"))
            else:
                ports.append(int(text))
    methods: list[str] = []
    if "methods" in keys:
        for text in _strings(keys["methods"], "methods", problems) or []:
            if not _METHOD.match(text.upper()) or text.upper() == "CONNECT":
                problems.append(Problem(_line(keys["methods"]), f"{text!r} is not an HTTP method"))
            else:
                methods.append(text.upper())
    paths: list[str] = []
    if "paths" in keys:
        for text in _strings(keys["paths"], "paths", problems) or []:
            if not _PATH.match(text):
                problems.append(
                    Problem(_line(keys["paths"]), f"path {text!r} must start with / (no spaces)")
                )
            else:
                paths.append(text)
    reason = _scalar(keys["reason"]) if "reason" in keys else ""
    if any(not c.isprintable() for c in reason) or len(reason) > _REASON_MAX:
        problems.append(Problem(line, f"reason must be one printable line, at most {_REASON_MAX}"))
    if len(problems) > before:
        return None
    return RawRule(
        line,
        action,
        host,
        tuple(dict.fromkeys(ports)),
        tuple(dict.fromkeys(methods)),
        tuple(paths),
        reason,
    )


_PRESETS = ", ".join(["anthropic", "github", *presets.PRESETS])


def docs_table() -> str:
    """The schema as the Markdown table docs/policy.md holds."""
    rows = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for prefix, keys in (("", TOP), ("rules[].", RULE)):
        for name, key in keys.items():
            default = "" if key.default in (None, "", []) else f"`{key.default}`"
            rows.append(f"| `{prefix}{name}` | {key.type} | {default} | {key.description} |")
    return "\n".join(rows)
