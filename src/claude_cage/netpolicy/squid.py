"""The effective policy as squid configuration, in the order rules.py decides.

The companion's squid.conf includes four files this module writes, around the session
layer (the allowlist files it has always read):
- acls.conf: every rule's ACLs, and the ports rules name (added to cage_ports);
- access.conf: the managed denies, the managed ceiling, the user and project rules,
  and the session layer's presets (its allowlist follows in squid.conf);
- tail.conf: after the session layer, the managed allows as the last word, then the
  default's refusal of a registry preset's hosts with another method, whose answer
  (pages/ERR_CAGE_PRESET_<layer>_<index>) says the preset reads only;
- bump.conf: the hosts of method and path rules, added to the hosts squid decrypts.
Each deciding `http_access` line ends with an annotate_transaction ACL naming its rule,
which the log's `%{cage_rule}note` shows; a deny rule's answer is its own page
(pages/ERR_CAGE_DENY_<layer>_<index>), which holds its reason.
"""

from __future__ import annotations

import io
import tarfile

from claude_cage.credentials import sni_acls
from claude_cage.netpolicy.rules import (
    ALLOW,
    DENY,
    LAYERS,
    UNSAFE_PATH_REASON,
    UNSAFE_PATHS,
    Policy,
    Rule,
    path_pattern,
    read_only_reason,
)

DENY_PAGE = "ERR_CAGE_DENY_"
PRESET_PAGE = "ERR_CAGE_PRESET_"
MANAGED_PAGE = "ERR_CAGE_MANAGED"
PATH_PAGE = "ERR_CAGE_PATH"
FILES = ("acls.conf", "access.conf", "tail.conf", "bump.conf")


def _acl(rule: Rule) -> str:
    return f"cage_{rule.layer[0]}{rule.index}"


def _host_regex(host: str) -> str:
    escaped = host.replace(".", "\\.")  # hosts are checked: [a-z0-9.-] and a "*."
    return escaped[1:] + "$" if host.startswith("*.") else "^" + escaped + "$"


def _rule_acls(rule: Rule) -> list[str]:
    name = _acl(rule)
    any_port = rule.action == DENY and not rule.ports  # a deny of the host on every port
    ports = f"{name}_p" if rule.ports else "cage_default_ports"
    out = [f"acl {name}_h dstdom_regex -n -i {_host_regex(rule.host)}"]
    if rule.ports:
        out.append(f"acl {ports} port " + " ".join(map(str, rule.ports)))
    out.append(f"acl {name}_t annotate_transaction cage_rule={rule.id}")
    parts = [f"{name}_h"] if any_port else [f"{name}_h", ports]
    if rule.methods:
        out.append(f"acl {name}_m method " + " ".join(rule.methods))
        parts.append(f"{name}_m")
    if rule.paths:
        case = "-i " if rule.action == DENY else ""  # a deny holds in any case
        patterns = " ".join(path_pattern(p) for p in rule.paths)
        out.append(f"acl {name}_u urlpath_regex {case}{patterns}")
        parts.append(f"{name}_u")
    if rule.inside and rule.action == ALLOW:
        # the CONNECT that opens a decrypted connection: its requests are decided inside
        out.append(f"acl {name}_r all-of " + " ".join(parts))
        out.append(f"acl {name}_c all-of {name}_h {ports} cage_tls_port cage_connect")
        out.append(f"acl {name} any-of {name}_r {name}_c")
    elif rule.inside:
        # a method or path deny: also a tunnel to another port, which is never decrypted
        out.append(f"acl {name}_r all-of " + " ".join(parts))
        out.append(f"acl {name}_x all-of {name}_h cage_connect cage_not_tls_port")
        out.append(f"acl {name} any-of {name}_r {name}_x")
    else:
        out.append(f"acl {name} all-of " + " ".join(parts))
    return out


def _decide(rule: Rule, before: str = "") -> list[str]:
    name = _acl(rule)
    if rule.action == DENY:
        return [f"http_access deny {before}{name} {name}_t"]
    return [  # an allowed name at a guarded address is refused (egress.blocked_ranges)
        f"http_access deny {before}{name} {name}_t cage_blocked_dst",
        f"http_access allow {before}{name} {name}_t",
    ]


def compile_files(policy: Policy) -> dict[str, str]:
    """File name -> text, for the companion's /run/cage/policy (see module doc)."""
    managed = policy.layer("managed")
    # the session layer's host rules are the allowlist files squid.conf reads; its
    # preset rules (methods) are compiled here
    session = [r for r in policy.layer("session").rules if r.inside]
    rules = [r for x in policy.layers if x.name != "session" for r in x.rules] + session
    acls = ["# claude-cage egress policy: the rules' ACLs (netpolicy/squid.py)"]
    acls.append("acl cage_not_tls_port port 1-442 444-65535")
    extra_ports = sorted({p for r in rules for p in r.ports} - set(policy.ports))
    if extra_ports:
        acls.append("acl cage_ports port " + " ".join(map(str, extra_ports)))
    for rule in rules:
        acls += _rule_acls(rule)
    acls.append("acl cage_tag_mdefault annotate_transaction cage_rule=managed:default")
    if policy.learn:  # every port; what no rule decides goes out (tail.conf)
        acls.append("acl cage_ports port 1-65535")
        acls.append("acl cage_tag_learn annotate_transaction cage_rule=learn")
    access = []
    path_hosts = policy.path_hosts()
    if path_hosts:  # a path a server could resolve to another: refused before any rule
        acls.append(
            "acl cage_path_host dstdom_regex -n -i " + " ".join(map(_host_regex, path_hosts))
        )
        acls.append("acl cage_path_unsafe urlpath_regex " + " ".join(UNSAFE_PATHS))
        acls.append("acl cage_tag_path annotate_transaction cage_rule=default")
        access.append("# an unsafe path (a dot or empty segment) to a host that path rules name")
        access.append(
            "http_access deny cage_path_host !cage_connect cage_path_unsafe cage_tag_path"
        )
        access.append(f"deny_info {PATH_PAGE} cage_tag_path")
    access.append("# the managed layer: a deny here is final, unless a managed allow came first")
    allows: list[str] = []
    for rule in managed.rules:
        if rule.action == DENY:
            access += _decide(rule, "".join(f"!{a} " for a in allows))
        else:
            allows.append(_acl(rule))
    if managed.default == "deny":
        access.append("# managed default: deny: nothing below allows what no managed rule does")
        if allows:
            access.append("acl cage_managed_allow any-of " + " ".join(allows))
            access.append("http_access deny !cage_managed_allow cage_tag_mdefault")
        else:
            access.append("http_access deny all cage_tag_mdefault")
    access.append(f"deny_info {MANAGED_PAGE} cage_tag_mdefault")
    for layer in LAYERS[1:3]:
        access.append(f"# the {layer} layer")
        for rule in policy.layer(layer).rules:
            access += _decide(rule)
    access.append("# the session layer's presets (its allowlist follows in squid.conf)")
    for rule in session:
        access += _decide(rule)
    for rule in rules:
        if rule.action == DENY:
            access.append(f"deny_info {page_name(rule)} {_acl(rule)}_t")
    tail = ["# after the session layer: what a managed rule allowed and nothing below decided"]
    for rule in managed.rules:
        if rule.action == ALLOW:
            tail += _decide(rule)
    if policy.learn:
        tail += [
            "# learn mode: what no rule decided is allowed, and logged as `learn`",
            "http_access deny all cage_tag_learn cage_blocked_dst",
            "http_access allow all cage_tag_learn",
        ]
    read_only = [r for r in rules if r.preset and r.action == ALLOW and r.methods]
    if read_only:
        tail.append("# the default, for a registry preset's host: the answer says it reads only")
    for rule in read_only:
        name = _acl(rule)
        acls.append(f"acl {name}_n annotate_transaction cage_rule=default")
        tail.append(f"http_access deny {name}_h cage_default_ports {name}_n")
        tail.append(f"deny_info {PRESET_PAGE}{rule.layer}_{rule.index} {name}_n")
    bump = ["# hosts of method and path rules: decrypted on port 443, like credentialed ones"]
    inside = policy.inside_hosts()
    if inside:
        bump.append("acl cage_bump_host dstdom_regex -n -i " + " ".join(map(_host_regex, inside)))
        bump += sni_acls("cage_sni_p", [_host_regex(h) for h in inside])
    files = {
        "acls.conf": acls,
        "access.conf": access,
        "tail.conf": tail,
        "bump.conf": bump,
    }
    out = {name: "\n".join(lines) + "\n" for name, lines in files.items()}
    for rule in rules:
        if rule.action == DENY:
            out[f"pages/{page_name(rule)}"] = deny_page(rule)
    for rule in read_only:
        out[f"pages/{PRESET_PAGE}{rule.layer}_{rule.index}"] = (
            "claude-cage: blocked: %M %H (port %p): no rule allows it.\nReason: "
            + read_only_reason(rule).replace("%", "%%")
            + "\n"
        )
    if path_hosts:
        out[f"pages/{PATH_PAGE}"] = (
            f"claude-cage: blocked: %M %H (port %p): {UNSAFE_PATH_REASON}.\n"
        )
    out[f"pages/{MANAGED_PAGE}"] = (
        "claude-cage: blocked: %M %H (port %p): the managed egress policy (set by the "
        "administrator of this machine) does not allow it.\n"
    )
    return out


def page_name(rule: Rule) -> str:
    return f"{DENY_PAGE}{rule.layer}_{rule.index}"


def deny_page(rule: Rule) -> str:
    """The answer to a request a deny rule refuses: the rule and its reason (squid
    expands %-codes in pages, so the reason's own % are doubled)."""
    lines = [f"claude-cage: blocked: %M %H (port %p) by egress policy rule {rule.id}."]
    if rule.reason:
        lines.append("Reason: " + rule.reason.replace("%", "%%"))
    return "\n".join(lines) + "\n"


def tar_bytes(files: dict[str, str]) -> bytes:
    """The files as the tar `companion-entrypoint policy` reads on its stdin."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
