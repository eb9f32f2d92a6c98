"""Credentials as pure functions: the checks, and the squid rules they become."""

from __future__ import annotations

import base64

import pytest

from claude_cage import credentials
from claude_cage.credentials import Secret
from claude_cage.errors import BadInput
from claude_cage.kinds import Credential
from claude_cage.paths import package_data


def secret(kind: str, *hosts: str, value: str = "tok-123", header: str | None = None) -> Secret:
    return Secret("s", kind, hosts, value, header)


@pytest.mark.parametrize("host", ["*.com", "*.co.uk", "com", "*.github.io", "bad host", "*"])
def test_hosts_broader_than_one_registrable_domain_are_refused(host: str) -> None:
    with pytest.raises(BadInput):
        credentials.check_host(host)


@pytest.mark.parametrize("host", ["github.com", "api.github.com", "*.github.com", "a.b.co.uk"])
def test_hosts_of_one_registrable_domain_pass(host: str) -> None:
    assert credentials.check_host(host) == host


@pytest.mark.parametrize("value", ["a\nb", "a\x07b", 'a"b', "a\\b", "", "\x7f"])
def test_values_must_be_one_plain_line(value: str) -> None:
    with pytest.raises(BadInput) as err:
        credentials.check_value(value)
    assert value.strip() == "" or value not in err.value.message


def test_a_token_in_a_keys_slot_and_the_reverse() -> None:
    with pytest.raises(BadInput):
        credentials.check_kind_value("api-key", "sk-ant-oat01-x")
    with pytest.raises(BadInput):
        credentials.check_kind_value("claude-token", "sk-ant-api03-x")
    credentials.check_kind_value("api-key", "sk-ant-api03-x")


def test_rules_add_each_header_only_for_its_hosts_over_verified_https() -> None:
    rules = credentials.squid_rules([secret("api-key", "api.anthropic.com", value="sk-1")])
    assert r"acl cage_bump_host dstdom_regex -n -i ^api\.anthropic\.com$" in rules
    assert "request_header_access x-api-key deny cage_cred_0_host" in rules
    assert "request_header_access Authorization deny cage_cred_0_host" in rules
    add = (
        'request_header_add x-api-key "sk-1" cage_https cage_bump_port cage_tls_port '
        "cage_cred_0_host cage_cred_0_cert"
    )
    assert add in rules
    assert "acl cage_cred_0_cert ssl::server_name api.anthropic.com" in rules


def test_every_header_rule_needs_the_companions_own_verified_tls_to_port_443() -> None:
    """Each condition the rules name is one squid.conf defines as the TLS path: an
    https request decrypted on the bumping port, for port 443, and the session's port
    refuses absolute-form https:// (the way a credential once left in cleartext)."""
    creds = [secret("api-key", "api.anthropic.com"), secret("github", "github.com")]
    adds = [line for line in credentials.squid_rules(creds).splitlines() if "header_add" in line]
    assert adds and all(credentials.ONLY_OVER_VERIFIED_TLS in line for line in adds)
    conf = (package_data("images") / "companion/squid.conf").read_text()
    assert "acl cage_https proto HTTPS\n" in conf
    assert "acl cage_bump_port myportname cage_bump\n" in conf
    assert "acl cage_tls_port port 443\n" in conf
    assert "http_access deny cage_https !cage_bump_port\n" in conf
    assert "name=cage_bump ssl-bump" in conf
    peer = "cache_peer_access cage_bumper allow cage_connect cage_bump_host cage_tls_port"
    assert peer in conf
    assert "http_access deny manager\n" in conf
    # the bumping port never splices: an SNI other than the CONNECT's host is ended
    steps = [line for line in conf.splitlines() if line.startswith("ssl_bump ")]
    assert steps == [
        "ssl_bump peek cage_step1",
        "ssl_bump stare cage_step2 cage_bump_sni",
        "ssl_bump terminate cage_step2",
        "ssl_bump bump all",
    ]
    rules = credentials.squid_rules(creds)
    assert "acl cage_bump_sni all-of cage_sni_c0_d cage_sni_c0_s" in rules
    assert "--client-requested -i ^api\\.anthropic\\.com$" in rules


def test_github_tokens_go_as_git_and_the_api_expect_them() -> None:
    rules = credentials.squid_rules([secret("github", "github.com", "api.github.com")])
    basic = base64.b64encode(b"x-access-token:tok-123").decode()
    assert f'request_header_add Authorization "Basic {basic}"' in rules
    assert 'request_header_add Authorization "Bearer tok-123"' in rules
    assert credentials.default_kind(["github.com", "api.github.com"]) == "github"
    assert credentials.default_kind(["example.com"]) == "bearer"


def test_a_wildcard_means_subdomains_only_and_percent_is_escaped() -> None:
    rules = credentials.squid_rules([secret("header", "*.example.com", value="a%b", header="X")])
    assert r"dstdom_regex -n -i \.example\.com$" in rules
    assert 'request_header_add X "a%%b"' in rules  # squid expands %-codes


def test_no_credentials_no_rules_and_the_session_kind() -> None:
    assert credentials.squid_rules([]) == ""
    assert credentials.session_kind([]) == Credential.NONE
    token = secret("claude-token", "api.anthropic.com")
    assert credentials.session_kind([token]) == Credential.CLAUDE_TOKEN_PROXY


def test_clashes_are_the_same_header_on_the_same_host() -> None:
    key = secret("api-key", "api.anthropic.com")
    token = secret("claude-token", "api.anthropic.com")
    other = secret("header", "api.anthropic.com", header="X-Other")
    assert credentials.clashes(key, token) == ["api.anthropic.com"]
    assert credentials.clashes(key, other) == []


def test_the_allowlist_covers_a_name_through_a_pattern_not_a_pattern_through_a_name() -> None:
    assert credentials.covered("api.github.com", ["*.github.com"])
    assert not credentials.covered("*.github.com", ["api.github.com"])
    assert not credentials.covered("github.com", ["*.github.com"])
