"""The policy file: its schema, the order of rules, the layers, and squid's rules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from claude_cage.errors import BadInput, CageError
from claude_cage.netpolicy import layers, rules, schema, squid
from claude_cage.netpolicy.rules import (
    Layer,
    Policy,
    Request,
    layer_from_file,
    path_regex,
    session_layer,
)

ROOT = Path(__file__).resolve().parents[2]


def layer(name: str, text: str) -> Layer:
    parsed, problems = schema.parse(text)
    assert parsed is not None, problems
    return layer_from_file(name, parsed, f"{name}.yaml")


def policy(*given: Layer, hosts: tuple[str, ...] = ()) -> Policy:
    return Policy((*given, session_layer(hosts)))


GET = Request("api.github.com", 443, "GET", "/repos/acme/app/issues")
POST = Request("api.github.com", 443, "POST", "/repos/acme/app/issues")


# --- the schema -------------------------------------------------------------------


def test_a_file_with_every_key_reads_with_its_lines() -> None:
    parsed, problems = schema.parse(
        "version: 1\n"
        "rules:\n"
        "  - action: allow\n"
        "    host: api.github.com\n"
        "    methods: [get, HEAD]\n"
        "    paths: [/repos/acme/*]\n"
        "    port: 443\n"
        "  - action: deny\n"
        "    host: '*.github.com'\n"
        "    reason: no writes\n"
        "  - include: python\n"
    )
    assert problems == []
    assert parsed is not None
    first, second, third = parsed.rules
    assert (first.line, first.methods, first.ports, first.paths) == (
        3,
        ("GET", "HEAD"),
        (443,),
        ("/repos/acme/*",),
    )
    assert (second.line, second.action, second.host, second.reason) == (
        8,
        "deny",
        "*.github.com",
        "no writes",
    )
    assert third.include == "python"


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("rules: []\n", 1, "version"),
        ("version: 2\n", 1, "version must be 1"),
        ("version: 1\nrulez: []\n", 2, "unknown key 'rulez'"),
        ("version: 1\nrules:\n  - action: maybe\n    host: a.example.com\n", 3, "allow or deny"),
        ("version: 1\nrules:\n  - action: allow\n", 3, "host is missing"),
        ("version: 1\nrules:\n  - action: allow\n    host: '*.com'\n", 4, "public suffix"),
        ("version: 1\nrules:\n  - action: allow\n    host: '*.co.uk'\n", 4, "public suffix"),
        ("version: 1\nrules:\n  - action: allow\n    host: github.io\n", 4, "public suffix"),
        ("version: 1\nrules:\n  - action: allow\n    host: 10.0.0.1\n", 4, "IP address"),
        ("version: 1\nrules:\n  - {action: allow, host: a.example.com, port: 0}\n", 3, "port"),
        ("version: 1\nrules:\n  - {action: allow, host: a.b.com, methods: [CONNECT]}\n", 3, ""),
        ("version: 1\nrules:\n  - {action: allow, host: a.b.com, paths: [x]}\n", 3, "start"),
        ("version: 1\nrules:\n  - include: cobol\n", 3, "not a preset"),
        ("version: 1\nrules:\n  - include: python\n    host: a.b.com\n", 3, "no other keys"),
        ("version: 1\ndefault: allow\n", 2, "defer or deny"),
        ("version: 1\nrules: [\n", 3, "not YAML"),
        ("", 1, "empty"),
        ("- a\n", 1, "mapping"),
    ],
)
def test_each_problem_names_its_line(text: str, line: int, words: str) -> None:
    parsed, problems = schema.parse(text)
    assert parsed is None
    assert problems[0].line == line, problems
    assert words in problems[0].message


def test_every_problem_is_reported_not_just_the_first() -> None:
    _, problems = schema.parse(
        "version: 1\nrules:\n  - {action: allow, host: '*.com'}\n  - {action: x, host: a.b.com}\n"
    )
    assert [p.line for p in problems] == [3, 4]


def test_the_docs_hold_the_schema_table() -> None:
    assert schema.docs_table() in (ROOT / "docs/policy.md").read_text()


# --- order and matching -----------------------------------------------------------


def test_the_first_matching_rule_decides() -> None:
    user = layer(
        "user",
        "version: 1\nrules:\n"
        "  - {action: deny, host: api.github.com, methods: [POST], reason: read only}\n"
        "  - {action: allow, host: '*.github.com'}\n",
    )
    effective = policy(user)
    assert effective.decide(GET).rule == "user:2"
    refused = effective.decide(POST)
    assert (refused.allowed, refused.rule, refused.reason) == (False, "user:1", "read only")
    assert effective.decide(Request("github.com", 443)).rule == "default"  # not a subdomain


def test_path_globs_and_prefixes() -> None:
    assert path_regex("/repos/acme/").match("/repos/acme/app/pulls")
    glob = path_regex("/repos/*/app")
    assert glob.match("/repos/acme/app") and glob.match("/repos/acme/app?per_page=1")
    assert not glob.match("/repos/a/b/app") and not glob.match("/repos/acme/apps")
    assert path_regex("/a/**/z").match("/a/b/c/z")
    assert path_regex("/v1.0/(x)").match("/v1.0/(x)") and not path_regex("/v1.0").match("/v1x0")


def test_a_method_rule_lets_its_tunnel_open_on_443_only() -> None:
    user = layer(
        "user",
        "version: 1\nrules:\n"
        "  - {action: allow, host: api.github.com, methods: [GET], port: [443, 8443]}\n"
        "  - {action: deny, host: uploads.github.com, methods: [POST]}\n",
    )
    effective = policy(user)
    assert effective.decide(Request("api.github.com", 443, "CONNECT", "")).allowed
    assert not effective.decide(Request("api.github.com", 8443, "CONNECT", "")).allowed
    # a deny of some methods never refuses the tunnel: its requests are decided inside
    assert effective.decide(Request("uploads.github.com", 443, "CONNECT", "")).rule == "default"
    assert effective.inside_hosts() == ["api.github.com", "uploads.github.com"]


def test_presets_expand_in_place_and_registries_only_read() -> None:
    user = layer("user", "version: 1\nrules:\n  - include: python\n  - include: github\n")
    effective = policy(user)
    assert effective.decide(Request("pypi.org", 443, "GET", "/simple/x/")).allowed
    upload = effective.decide(Request("upload.pypi.org", 443, "POST", "/legacy/"))
    assert not upload.allowed
    assert not effective.decide(Request("pypi.org", 443, "POST", "/legacy/")).allowed
    assert effective.decide(Request("github.com", 443, "POST", "/a/b.git/git-upload-pack")).allowed
    assert [r.preset for r in user.rules][:2] == ["python", "python"]
    assert user.rules[0].source == "user.yaml:3"


# --- layers -----------------------------------------------------------------------


def test_a_managed_deny_beats_an_allow_in_every_layer_below() -> None:
    managed = layer(
        "managed", "version: 1\nrules:\n  - {action: deny, host: gist.github.com, reason: no}\n"
    )
    allow = "version: 1\nrules:\n  - {action: allow, host: gist.github.com}\n"
    effective = policy(
        managed, layer("user", allow), layer("project", allow), hosts=("gist.github.com",)
    )
    decision = effective.decide(Request("gist.github.com", 443))
    assert (decision.allowed, decision.rule, decision.reason) == (False, "managed:1", "no")


def test_a_managed_allow_before_a_managed_deny_shadows_it() -> None:
    managed = layer(
        "managed",
        "version: 1\nrules:\n"
        "  - {action: allow, host: api.example.com}\n"
        "  - {action: deny, host: '*.example.com'}\n",
    )
    effective = policy(managed)
    assert effective.decide(Request("api.example.com", 443)).rule == "managed:1"
    assert effective.decide(Request("www.example.com", 443)).rule == "managed:2"


def test_with_default_deny_nothing_below_widens_the_managed_layer() -> None:
    managed = layer(
        "managed", "version: 1\ndefault: deny\nrules:\n  - {action: allow, host: '*.github.com'}\n"
    )
    project = layer(
        "project",
        "version: 1\nrules:\n"
        "  - {action: allow, host: evil.example}\n"
        "  - {action: deny, host: api.github.com, methods: [DELETE]}\n",
    )
    effective = policy(managed, project, hosts=("evil.example", "pypi.org"))
    assert effective.decide(Request("evil.example", 443)).rule == "managed:default"
    assert not effective.decide(Request("pypi.org", 443)).allowed
    # the layers below may still narrow what it allows
    assert effective.decide(Request("api.github.com", 443, "DELETE", "/x")).rule == "project:2"
    assert effective.decide(Request("api.github.com", 443, "GET", "/x")).rule == "managed:1"


def test_without_default_deny_the_layers_below_decide_the_rest() -> None:
    managed = layer("managed", "version: 1\nrules:\n  - {action: deny, host: evil.example}\n")
    effective = policy(managed, hosts=("pypi.org",))
    assert effective.decide(Request("pypi.org", 443)).rule == "session:1"


# --- squid ------------------------------------------------------------------------


def test_squid_rules_follow_the_decision_order() -> None:
    managed = layer(
        "managed",
        "version: 1\ndefault: deny\nrules:\n"
        "  - {action: allow, host: '*.github.com'}\n"
        "  - {action: deny, host: gist.github.com, reason: '100% no'}\n",
    )
    user = layer(
        "user",
        "version: 1\nrules:\n  - {action: allow, host: api.github.com, methods: [GET], "
        "paths: ['/repos/*/issues'], port: 8443}\n",
    )
    files = squid.compile_files(policy(managed, user))
    access = files["access.conf"].splitlines()
    lines = [x for x in access if x.startswith("http_access")]
    assert lines == [
        "http_access deny cage_path_host !cage_connect cage_path_unsafe cage_tag_path",
        "http_access deny !cage_m1 cage_m2 cage_m2_t",
        "http_access deny !cage_managed_allow cage_tag_mdefault",
        "http_access deny cage_u1 cage_u1_t cage_blocked_dst",
        "http_access allow cage_u1 cage_u1_t",
    ]
    assert "deny_info ERR_CAGE_DENY_managed_2 cage_m2_t" in access
    assert files["tail.conf"].splitlines()[1:] == [
        "http_access deny cage_m1 cage_m1_t cage_blocked_dst",
        "http_access allow cage_m1 cage_m1_t",
    ]
    acls = files["acls.conf"]
    assert "acl cage_ports port 8443\n" in acls
    assert r"acl cage_u1_u urlpath_regex ^/repos/[^/?]*/issues(\?.*)?$" in acls
    assert "acl cage_u1 any-of cage_u1_r cage_u1_c\n" in acls
    assert "acl cage_m1_h dstdom_regex -n -i \\.github\\.com$\n" in acls
    bump = files["bump.conf"]
    assert (
        "acl cage_sni_p0_s ssl::server_name_regex --client-requested -i ^api\\.github\\.com$"
        in bump
    )
    assert "acl cage_bump_sni all-of cage_sni_p0_d cage_sni_p0_s" in bump
    assert "Reason: 100%% no" in files["pages/ERR_CAGE_DENY_managed_2"]


def test_a_path_a_server_could_resolve_elsewhere_is_refused_at_a_path_rules_host() -> None:
    """Paths are decided decoded, as squid's urlpath_regex reads them; a dot or empty
    segment at a host a path rule names is refused before any rule; a deny path rule
    holds in any case, an allow only as written."""
    user = layer(
        "user",
        "version: 1\nrules:\n"
        "  - {action: deny, host: github.com, paths: [/acme/secret/]}\n"
        "  - {action: allow, host: github.com, methods: [GET]}\n"
        "  - {action: allow, host: api.github.com, paths: [/repos/acme/app/]}\n"
        "  - {action: allow, host: pypi.org, methods: [GET]}\n",
    )
    found = policy(user)
    refused = [
        ("api.github.com", "/repos/acme/app/../../other/x"),
        ("api.github.com", "/repos/acme/app/%2e%2E/%2e%2e/other"),
        ("api.github.com", "/repos/acme/app/..%2f..%2fother"),
        ("api.github.com", "/repos/acme/app/..;/..;/other"),
        ("api.github.com", "/repos/acme/app/..%5c..%5cother"),
        ("api.github.com", "/repos/acme/app/..?x"),
        ("github.com", "/acme/./secret/x"),
        ("github.com", "/acme//secret/x"),
        ("github.com", "/acme/%2fsecret/x"),
        ("github.com", "/ACME/Secret/x"),
        ("github.com", "/acme/sec%72et/x"),
    ]
    for host, path in refused:
        decision = found.decide(Request(host, 443, "GET", path))
        assert not decision.allowed, (host, path)
    allowed = [
        ("api.github.com", "/repos/acme/app/pulls?next=https://example.org/"),
        ("github.com", "/acme/app.git/info/refs"),
        ("pypi.org", "/simple/a/../b/"),  # no path rule names pypi.org: its paths are free
    ]
    for host, path in allowed:
        assert found.decide(Request(host, 443, "GET", path)).allowed, (host, path)
    assert not found.decide(Request("api.github.com", 443, "GET", "/REPOS/acme/app/")).allowed
    assert "dot segment" in found.decide(Request("github.com", 443, "GET", "/a/../b")).reason
    files = squid.compile_files(found)
    acls = files["acls.conf"]
    assert "acl cage_path_host dstdom_regex -n -i ^github\\.com$ ^api\\.github\\.com$\n" in acls
    for pattern in rules.UNSAFE_PATHS:
        assert pattern in acls
    assert "acl cage_u1_u urlpath_regex -i ^/acme/secret/\n" in acls
    assert "acl cage_u3_u urlpath_regex ^/repos/acme/app/\n" in acls
    assert "deny_info ERR_CAGE_PATH cage_tag_path" in files["access.conf"]
    assert "dot segment" in files["pages/ERR_CAGE_PATH"]


def test_no_policy_compiles_to_comments_only() -> None:
    files = squid.compile_files(policy())
    for name in squid.FILES:
        assert all(
            not x or x.startswith(("#", "acl cage_tag", "acl cage_not_tls_port", "deny_info"))
            for x in files[name].splitlines()
        ), name


# --- the files on the host --------------------------------------------------------


def test_the_managed_file_must_be_root_owned(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\n")
    path.chmod(0o644)
    if os.getuid() == 0:
        os.chown(path, 0, 0)
        assert layers.read_layer("managed", path) is not None
        os.chown(path, 1000, 1000)
    with pytest.raises(CageError, match="owned by root"):
        layers.read_layer("managed", path)


def test_the_managed_file_must_not_be_writable_by_others(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\n")
    path.chmod(0o666)
    with pytest.raises(CageError, match="writable by root only"):
        layers.read_layer("managed", path)


def test_a_bad_file_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\nrules:\n  - {action: allow, host: '*.com'}\n")
    with pytest.raises(BadInput, match=r"policy.yaml:3: host"):
        layers.read_layer("user", path)


def test_a_read_write_mount_gives_no_project_layer(tmp_path: Path) -> None:
    from claude_cage.record import Mount

    (tmp_path / ".claude-cage").mkdir()
    (tmp_path / ".claude-cage/policy.yaml").write_text("version: 1\n")
    found, why = layers.project_dir(None, [Mount(str(tmp_path), "/workspace/p", False)])
    assert found is None and "read-write" in why
    found, _ = layers.project_dir(None, [Mount(str(tmp_path), "/workspace/p", True)])
    assert found == tmp_path


def test_a_project_file_the_session_can_write_is_not_read(tmp_path: Path) -> None:
    """The agent writes the host's copy through a read-write mount that holds the
    read-only mount or the clone (`--mount ~/src --mount ~/src/app:ro`), or through a
    link, or plants a file in a read-write mount listed first to make the read-only
    project's denies go: the project file it can change is never read."""
    from claude_cage.record import Mount

    src = tmp_path / "src"
    app = src / "app"
    (app / ".claude-cage").mkdir(parents=True)
    (app / ".claude-cage/policy.yaml").write_text("version: 1\n")
    outer = Mount(str(src), "/workspace/src", False)
    inner = Mount(str(app), "/workspace/app", True)
    for mounts in ([outer, inner], [inner, outer]):
        found, why = layers.project_dir(None, mounts)
        assert found is None and "read-write mount" in why, mounts
    found, why = layers.project_dir(str(app), [outer])  # --clone src/app --mount src
    assert found is None and "read-write mount" in why
    dot = Mount(str(app / ".claude-cage"), "/workspace/.claude-cage", False)
    assert layers.project_dir(str(app), [dot])[0] is None
    # a file the agent plants in a read-write mount listed first hides nothing
    other = tmp_path / "other"
    (other / ".claude-cage").mkdir(parents=True)
    (other / ".claude-cage/policy.yaml").write_text("version: 1\n")
    ro = Mount(str(other), "/workspace/other", True)
    found, _ = layers.project_dir(None, [Mount(str(app), "/workspace/app", False), ro])
    assert found == other
    # a link out of the project (to a file a read-write mount holds, or any other)
    (other / ".claude-cage/policy.yaml").unlink()
    (other / ".claude-cage/policy.yaml").symlink_to(app / ".claude-cage/policy.yaml")
    for mounts in ([ro], [ro, Mount(str(app), "/workspace/app", False)]):
        found, why = layers.project_dir(None, mounts)
        assert found is None and why, mounts
    assert layers.project_dir(str(other), [])[0] is None


def test_a_fifo_or_a_device_as_a_policy_file_is_refused_unread(tmp_path: Path) -> None:
    import signal

    fifo = tmp_path / "policy.yaml"
    os.mkfifo(fifo)

    def hung(*_: object) -> None:
        raise TimeoutError("the reader waits for a writer of the fifo")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(5)
    try:
        for name, path in (("project", fifo), ("user", Path("/dev/zero"))):
            with pytest.raises(BadInput, match="not a regular file"):
                layers.read_layer(name, path)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_a_yaml_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    paths = ", ".join(f"/{i}" for i in range(2000))
    bomb = (
        f"version: 1\nrules: [&r {{action: allow, host: a.example.com, paths: [{paths}]}}, "
        + ", ".join(["*r"] * 2000)
        + "]\n"
    )
    parsed, problems = schema.parse(bomb)
    assert parsed is None and "alias" in problems[0].message
    deep = "version: 1\nrules: " + "[" * 50_000 + "]" * 50_000 + "\n"
    parsed, problems = schema.parse(deep)
    assert parsed is None and "deep" in problems[0].message


def test_the_session_copy_round_trips(tmp_path: Path) -> None:
    given = (layer("user", "version: 1\nrules:\n  - include: node\n"),)
    layers.save(tmp_path, given, learn=True)
    assert layers.saved(tmp_path) == (given, True)
    (tmp_path / "policy.json").write_text("{")
    with pytest.raises(CageError, match="damaged"):
        layers.saved(tmp_path)


# --- learn mode and suggest -------------------------------------------------------


def test_learn_mode_allows_only_what_no_rule_decides() -> None:
    managed = layer("managed", "version: 1\nrules:\n  - {action: deny, host: evil.example}\n")
    user = layer("user", "version: 1\nrules:\n  - {action: deny, host: pypi.org}\n")
    learning = Policy((managed, user, session_layer(())), learn=True)
    assert learning.decide(Request("new.example.com", 8080)).rule == "learn"
    assert learning.decide(Request("new.example.com", 8080)).allowed
    assert learning.decide(Request("evil.example", 443)).rule == "managed:1"
    assert not learning.decide(Request("pypi.org", 443)).allowed
    ceiling = layer("managed", "version: 1\ndefault: deny\n")
    assert not Policy((ceiling,), learn=True).decide(Request("a.example.com", 443)).allowed
    files = squid.compile_files(learning)
    assert files["tail.conf"].splitlines()[-2:] == [
        "http_access deny all cage_tag_learn cage_blocked_dst",
        "http_access allow all cage_tag_learn",
    ]
    assert "acl cage_ports port 1-65535" in files["acls.conf"]


def test_suggest_writes_the_least_policy_that_allows_what_was_done() -> None:
    from claude_cage.egress import parse_log
    from claude_cage.netpolicy.suggest import suggest

    log = "\n".join(
        [
            "1 1764000000.000 api.github.com 443 200 200 TCP_TUNNEL - CONNECT learn -",
            "2 1764000000.000 api.github.com 443 200 200 TCP_MISS - GET user:1 /repos/a?x=1",
            "3 1764000000.000 api.github.com 443 201 201 TCP_MISS - POST learn /repos/a",
            "4 1764000000.000 api.github.com 443 200 200 TCP_MISS - GET learn /user",
            "5 1764000000.000 pypi.org 443 200 200 TCP_TUNNEL - CONNECT learn -",
            "6 1764000000.000 model.internal 8080 200 200 TCP_MISS - GET learn /v1",
            "7 1764000000.000 evil.example 443 403 - TCP_DENIED ERR_CAGE_DENY_managed_1 "
            "CONNECT managed:1 -",
        ]
    )
    text = suggest(parse_log(log), (80, 443), "web")
    parsed, problems = schema.parse(text)
    assert problems == [] and parsed is not None
    got = [(r.host, r.ports, r.methods, r.paths) for r in parsed.rules]
    assert got == [
        ("api.github.com", (), ("GET", "POST"), ("/repos/a",)),
        ("api.github.com", (), ("GET",), ("/user",)),
        ("model.internal", (8080,), ("GET",), ("/v1",)),
        ("pypi.org", (), (), ()),
    ]
    replay = Policy((layer_from_file("user", parsed, "s.yaml"), session_layer(())))
    assert replay.decide(Request("api.github.com", 443, "POST", "/repos/a")).allowed
    assert not replay.decide(Request("api.github.com", 443, "DELETE", "/repos/a")).allowed
    assert not replay.decide(Request("evil.example", 443)).allowed


# --- the commands that need no engine ---------------------------------------------


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAGE_")}
    env.update(CAGE_DATA_DIR=str(tmp_path / "data"), CAGE_CONFIG_DIR=str(tmp_path / "config"))
    return subprocess.run(
        [sys.executable, "-m", "claude_cage", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )


def test_validate_prints_one_line_per_problem_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\nrules:\n  - {action: allow, host: '*.co.uk'}\n"
        "  - {action: nope, host: a.b.com}\n"
    )
    result = cli(tmp_path, "policy", "validate", str(bad))
    assert result.returncode == 2
    assert [line.split(": ", 1)[0] for line in result.stdout.splitlines()] == [
        f"{bad}:3",
        f"{bad}:4",
    ]
    assert "Traceback" not in result.stderr
    good = tmp_path / "good.yaml"
    good.write_text("version: 1\nrules:\n  - include: github\n")
    assert cli(tmp_path, "policy", "validate", str(good)).returncode == 0


def test_check_exits_0_when_allowed_and_1_when_denied(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config/policy.yaml").write_text(
        "version: 1\nrules:\n  - {action: deny, host: api.anthropic.com, paths: [/x], reason: r}\n"
    )
    allowed = cli(tmp_path, "policy", "check", "https://api.anthropic.com/v1/messages")
    assert allowed.returncode == 0 and "allowed by session:1" in allowed.stdout
    denied = cli(tmp_path, "policy", "check", "https://api.anthropic.com/x", "--json")
    assert denied.returncode == 1
    assert json.loads(denied.stdout)["rule"] == "user:1"
    assert json.loads(denied.stdout)["reason"] == "r"
    unknown = cli(tmp_path, "policy", "check", "https://example.org/")
    assert unknown.returncode == 1 and "denied by default" in unknown.stdout
    broken = cli(tmp_path, "policy", "check", "ftp://x")
    assert broken.returncode == 2 and "Traceback" not in broken.stderr


def test_a_damaged_user_policy_is_one_line_with_its_place(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config/policy.yaml").write_bytes(b"version: 1\nrules: [\x00")
    result = cli(tmp_path, "policy", "show")
    assert result.returncode == 2, result.stderr
    assert "policy.yaml" in result.stderr and "Traceback" not in result.stderr


def test_the_json_of_show_and_check_is_pinned(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config/policy.yaml").write_text("version: 1\nrules:\n  - include: python\n")
    shown = json.loads(cli(tmp_path, "policy", "show", "--json").stdout)
    assert shown.keys() == {"version", "name", "ports", "layers"}
    assert [x["layer"] for x in shown["layers"]] == ["managed", "user", "project", "session"]
    assert shown["layers"][1].keys() == {"layer", "file", "default", "note", "rules"}
    assert shown["layers"][1]["rules"][0].keys() == {
        "rule", "action", "host", "ports", "methods", "paths", "reason", "source", "preset"
    }  # fmt: skip
    checked = json.loads(cli(tmp_path, "policy", "check", "pypi.org/simple/", "--json").stdout)
    assert checked.keys() == {
        "version", "name", "host", "port", "method", "path", "allowed", "rule", "source", "reason"
    }  # fmt: skip
    assert (checked["rule"], checked["allowed"]) == ("user:1", True)
    text = cli(tmp_path, "policy", "show").stdout
    assert text.splitlines()[0].split() == ["RULE", "ACTION", "HOST", "PORTS", "REQUESTS", "FROM"]
    assert "user:1" in text and "GET HEAD" in text and "(include python)" in text


def test_a_deny_without_ports_holds_on_every_port() -> None:
    # A project rule (or learn mode) allowing another port must not reopen a host the
    # managed layer denies: "deny *.tunnels.example.com" covers 0.tcp.tunnels.example.com:12345.
    managed = layer(
        "managed", "version: 1\nrules:\n  - {action: deny, host: '*.tunnels.example.com'}\n"
    )
    project = layer(
        "project",
        "version: 1\nrules:\n  - {action: allow, host: '*.tunnels.example.com', port: 12345}\n",
    )
    tunnel = Request("0.tcp.tunnels.example.com", 12345, "CONNECT")
    for learn in (False, True):
        found = Policy((managed, project, session_layer(())), learn=learn)
        decided = found.decide(tunnel)
        assert not decided.allowed and decided.rule.startswith("managed:"), decided
    acls = squid.compile_files(policy(managed))["acls.conf"]
    assert "acl cage_m1 all-of cage_m1_h\n" in acls  # no port list: every port


def test_a_method_deny_holds_for_a_tunnel_it_cannot_decrypt() -> None:
    managed = layer(
        "managed",
        "version: 1\nrules:\n  - {action: deny, host: api.example.com, methods: [POST]}\n",
    )
    user = layer(
        "user", "version: 1\nrules:\n  - {action: allow, host: api.example.com, port: 8443}\n"
    )
    found = policy(managed, user)
    assert not found.decide(Request("api.example.com", 8443, "CONNECT")).allowed
    acls = squid.compile_files(found)["acls.conf"]
    assert "acl cage_m1_x all-of cage_m1_h cage_connect cage_not_tls_port" in acls


def test_suggest_never_widens_nor_stops_on_what_the_session_asked_for() -> None:
    """In learn mode squid passes a CONNECT to `*.example.com` on (it fails upstream,
    which counts as reached); suggest must not turn it into a pattern over every
    subdomain, and a host no file can hold must not stop the whole suggestion."""
    from claude_cage.egress import parse_log
    from claude_cage.netpolicy.suggest import suggest

    log = "\n".join(
        [
            "1 1764000000.000 *.wild.example.com 443 500 - NONE_NONE ERR_CANNOT_FORWARD "
            "CONNECT learn -",
            "2 1764000000.000 *.wild2.example.com 80 502 - TCP_MISS ERR_READ_ERROR GET learn /x",
            "3 1764000000.000 a$(id)b.example.com 443 500 - NONE_NONE ERR_CANNOT_FORWARD "
            "CONNECT learn -",
            "4 1764000000.000 a;reboot;b.example.com 443 500 - NONE_NONE ERR_CANNOT_FORWARD "
            "CONNECT learn -",
            "5 1764000000.000 pypi.org 443 200 200 TCP_TUNNEL - CONNECT learn -",
        ]
    )
    text = suggest(parse_log(log), (80, 443), "web")
    parsed, problems = schema.parse(text)
    assert problems == [] and parsed is not None
    assert [(r.host, r.paths) for r in parsed.rules] == [("pypi.org", ())]
    assert "*" not in text.split("rules:", 1)[1] and "$(" not in text and "reboot" not in text
    assert "# 4 request(s) left out" in text


def test_suggest_write_never_follows_a_link_the_session_planted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--write .claude-cage/policy.yaml` in a directory the session writes (a --mount):
    a link it left at the temporary name must not turn the write into one of the
    user's files (~/.bashrc: the suggestion's paths hold `$(...)` of the session's)."""
    from types import SimpleNamespace

    from claude_cage.egress import parse_log
    from claude_cage.operations import egress as egress_ops
    from claude_cage.operations import netpolicy as ops

    log = "1 1764000000.000 a.example.com 80 200 200 TCP_MISS - GET learn /x$(touch$IFS$9/tmp/p)"
    monkeypatch.setattr(ops, "filtered_session", lambda *a: None)
    monkeypatch.setattr(ops, "_ports", lambda *a: (80, 443))
    monkeypatch.setattr(ops, "read_log", lambda *a: egress_ops.EgressLog("web", parse_log(log)))
    victim = tmp_path / "bashrc"
    victim.write_text("the user's own\n")
    project = tmp_path / "project" / ".claude-cage"
    project.mkdir(parents=True)
    (project / "policy.yaml.tmp").symlink_to(victim)
    target = project / "policy.yaml"
    ctx = SimpleNamespace(config={}, store=None)
    result = ops.suggest(ctx, "web", str(target))  # type: ignore[arg-type]
    assert victim.read_text() == "the user's own\n"
    assert not target.is_symlink() and target.read_text() == result.text
    assert sorted(p.name for p in project.iterdir()) == ["policy.yaml", "policy.yaml.tmp"]
