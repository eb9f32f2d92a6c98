"""The egress policy file on the real engine: method and path rules over HTTPS (the
companion decrypts those hosts), presets that only read, live `policy apply`, and the
layers a session cannot widen: the managed one, and the project file the session holds a
copy of (the host's copy is the one read).

The hosts are the tests' own servers under real names (api.github.com, pypi.org), with
certificates from the test CA that only the companion trusts.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Cage
from tests.integration.conftest import TestHost, make_cert, start_test_host
from tests.polling import wait_until

pytestmark = pytest.mark.engine

READ_ONLY_API = """\
version: 1
rules:
  - action: deny
    host: api.github.com
    methods: [POST, PUT, PATCH, DELETE]
    reason: the GitHub API is read-only for agents here
  - action: allow
    host: api.github.com
  - include: python
"""


@dataclass
class World:
    github: TestHost  # api.github.com and github.com
    pypi: TestHost  # pypi.org and files.pythonhosted.org


@pytest.fixture(scope="module")
def world(cage_module: Cage, test_ca: Path) -> Iterator[World]:
    prefix = uuid.uuid4().hex[:6]
    hosts: list[TestHost] = []
    try:
        hosts.append(
            start_test_host(
                "api.github.com",
                prefix,
                make_cert(test_ca, ("api.github.com", "github.com")),
                aliases=("github.com",),
            )
        )
        hosts.append(
            start_test_host(
                "pypi.org",
                prefix,
                make_cert(test_ca, ("pypi.org", "files.pythonhosted.org")),
                aliases=("files.pythonhosted.org",),
            )
        )
        cage_module.env["CAGE_UPSTREAM_CA_CERTS"] = str(test_ca / "ca.pem")
        yield World(*hosts)
    finally:
        if hosts:
            subprocess.run(
                ["docker", "rm", "-f", *(h.container for h in hosts)], capture_output=True
            )


def write_policy(cage: Cage, text: str) -> Path:
    path = cage.config_dir / "policy.yaml"
    path.write_text(text)
    return path


def curl(cage: Cage, name: str, method: str, url: str) -> tuple[str, str]:
    """(status, body) of one request from inside the session: the proxy's answer to
    the CONNECT when it refused that. A tunnelled host shows the session its own
    certificate, from the test CA the session does not trust: hence -k."""
    result = cage(
        "exec",
        name,
        "--",
        "bash",
        "-c",
        f"rm -f /tmp/body; curl -ksS -m 20 -X {method} -o /tmp/body "
        f"-w '%{{http_code}} %{{http_connect}}' '{url}'; echo; cat /tmp/body 2>/dev/null",
        timeout=60,
    )
    line, _, body = result.stdout.partition("\n")
    code, _, connect = line.strip().partition(" ")
    status = code if code not in ("", "000") else connect
    return status or result.stderr.strip(), body


def received(host: TestHost, marker: str) -> list[dict]:
    return [r for r in host.received() if marker in r["path"]]


def rows(cage: Cage, name: str) -> list[dict]:
    result = cage("egress", name, "--json")
    assert result.code == 0, result.output
    return result.json()["requests"]


@pytest.fixture(scope="module")
def read_only(cage_module: Cage, world: World) -> str:
    write_policy(cage_module, READ_ONLY_API)
    name = cage_module.name("ro")
    result = cage_module("start", "--name", name, "--detach")
    assert result.code == 0, result.output
    return name


def test_get_is_allowed_and_post_refused_with_the_reason(
    cage_module: Cage, world: World, read_only: str
) -> None:
    marker = uuid.uuid4().hex[:8]
    status, _ = curl(cage_module, read_only, "GET", f"https://api.github.com/repos/{marker}")
    assert status == "200"
    status, body = curl(cage_module, read_only, "POST", f"https://api.github.com/x/{marker}p")
    assert status == "403"
    assert "the GitHub API is read-only for agents here" in body
    assert "user:1" in body
    assert [r["method"] for r in received(world.github, marker)] == ["GET"]
    seen = [r for r in rows(cage_module, read_only) if marker in r["path"]]
    assert [(r["method"], r["result"], r["rule"]) for r in seen] == [
        ("GET", "allowed", "user:2"),
        ("POST", "blocked-rule", "user:1"),
    ]
    blocked = cage_module("events", "--type", "egress", "--json")
    assert "user:1" in blocked.output


def test_policy_check_names_the_deciding_rule(cage_module: Cage, read_only: str) -> None:
    allowed = cage_module("policy", "check", read_only, "https://api.github.com/user")
    assert allowed.code == 0, allowed.output
    assert "allowed by user:2" in allowed.stdout
    denied = cage_module(
        "policy", "check", read_only, "https://api.github.com/user", "--method", "post"
    )
    assert denied.code == 1
    assert "denied by user:1" in denied.stdout and "read-only" in denied.stdout
    other = cage_module("policy", "check", read_only, "https://evil.example/x", "--json")
    assert other.code == 1 and other.json()["rule"] == "default"


def test_policy_show_names_layer_file_and_line(cage_module: Cage, read_only: str) -> None:
    shown = cage_module("policy", "show", read_only, "--json")
    assert shown.code == 0, shown.output
    user = next(x for x in shown.json()["layers"] if x["layer"] == "user")
    assert [r["source"].rsplit("/", 1)[1] for r in user["rules"][:3]] == [
        "policy.yaml:3",
        "policy.yaml:7",
        "policy.yaml:9",
    ]
    assert user["rules"][2]["preset"] == "python"


def test_a_registry_preset_refuses_a_publish(
    cage_module: Cage, world: World, read_only: str
) -> None:
    marker = uuid.uuid4().hex[:8]
    status, _ = curl(cage_module, read_only, "GET", f"https://pypi.org/simple/{marker}/")
    assert status == "200"
    for method, url in (
        ("POST", f"https://pypi.org/legacy/?{marker}"),  # twine upload
        ("PUT", f"https://files.pythonhosted.org/{marker}"),  # a publish-style PUT
    ):
        status, body = curl(cage_module, read_only, method, url)
        assert status == "403", (method, status, body)
    assert [r["method"] for r in received(world.pypi, marker)] == ["GET"]


# --- the session's presets: --allow-preset and allow --preset --------------------------

RULE = re.compile(r"^((managed|user|project|session):\d+|managed:default|default)$")


def test_allow_preset_reads_from_the_registry_and_refuses_a_publish(
    cage: Cage, world: World, test_ca: Path
) -> None:
    own_cage(cage, test_ca)
    name = cage.name("preset")
    started = cage("start", "--name", name, "--detach", "--allow-preset", "python")
    assert started.code == 0, started.output
    marker = uuid.uuid4().hex[:8]
    assert curl(cage, name, "GET", f"https://pypi.org/simple/{marker}/")[0] == "200"
    # the test server has no HEAD: its own 501 shows the request reached it
    assert curl(cage, name, "HEAD", f"https://files.pythonhosted.org/{marker}h")[0] == "501"
    for method, url in (
        ("POST", f"https://pypi.org/legacy/?{marker}"),  # twine upload
        ("PUT", f"https://files.pythonhosted.org/{marker}"),  # a publish-style PUT
    ):
        status, body = curl(cage, name, method, url)
        assert status == "403", (method, status, body)
        assert "python preset" in body and "not publishing" in body, body
    assert [r["method"] for r in received(world.pypi, marker)] == ["GET"]
    seen = [(r["method"], r["result"], r["rule"]) for r in rows(cage, name) if marker in r["path"]]
    assert seen == [
        ("GET", "allowed", "session:1"),
        ("HEAD", "failed", "session:2"),
        ("POST", "blocked-rule", "default"),
        ("PUT", "blocked-rule", "default"),
    ]
    checked = cage("policy", "check", name, "https://pypi.org/legacy/", "--method", "POST")
    assert checked.code == 1 and "denied by default" in checked.stdout
    assert "not publishing" in checked.stdout


CLIENT = Path(__file__).with_name("proxy_client.py").read_text()


def test_a_rule_host_is_never_spliced_whatever_the_sni(
    cage: Cage, world: World, test_ca: Path
) -> None:
    """The attack: CONNECT to a host the preset decrypts, then a ClientHello with no SNI
    or another name, hoping squid splices and the session holds its own TLS to the
    registry (where a PUT publishes). Each is ended before it reaches the server."""
    own_cage(cage, test_ca)
    name = cage.name("sni")
    started = cage("start", "--name", name, "--detach", "--allow-preset", "python")
    assert started.code == 0, started.output
    marker = uuid.uuid4().hex[:8]
    put = {"send": f"PUT /{marker}/put HTTP/1.1\r\nHost: pypi.org\r\n\r\n"}
    get = {"send": f"GET /simple/{marker}/ HTTP/1.1\r\nHost: pypi.org\r\n\r\n"}
    connect = {"connect": "pypi.org:443"}
    snis = ("files.pythonhosted.org", "pypi.org.", "example.com")
    attacks = [[connect, {"tls": sni, "verify": False}, put] for sni in snis]
    no_sni = [[connect, {"tls": None}, put]]
    normal = [[connect, {"tls": "pypi.org"}, get], [connect, {"tls": "pypi.org"}, put]]
    connections = attacks + no_sni + normal
    result = cage("exec", name, "--", "python3", "-c", CLIENT, json.dumps(connections))
    assert result.code == 0, result.output
    answers = json.loads(result.stdout)
    for sni, answer in zip(snis, answers[: len(snis)], strict=True):
        # the CONNECT itself is allowed; the TLS is ended, so no request goes through
        assert answer[0] == "200" and answer[1].startswith("error:"), (sni, answer)
    # no SNI: squid takes the CONNECT's host as the name and decrypts, so the preset
    # refuses the PUT (a splice would have handed it to the registry)
    assert answers[len(snis) :] == [
        ["200", "tls", "403"],
        ["200", "tls", "200"],
        ["200", "tls", "403"],
    ]
    assert [r["method"] for r in received(world.pypi, marker)] == ["GET"]


PATH_RULES = """\
version: 1
rules:
  - action: deny
    host: github.com
    paths: [/acme/secret/]
    reason: not this repository
  - action: allow
    host: github.com
    methods: [GET, POST]
  - action: allow
    host: api.github.com
    paths: [/repos/acme/app/]
"""


def test_a_path_rule_cannot_be_walked_around(cage: Cage, world: World, test_ca: Path) -> None:
    """The attack: a path that a server resolves to another one than the rules saw: a
    dot segment (plain, encoded, `..;`, with a backslash) out of an allowed prefix or
    into a denied one, an empty segment (`//`, `%2f`), another case (GitHub's owner and
    repository names are not case-sensitive). Each is refused before it leaves."""
    own_cage(cage, test_ca)
    write_policy(cage, PATH_RULES)
    name = cage.name("paths")
    started = cage("start", "--name", name, "--detach")
    assert started.code == 0, started.output
    m = uuid.uuid4().hex[:8]
    attacks = [
        ("api.github.com", f"/repos/acme/app/../../other/{m}/1"),
        ("api.github.com", f"/repos/acme/app/%2e%2e/%2E%2E/other/{m}/2"),
        ("api.github.com", f"/repos/acme/app/..%2f..%2fother/{m}/3"),
        ("api.github.com", f"/repos/acme/app/..;/..;/other/{m}/4"),
        ("api.github.com", f"/repos/acme/app/..%5c..%5cother/{m}/5"),
        ("api.github.com", f"/repos/acme/app/..?{m}/6"),
        ("github.com", f"/acme/./secret/{m}/7"),
        ("github.com", f"/acme//secret/{m}/8"),
        ("github.com", f"/acme/%2fsecret/{m}/9"),
        ("github.com", f"/other/../acme/secret/{m}/10"),
        ("github.com", f"/ACME/Secret/{m}/11"),
    ]
    fine = [
        ("api.github.com", f"/repos/acme/app/{m}/ok?next=https://example.org/"),
        ("github.com", f"/acme/app.git/{m}/ok"),
    ]
    connections = [
        [
            {"connect": f"{host}:443"},
            {"tls": host},
            {"send": f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n"},
        ]
        for host, path in attacks + fine
    ]
    result = cage("exec", name, "--", "python3", "-c", CLIENT, json.dumps(connections))
    assert result.code == 0, result.output
    answers = json.loads(result.stdout)
    statuses = {path: answer[-1] for (_, path), answer in zip(attacks + fine, answers, strict=True)}
    assert statuses == {path: "403" for _, path in attacks} | {path: "200" for _, path in fine}
    assert sorted(r["path"] for r in received(world.github, m)) == sorted(p for _, p in fine)
    checked = cage("policy", "check", name, "https://api.github.com/repos/acme/app/%2e%2e/x")
    assert checked.code == 1, checked.output


def test_allow_preset_live_then_a_written_rule_allows_the_publish(
    cage: Cage, world: World, test_ca: Path
) -> None:
    own_cage(cage, test_ca)
    name = cage.name("livepreset")
    started = cage("start", "--name", name, "--detach", "--allow-host", "api.github.com")
    assert started.code == 0, started.output
    marker = uuid.uuid4().hex[:8]
    assert curl(cage, name, "GET", f"https://pypi.org/simple/{marker}a/")[0] == "403"
    allowed = cage("allow", name, "--preset", "python")
    assert allowed.code == 0, allowed.output
    assert curl(cage, name, "GET", f"https://pypi.org/simple/{marker}/")[0] == "200"
    status, body = curl(cage, name, "POST", f"https://pypi.org/legacy/?{marker}")
    assert status == "403" and "not publishing" in body, body
    assert "preset python" in allowed.stderr and "applies now" in allowed.stderr
    assert [r["method"] for r in received(world.pypi, marker)] == ["GET"]
    # publishing is a rule someone writes, on purpose
    write_policy(
        cage,
        "version: 1\nrules:\n"
        "  - {action: allow, host: pypi.org, methods: [POST], paths: [/legacy/]}\n",
    )
    assert cage("policy", "apply", name).code == 0
    assert curl(cage, name, "POST", f"https://pypi.org/legacy/?{marker}b")[0] == "200"
    # and the preset goes again, live
    assert cage("allow", name, "--remove", "--preset", "python").code == 0
    assert curl(cage, name, "GET", f"https://pypi.org/simple/{marker}c/")[0] == "403"
    assert [r["method"] for r in received(world.pypi, marker)] == ["GET", "POST"]


def test_every_row_and_blocked_event_names_its_rule(
    cage: Cage, world: World, test_ca: Path
) -> None:
    own_cage(cage, test_ca)
    name = cage.name("rules")
    started = cage(
        "start", "--name", name, "--detach", "--allow-preset", "python",
        "--allow-host", "api.github.com",
    )  # fmt: skip
    assert started.code == 0, started.output
    marker = uuid.uuid4().hex[:8]
    curl(cage, name, "GET", f"https://api.github.com/{marker}")  # a tunnel
    curl(cage, name, "GET", f"https://pypi.org/simple/{marker}/")  # decrypted, preset
    curl(cage, name, "PUT", f"https://pypi.org/{marker}")  # the preset's refusal
    curl(cage, name, "GET", f"https://evil.example/{marker}")  # no rule
    curl(cage, name, "GET", f"https://api.github.com:8443/{marker}")  # a closed port
    curl(cage, name, "GET", f"https://10.1.2.3/{marker}")  # an IP literal
    found = rows(cage, name)
    assert all(RULE.match(r["rule"]) for r in found), [(r["host"], r["rule"]) for r in found]
    by_host = {(r["host"], r["port"], r["method"]): r["rule"] for r in found}
    # the allowlist is numbered after the preset's two rules: the four default hosts,
    # then api.github.com
    assert by_host[("api.github.com", 443, "CONNECT")] == "session:7"
    assert by_host[("pypi.org", 443, "GET")] == "session:1"
    assert by_host[("pypi.org", 443, "PUT")] == "default"
    assert by_host[("evil.example", 443, "CONNECT")] == "default"
    assert by_host[("api.github.com", 8443, "CONNECT")] == "default"
    text = cage("egress", name).stdout
    assert "session:7" in text and "default" in text

    def blocked() -> list[dict]:
        result = cage("events", "--type", "egress", "--session", name, "--json")
        values = [e["value"] for e in result.json()["events"] if "host" in e["value"]]
        return values if len(values) >= 4 else []

    events = wait_until(blocked, 30, "the blocked events")
    assert all(RULE.match(v["rule"]) for v in events), events
    assert {v["host"] for v in events} >= {"pypi.org", "evil.example", "api.github.com"}


# --- live apply, and the layers a session cannot widen ------------------------------


def own_cage(cage: Cage, test_ca: Path) -> Cage:
    cage.env["CAGE_UPSTREAM_CA_CERTS"] = str(test_ca / "ca.pem")
    return cage


def test_policy_apply_changes_a_running_session(cage: Cage, world: World, test_ca: Path) -> None:
    own_cage(cage, test_ca)
    write_policy(cage, "version: 1\nrules:\n  - {action: allow, host: api.github.com}\n")
    name = cage.name("apply")
    assert cage("start", "--name", name, "--detach").code == 0
    marker = uuid.uuid4().hex[:8]
    assert curl(cage, name, "GET", f"https://api.github.com/secret/{marker}")[0] == "200"
    write_policy(
        cage,
        "version: 1\nrules:\n"
        "  - {action: deny, host: api.github.com, paths: [/secret/], reason: not secrets}\n"
        "  - {action: allow, host: api.github.com}\n",
    )
    applied = cage("policy", "apply", name)
    assert applied.code == 0, applied.output
    assert "applies now" in applied.stderr
    status, body = curl(cage, name, "GET", f"https://api.github.com/secret/{marker}b")
    assert status == "403" and "not secrets" in body
    assert curl(cage, name, "GET", f"https://api.github.com/public/{marker}")[0] == "200"
    assert [r["path"] for r in received(world.github, marker)] == [
        f"/secret/{marker}",
        f"/public/{marker}",
    ]


PROJECT_POLICY = """\
version: 1
rules:
  - action: deny
    host: api.github.com
    methods: [POST]
    reason: project policy - read only
  - action: allow
    host: api.github.com
"""
WIDER = "version: 1\\nrules:\\n  - {action: allow, host: api.github.com}\\n"


def test_the_project_policy_is_the_hosts_copy_not_the_sessions(
    cage: Cage, world: World, test_ca: Path, tmp_path: Path
) -> None:
    from tests.integration.workspace_helpers import git, make_repo

    own_cage(cage, test_ca)
    repo = make_repo(tmp_path / "app")
    (repo / ".claude-cage").mkdir()
    (repo / ".claude-cage/policy.yaml").write_text(PROJECT_POLICY)
    git(repo, "add", ".claude-cage")
    git(repo, "commit", "-qm", "policy")
    name = cage.name("proj")
    started = cage("start", "--name", name, "--detach", "--clone", str(repo))
    assert started.code == 0, started.output
    marker = uuid.uuid4().hex[:8]
    assert curl(cage, name, "POST", f"https://api.github.com/{marker}")[0] == "403"
    # the agent rewrites (and commits) its own copy to allow the POST
    wrote = cage(
        "exec",
        name,
        "--",
        "bash",
        "-c",
        f"cd /workspace/app && printf '{WIDER}' > .claude-cage/policy.yaml && "
        "git -c user.name=a -c user.email=a@b.c commit -qam wider && "
        "cat .claude-cage/policy.yaml",
    )
    assert wrote.code == 0 and "methods" not in wrote.stdout, wrote.output
    assert cage("policy", "apply", name).code == 0
    status, body = curl(cage, name, "POST", f"https://api.github.com/{marker}b")
    assert status == "403" and "project policy - read only" in body
    assert not any(r["method"] == "POST" for r in received(world.github, marker))
    shown = cage("policy", "show", name, "--json").json()
    project = next(x for x in shown["layers"] if x["layer"] == "project")
    assert project["file"] == str(repo / ".claude-cage/policy.yaml")
    assert (repo / ".claude-cage/policy.yaml").read_text() == PROJECT_POLICY


def test_nothing_below_widens_a_managed_default_deny(
    cage: Cage, world: World, test_ca: Path, tmp_path: Path
) -> None:
    own_cage(cage, test_ca)
    managed = tmp_path / "managed.yaml"
    managed.write_text(
        "version: 1\ndefault: deny\nrules:\n"
        "  - {action: deny, host: api.github.com, methods: [DELETE], reason: managed says no}\n"
        "  - {action: allow, host: api.github.com}\n"
    )
    managed.chmod(0o644)
    cage.env["CAGE_MANAGED_POLICY"] = str(managed)
    write_policy(
        cage,
        "version: 1\nrules:\n  - {action: allow, host: api.github.com, methods: [DELETE]}\n"
        "  - include: python\n",
    )
    name = cage.name("mgd")
    started = cage("start", "--name", name, "--detach", "--allow-host", "pypi.org")
    assert started.code == 0, started.output
    marker = uuid.uuid4().hex[:8]
    assert curl(cage, name, "GET", f"https://pypi.org/simple/{marker}/")[0] == "403"
    status, body = curl(cage, name, "DELETE", f"https://api.github.com/{marker}")
    assert status == "403" and "managed says no" in body
    assert curl(cage, name, "GET", f"https://api.github.com/{marker}")[0] == "200"
    assert received(world.pypi, marker) == []
    seen = {(r["host"], r["rule"]) for r in rows(cage, name)}
    assert ("pypi.org", "managed:default") in seen
    assert ("api.github.com", "managed:1") in seen
    # a managed file someone other than root can change manages nothing: refused
    os.chown(managed, 1000, 1000)
    refused = cage("start", "--name", cage.name("mgd2"), "--detach")
    assert refused.code != 0 and "owned by root" in refused.stderr


# --- learn mode, suggest, and the suggestion replayed -------------------------------


def test_learn_then_suggest_then_replay(
    cage: Cage, world: World, test_ca: Path, tmp_path: Path
) -> None:
    own_cage(cage, test_ca)
    managed = tmp_path / "managed.yaml"
    managed.write_text("version: 1\nrules:\n  - {action: deny, host: files.pythonhosted.org}\n")
    managed.chmod(0o644)
    cage.env["CAGE_MANAGED_POLICY"] = str(managed)
    write_policy(
        cage,
        "version: 1\nrules:\n"
        "  - {action: allow, host: api.github.com, methods: [GET], paths: [/repos/]}\n",
    )
    m = uuid.uuid4().hex[:8]
    done = [
        ("GET", f"https://api.github.com/repos/{m}"),  # user:1
        ("POST", f"https://api.github.com/issues/{m}"),  # learnt, decrypted
        ("GET", f"https://pypi.org/simple/{m}/"),  # learnt, a tunnel
    ]
    name = cage.name("learn")
    started = cage("start", "--name", name, "--detach", "--learn")
    assert started.code == 0, started.output
    assert "LEARN MODE" in started.stderr
    assert "LEARN MODE" in cage("status", name).stderr
    for method, url in done:
        assert curl(cage, name, method, url)[0] == "200", (method, url)
    # the managed layer's denies still apply in learn mode
    assert curl(cage, name, "GET", f"https://files.pythonhosted.org/{m}")[0] == "403"
    suggested = tmp_path / "suggested.yaml"
    result = cage("policy", "suggest", name, "--write", str(suggested))
    assert result.code == 0, result.output
    assert cage("policy", "validate", str(suggested)).code == 0
    text = suggested.read_text()
    assert f"/issues/{m}" in text and "pypi.org" in text and "pythonhosted" not in text

    write_policy(cage, text)
    again = cage.name("replay")
    assert cage("start", "--name", again, "--detach").code == 0
    for method, url in done:
        assert curl(cage, again, method, url)[0] == "200", (method, url)
    assert curl(cage, again, "GET", f"https://github.com/{m}")[0] == "403"  # a new host
    assert curl(cage, again, "DELETE", f"https://api.github.com/issues/{m}")[0] == "403"
    assert "LEARN MODE" not in cage("status", again).stderr
