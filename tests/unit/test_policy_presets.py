"""Registry presets as rules, however a session gets them, and the rule named on every
egress row and blocked event.

A preset is expanded once (netpolicy.rules.expand): `include:` in a file, and the
session layer's presets (`--allow-preset`, `allow --preset`, config `allowed_presets`)
give the same GET and HEAD rules; a publish is refused by the default, whose answer
says the preset only reads. Squid's rules follow the same order.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from claude_cage import audit, egress, policy, presets
from claude_cage.eventlog.events import EventLog
from claude_cage.netpolicy import schema, squid
from claude_cage.netpolicy.rules import (
    Layer,
    Policy,
    Request,
    first_host,
    layer_from_file,
    session_layer,
)
from claude_cage.record import SessionRecord

HOSTS = ("api.anthropic.com", "example.org")
AT = 1795978111.330


def shape(layer: Layer) -> list[tuple[str, str, tuple[str, ...], str]]:
    return [(r.action, r.host, r.methods, r.preset) for r in layer.rules]


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_a_session_preset_is_the_same_rules_as_an_include(name: str) -> None:
    parsed, problems = schema.parse(f"version: 1\nrules:\n  - include: {name}\n")
    assert parsed is not None, problems
    included = layer_from_file("user", parsed, "policy.yaml")
    session = session_layer((), (name,))
    assert shape(session) == shape(included)
    assert all(r.methods == ("GET", "HEAD") for r in session.rules)
    assert [r.host for r in session.rules] == list(presets.PRESETS[name])


def test_presets_come_first_in_the_session_layer_and_keep_their_numbers() -> None:
    session = session_layer(HOSTS, ("python",))
    assert [(r.id, r.host, r.methods) for r in session.rules] == [
        ("session:1", "pypi.org", ("GET", "HEAD")),
        ("session:2", "files.pythonhosted.org", ("GET", "HEAD")),
        ("session:3", "api.anthropic.com", ()),
        ("session:4", "example.org", ()),
    ]
    assert first_host(("python",)) == 3
    # another host later does not renumber what squid was given for the presets
    assert session_layer((*HOSTS, "x.example.com"), ("python",)).rules[:2] == session.rules[:2]


def test_a_publish_to_a_preset_registry_is_refused_with_the_reason() -> None:
    effective = Policy((session_layer(HOSTS, ("python", "node")),))
    get = effective.decide(Request("pypi.org", 443, "GET", "/simple/greet/"))
    assert (get.allowed, get.rule) == (True, "session:1")
    assert effective.decide(Request("registry.npmjs.org", 443, "HEAD", "/greet")).allowed
    for method, host, path in (
        ("POST", "pypi.org", "/legacy/"),  # twine upload
        ("PUT", "registry.npmjs.org", "/greet"),  # npm publish
        ("DELETE", "files.pythonhosted.org", "/x"),
    ):
        decision = effective.decide(Request(host, 443, method, path))
        assert (decision.allowed, decision.rule) == (False, "default"), (method, host)
        assert "preset" in decision.reason and "not publishing" in decision.reason
    # a host no rule names is refused by the default too, without that reason
    other = effective.decide(Request("evil.example", 443, "PUT", "/"))
    assert (other.allowed, other.reason) == (False, "")


def test_a_rule_someone_writes_allows_the_publish() -> None:
    parsed, _ = schema.parse(
        "version: 1\nrules:\n"
        "  - {action: allow, host: upload.pypi.org, methods: [POST], paths: [/legacy/]}\n"
        "  - {action: allow, host: registry.npmjs.org, methods: [PUT]}\n"
    )
    assert parsed is not None
    user = layer_from_file("user", parsed, "policy.yaml")
    effective = Policy((user, session_layer(HOSTS, ("python", "node"))))
    assert effective.decide(Request("upload.pypi.org", 443, "POST", "/legacy/")).rule == "user:1"
    assert effective.decide(Request("registry.npmjs.org", 443, "PUT", "/greet")).rule == "user:2"


def test_squid_gets_the_session_presets_and_their_answer() -> None:
    effective = Policy((Layer("user"), session_layer(HOSTS, ("python",))))
    files = squid.compile_files(effective)
    access, tail, bump = files["access.conf"], files["tail.conf"], files["bump.conf"]
    assert "http_access allow cage_s1 cage_s1_t" in access
    assert "api\\.anthropic" not in access  # the allowlist's hosts stay in its own files
    assert "^pypi\\.org$" in bump and "^files\\.pythonhosted\\.org$" in bump
    assert "http_access deny cage_s1_h cage_default_ports cage_s1_n" in tail
    assert "deny_info ERR_CAGE_PRESET_session_1 cage_s1_n" in tail
    assert "acl cage_s1_n annotate_transaction cage_rule=default" in files["acls.conf"]
    page = files["pages/ERR_CAGE_PRESET_session_1"]
    assert "python preset" in page and "not publishing" in page
    # the refusal comes after learn mode's allow, so learn mode still records a publish
    learn = squid.compile_files(Policy(effective.layers, learn=True))["tail.conf"]
    assert learn.index("cage_tag_learn") < learn.index("cage_s1_n")


def test_a_session_with_presets_only_gets_policy_files() -> None:
    assert policy.policy_env((session_layer(HOSTS),), [80, 443]) == ""
    assert policy.policy_env((session_layer(HOSTS, ("go",)),), [80, 443]) != ""
    assert policy.needs_policy((session_layer((), ("go",)),))


def test_a_record_with_an_unknown_preset_is_damaged() -> None:
    from claude_cage.record import DamagedField, from_fields

    assert from_fields({"name": "web", "allowed_presets": '["python"]'}).allowed_presets == (
        "python",
    )
    with pytest.raises(DamagedField):
        from_fields({"name": "web", "allowed_presets": '["cobol"]'})


# --- the rule of every row and event --------------------------------------------------


def squid_line(seq: int, host: str, port: int, status: int, page: str, rule: str) -> str:
    squid_status = "TCP_DENIED" if status == 403 else "TCP_TUNNEL"
    upstream = "-" if status == 403 else str(status)
    return f"{seq} {AT:.3f} {host} {port} {status} {upstream} {squid_status} {page} GET {rule} -"


@pytest.mark.parametrize(
    "page",
    ["ERR_CAGE_PORT", "ERR_CAGE_LITERAL", "ERR_CAGE_SELF", "ERR_CAGE_SCHEME", "ERR_CAGE_INTERNAL"],
)
def test_a_refusal_before_any_rule_is_the_default(page: str) -> None:
    request = egress.parse_line(squid_line(0, "example.org", 8080, 403, page, "-"))
    assert request is not None and request.rule == "default"


def test_a_companion_that_logs_no_rule_is_not_given_one() -> None:
    old = f"0 {AT:.3f} example.org 443 403 - TCP_DENIED ERR_CAGE_HOST CONNECT"
    request = egress.parse_line(old)
    assert request is not None and request.rule == ""


def test_the_allowlist_is_numbered_after_the_presets() -> None:
    line = squid_line(0, "example.org", 443, 200, "-", "session")
    request = egress.parse_line(line)
    assert request is not None
    meta = SessionRecord(name="web", allowed_hosts=HOSTS, allowed_presets=("python",))
    assert audit.session_numbering(meta)(request).rule == "session:4"
    assert egress.session_rule(request, HOSTS).rule == "session:2"


def test_every_blocked_event_names_its_rule(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.sqlite3", background_sync=False)
    meta = SessionRecord(name="web", allowed_hosts=HOSTS, allowed_presets=("python",))
    lines = [
        squid_line(0, "example.org", 443, 403, "ERR_CAGE_ADDRESS", "session"),
        squid_line(1, "evil.example", 443, 403, "ERR_CAGE_HOST", "default"),
        squid_line(2, "example.org", 8080, 403, "ERR_CAGE_PORT", "-"),
        squid_line(3, "pypi.org", 443, 403, "ERR_CAGE_PRESET_session_1", "default"),
        squid_line(4, "10.0.0.1", 443, 403, "ERR_CAGE_LITERAL", "-"),
    ]
    stamped = [(f"2026-11-29T18:48:0{i}.000000000Z", text.encode()) for i, text in enumerate(lines)]
    audit.ingest(log, "web", "c1", stamped, numbering=audit.session_numbering(meta))
    events = sorted(
        (e["value"]["seq"], e["value"]["status"], e["value"]["rule"])
        for e in log.query(type="egress")
    )
    assert events == [
        (0, egress.BLOCKED_ADDRESS, "session:4"),
        (1, egress.BLOCKED_HOST, "default"),
        (2, egress.BLOCKED_PORT, "default"),
        (3, egress.BLOCKED_RULE, "default"),
        (4, egress.BLOCKED_HOST, "default"),
    ]
