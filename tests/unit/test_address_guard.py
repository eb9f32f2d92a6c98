"""The address guard's list: what an allowed name may not resolve to (egress.py), how
allowed_address_ranges opens it, and that the companion gets it (policy.py)."""

from __future__ import annotations

import ipaddress

import pytest

from claude_cage import config, egress, policy
from claude_cage.operations.inputs import local_addresses
from claude_cage.paths import package_data

SECCOMP = package_data("data", "seccomp.json").read_text()


def blocked(address: str, ranges: list[str]) -> bool:
    """Does squid's `dst` ACL, given these ranges, match this address?"""
    ip = ipaddress.ip_address(address)
    return any(ip in ipaddress.ip_network(r) for r in ranges)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.9.9.9", "0.0.0.0", "10.1.2.3", "172.16.0.1", "172.31.255.254",
        "192.168.1.1", "100.64.0.1", "169.254.169.254", "169.254.0.1", "::1", "::",
        "fd00::1", "fc00::1", "fe80::1", "224.0.0.1", "255.255.255.255",
    ],
)  # fmt: skip
def test_internal_addresses_are_refused_by_default(address: str) -> None:
    assert blocked(address, egress.blocked_ranges([]))


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::a9fe:a9fe", "64:ff9b::7f00:1", "64:ff9b::a00:1", "64:ff9b:1::1",
        "64:ff9b:1:f::1", "2002:a9fe:a9fe::1", "2002:7f00:1::", "2001:0:4136:e378::1",
    ],
)  # fmt: skip
def test_nat64_addresses_are_refused_by_default(address: str) -> None:
    """On an IPv6-only host a NAT64 gateway maps these to IPv4: 169.254.169.254,
    127.0.0.1, 10.0.0.1, and what the local-use prefix maps to; 6to4 and Teredo
    addresses carry an IPv4 address too."""
    assert blocked(address, egress.blocked_ranges([]))


@pytest.mark.parametrize("address", ["93.184.216.34", "1.1.1.1", "2606:4700::1111", "8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    assert not blocked(address, egress.blocked_ranges([]))


def test_allowed_ranges_open_exactly_their_addresses() -> None:
    ranges = egress.blocked_ranges(["172.18.0.0/16", "fd00::/8"])
    assert not blocked("172.18.0.5", ranges) and not blocked("fd00::5", ranges)
    assert blocked("172.19.0.5", ranges) and blocked("172.17.255.255", ranges)
    assert blocked("fc80::1", ranges) and blocked("127.0.0.1", ranges)
    assert blocked("169.254.169.254", ranges)


def test_the_hosts_own_addresses_stay_refused_unless_named_one_by_one() -> None:
    host = ("172.18.0.1/32", "203.0.113.7/32")
    ranges = egress.blocked_ranges(["172.18.0.0/16"], host)
    assert blocked("172.18.0.1", ranges) and blocked("203.0.113.7", ranges)
    assert not blocked("172.18.0.2", ranges)
    assert not blocked("172.18.0.1", egress.blocked_ranges(["172.18.0.1/32"], host))


def test_allowing_everything_still_gives_squid_a_list() -> None:
    assert egress.blocked_ranges(["0.0.0.0/0", "::/0"]) == ["192.0.2.255/32"]


def test_this_machines_addresses_are_found() -> None:
    found = local_addresses()
    assert "127.0.0.1/32" in found
    assert all(ipaddress.ip_network(a).num_addresses == 1 for a in found)


def test_the_companion_gets_the_list() -> None:
    values = dict(config.DEFAULTS, allowed_address_ranges=["172.18.0.0/16"])
    host = policy.HostFacts(seccomp_profile=SECCOMP, apparmor=False, addresses=("10.9.9.9/32",))
    req = policy.SessionRequest(name="demo", owner="0123456789ab", network="filtered")
    companion = policy.plan(values, req, policy.Decisions(), host).companion
    assert companion is not None
    listed = companion.environment["CAGE_BLOCKED_ADDRESSES"].split()
    assert listed == egress.blocked_ranges(["172.18.0.0/16"], ("10.9.9.9/32",))
    assert "169.254.0.0/16" in listed
