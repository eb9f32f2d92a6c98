"""The seccomp profile, tried from inside a real session: socket(2) opens only the
address families a session needs (AF_UNIX, AF_INET, AF_INET6, AF_NETLINK for
NETLINK_ROUTE); every other one, AF_VSOCK to the hypervisor first, fails with EPERM.
And what a session runs every day (Claude Code, git, curl, npm, Node) still works."""

from __future__ import annotations

import pytest

from tests.conftest import Cage
from tests.integration.conftest import TestHost

pytestmark = pytest.mark.engine

ALLOWED = {1: "AF_UNIX", 2: "AF_INET", 10: "AF_INET6", 16: "AF_NETLINK"}
EPERM = 1
AF_VSOCK = 40
TYPES = (1, 2, 3, 5)  # SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, SOCK_SEQPACKET
FAMILIES = range(51)  # every family the kernel knows, and some it does not
# socket(family, type, protocol) for each family and type, and for every netlink
# protocol; one line each, "family/type/protocol errno" (errno 0: it opened).
TRY_FAMILIES = r"""
sub try { my ($f, $t, $p) = @_; my $s; my $ok = socket($s, $f, $t, $p);
          print "$f/$t/$p ", ($ok ? 0 : $!+0), "\n"; close $s if $ok }
for my $f (0 .. 50) { try($f, $_, 0) for (1, 2, 3, 5) }
try(16, 3, $_) for (1 .. 22);
sub report { my ($label, $r) = @_; print "$label ", ($r < 0 ? $!+0 : 0), "\n" }
# The family with junk in the upper half of its register: the kernel reads an int.
report("vsock-high", syscall(41, (1 << 32) | 40, 1, 0));
report("unix-high", syscall(41, (1 << 32) | 1, 1, 0));
my $fds = pack("i2", 0, 0);
report("socketpair-vsock", syscall(53, 40, 1, 0, $fds));
report("socketpair-unix", syscall(53, 1, 1, 0, $fds));
"""


@pytest.fixture(scope="module")
def session(cage_module: Cage, test_hosts: dict[str, TestHost]) -> str:
    name = cage_module.name("seccomp")
    started = cage_module("start", "--name", name, "--detach", "--allow-host", "allowed.test")
    assert started.code == 0, started.output
    return name


def sh(cage: Cage, name: str, script: str) -> str:
    result = cage("exec", name, "--", "sh", "-c", script)
    assert result.code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def tried(cage_module: Cage, session: str) -> dict[str, int]:
    """What each attempt gave: its label -> errno (0 when the socket opened)."""
    out = sh(cage_module, session, f"perl -e '{TRY_FAMILIES}'")
    return {label: int(errno) for label, errno in (line.split() for line in out.splitlines())}


def test_only_the_needed_families_open(tried: dict[str, int]) -> None:
    opened = {
        int(label.split("/")[0]) for label, errno in tried.items() if "/" in label and errno == 0
    }
    assert opened == set(ALLOWED), opened
    # Each allowed family opens with its everyday type.
    for label in ("1/1/0", "1/2/0", "2/1/0", "2/2/0", "10/1/0", "10/2/0", "16/3/0"):
        assert tried[label] == 0, label


def test_every_other_family_is_refused_by_seccomp(tried: dict[str, int]) -> None:
    refused = {
        f"{f}/{t}/0": tried[f"{f}/{t}/0"] for f in FAMILIES if f not in ALLOWED for t in TYPES
    }
    assert set(refused.values()) == {EPERM}, {k: v for k, v in refused.items() if v != EPERM}


def test_vsock_is_refused_however_asked(tried: dict[str, int]) -> None:
    assert {tried[f"{AF_VSOCK}/{t}/0"] for t in TYPES} == {EPERM}
    assert tried["vsock-high"] == EPERM  # junk in the upper 32 bits changes nothing
    assert tried["socketpair-vsock"] == EPERM
    assert tried["unix-high"] == 0 and tried["socketpair-unix"] == 0


def test_netlink_only_for_routing(tried: dict[str, int]) -> None:
    assert tried["16/3/0"] == 0  # NETLINK_ROUTE: getaddrinfo, getifaddrs
    others = {p: tried[f"16/3/{p}"] for p in range(1, 23)}
    assert set(others.values()) == {EPERM}, others


def test_everyday_tools_still_work(cage_module: Cage, session: str) -> None:
    out = sh(
        cage_module,
        session,
        "set -e; claude --version; "
        "curl -s -o /dev/null -w 'curl=%{http_code}\\n' http://allowed.test/curl; "
        "npm ping --registry http://allowed.test/ >/dev/null 2>&1 && echo npm=ok; "
        "cd /tmp && git init -q repo && cd repo && git -c user.email=a@b -c user.name=a "
        "commit -q --allow-empty -m one && echo git=$(git rev-list --count HEAD); "
        "git ls-remote http://allowed.test/repo.git >/dev/null 2>&1; echo git-http=$?; "
        "node -e \"require('dns').lookup('localhost', {all: true}, (e, a) => "
        "{ console.log('node-dns=' + (e ? e.code : a.length)); "
        "console.log('node-if=' + Object.keys(require('os').networkInterfaces()).join(',')) })\"",
    )
    assert "(Claude Code)" in out
    assert "curl=200" in out and "npm=ok" in out and "git=1" in out
    assert "node-dns=" in out and "node-dns=E" not in out
    assert "node-if=lo" in out


def test_git_reached_the_host_through_the_proxy(
    session: str, test_hosts: dict[str, TestHost]
) -> None:
    paths = [r["path"] for r in test_hosts["allowed.test"].received()]
    assert any(p.startswith("/repo.git/info/refs") for p in paths), paths
    assert any(p.startswith("/-/ping") for p in paths), paths
