"""The packaged seccomp profile (src/claude_cage/data/seccomp.json, made by scripts/make-seccomp).

No engine needed: these read the JSON and check it is Docker's default tightened for
`--cap-drop ALL` sessions, with the dangerous syscalls gone and the everyday ones kept.
"""

from __future__ import annotations

import json
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from pathlib import Path
from types import ModuleType

import pytest

from claude_cage.paths import package_data

REMOVED = [
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "userfaultfd",
    "perf_event_open", "bpf", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "keyctl", "add_key", "request_key", "personality", "pidfd_getfd", "open_by_handle_at",
    "name_to_handle_at", "kexec_load", "kexec_file_load", "mount", "umount", "umount2",
    "pivot_root", "unshare", "setns", "lookup_dcookie", "acct", "quotactl", "syslog",
    "vhangup", "iopl", "ioperm", "swapon", "swapoff", "reboot", "init_module",
    "finit_module", "delete_module", "socketcall",
]  # fmt: skip
CORE = ["read", "write", "openat", "clone", "execve", "futex", "epoll_wait", "connect"]
# socket(2)'s allowed address families: AF_UNIX, AF_INET, AF_INET6, AF_NETLINK.
FAMILIES = {1, 2, 10, 16}
LOW32 = 0xFFFFFFFF
# personality(2) values that stay allowed: PER_LINUX, PER_LINUX32, UNAME26, both, query.
SAFE_PERSONALITIES = {0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF}


@pytest.fixture(scope="module")
def profile() -> dict:
    return json.loads(package_data("data", "seccomp.json").read_text())


def allow_rules(profile: dict) -> list[dict]:
    return [r for r in profile["syscalls"] if r["action"] == "SCMP_ACT_ALLOW"]


def applies_on_amd64(rule: dict) -> bool:
    inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
    if inc.get("caps") or inc.get("minKernel"):
        return False
    return (not inc.get("arches") or "amd64" in inc["arches"]) and "amd64" not in (
        exc.get("arches") or []
    )


def test_profile_is_json_denying_by_default_with_eperm(profile: dict) -> None:
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert profile.get("defaultErrnoRet", 1) == 1  # EPERM, as Docker does
    arches = {a["architecture"] for a in profile["archMap"]}
    assert {"SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"} <= arches
    assert profile["syscalls"], "a profile with no rules would block everything"


@pytest.mark.parametrize("name", REMOVED)
def test_removed_syscall_is_not_allowed(profile: dict, name: str) -> None:
    for rule in allow_rules(profile):
        if name not in rule["names"]:
            continue
        # Only personality survives, and only pinned to harmless values.
        assert name == "personality", f"{name} allowed by {rule}"
        values = {a["value"] for a in rule["args"] if a["index"] == 0 and a["op"] == "SCMP_CMP_EQ"}
        assert rule["args"] and values <= SAFE_PERSONALITIES, f"unsafe personality rule {rule}"


def test_no_rule_depends_on_capabilities(profile: dict) -> None:
    for rule in profile["syscalls"]:
        for cond in ("includes", "excludes"):
            assert not (rule.get(cond) or {}).get("caps"), f"{cond}.caps in {rule}"


@pytest.mark.parametrize("name", CORE)
def test_core_syscall_is_allowed_on_amd64(profile: dict, name: str) -> None:
    rules = [r for r in allow_rules(profile) if name in r["names"] and applies_on_amd64(r)]
    assert rules, f"{name} is not allowed on amd64"


def test_clone3_fails_with_enosys_so_libc_falls_back_to_clone(profile: dict) -> None:
    # EPERM here would make glibc's pthread_create fail instead of retrying with clone(2).
    rules = [r for r in profile["syscalls"] if "clone3" in r["names"] and applies_on_amd64(r)]
    assert [(r["action"], r.get("errnoRet")) for r in rules] == [("SCMP_ACT_ERRNO", 38)]


def test_names_are_sorted_for_stable_diffs(profile: dict) -> None:
    for rule in profile["syscalls"]:
        assert rule["names"] == sorted(rule["names"])


def load_script() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "scripts" / "make-seccomp"
    if not path.exists():
        pytest.skip("scripts/make-seccomp is not in this checkout")
    loader = SourceFileLoader("make_seccomp", str(path))
    spec = spec_from_loader(loader.name, loader)
    assert spec is not None
    module = module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_script_drops_cap_rules_and_cap_exclusions() -> None:
    tighten = load_script().tighten
    needs_cap = {"names": ["chroot"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["X"]}}
    assert tighten(needs_cap) is None
    rule = {
        "names": ["write", "ptrace", "clone"],
        "action": "SCMP_ACT_ALLOW",
        "includes": {},
        "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390"]},
    }
    assert tighten(rule) == dict(rule, names=["clone", "write"], excludes={"arches": ["s390"]})


def allowed_on_amd64(profile: dict, name: str, args: list[int]) -> bool:
    """Would the profile let `name(*args)` through on amd64? (SCMP_CMP_EQ and
    SCMP_CMP_MASKED_EQ are the only comparisons the socket rules use.)"""

    def holds(cond: dict) -> bool:
        value = args[cond["index"]]
        if cond["op"] == "SCMP_CMP_MASKED_EQ":
            return value & cond["value"] == cond.get("valueTwo", 0)
        assert cond["op"] == "SCMP_CMP_EQ", cond
        return value == cond["value"]

    return any(
        all(holds(c) for c in rule.get("args") or [])
        for rule in allow_rules(profile)
        if name in rule["names"] and applies_on_amd64(rule)
    )


@pytest.mark.parametrize("name", ["socket", "socketpair"])
def test_socket_is_never_allowed_unconditionally(profile: dict, name: str) -> None:
    for rule in allow_rules(profile):
        if name in rule["names"]:
            assert rule["args"], f"{name} allowed for any family by {rule}"


@pytest.mark.parametrize("family", range(64))
def test_socket_opens_only_the_allowed_families(profile: dict, family: int) -> None:
    for kind in (1, 2, 3, 5):  # stream, datagram, raw, seqpacket: the type is not the filter
        assert allowed_on_amd64(profile, "socket", [family, kind, 0]) == (family in FAMILIES)


def test_vsock_is_refused_even_with_junk_in_the_upper_bits(profile: dict) -> None:
    vsock, unix = 40, 1
    assert not allowed_on_amd64(profile, "socket", [vsock, 1, 0])
    assert not allowed_on_amd64(profile, "socket", [(1 << 32) | vsock, 1, 0])
    # The kernel reads the family as an int: a unix socket with junk above is a unix socket.
    assert allowed_on_amd64(profile, "socket", [(7 << 32) | unix, 1, 0])


def test_netlink_only_for_routing(profile: dict) -> None:
    route, audit, uevent, netfilter = 0, 9, 15, 12
    assert allowed_on_amd64(profile, "socket", [16, 3, route])
    for protocol in (audit, uevent, netfilter, 4):
        assert not allowed_on_amd64(profile, "socket", [16, 3, protocol])


def test_socketpair_only_for_unix(profile: dict) -> None:
    assert allowed_on_amd64(profile, "socketpair", [1, 1, 0, 0])
    for family in (2, 10, 16, 40, 30):
        assert not allowed_on_amd64(profile, "socketpair", [family, 1, 0, 0])


def test_the_packaged_profile_is_what_the_script_makes() -> None:
    """Regenerated from Docker's default and the script, the profile is unchanged: the
    socket rules in the JSON are the script's."""
    script = load_script()
    profile = json.loads(package_data("data", "seccomp.json").read_text())
    socket_rules = [r for r in profile["syscalls"] if {"socket", "socketpair"} & set(r["names"])]
    assert socket_rules == script.socket_rules()
