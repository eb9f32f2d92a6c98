"""Credentials added outside the sandbox: the session talks to the real host names and
its companion terminates TLS (with the session's own CA) only for hosts that have a
credential, adds it, and verifies the real server with its own TLS connection.

The "real" hosts are the tests' own servers, reached under the real names through
network aliases, with certificates from a test CA that only the companion trusts.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Cage, host_pids, inspect
from tests.integration.conftest import TestHost, make_ca, make_cert, start_test_host
from tests.integration.model import ModelServer
from tests.isolation import IMAGE_CLI

pytestmark = [pytest.mark.engine, pytest.mark.podman]

GIT_SETUP = (
    "git init -q --bare /srv/git/repo.git && git -C /srv/git/repo.git config "
    "http.receivepack true &&"
)


@dataclass
class World:
    ca_dir: Path
    api: ModelServer  # api.anthropic.com
    github: TestHost  # github.com and api.github.com, a git server under /git/
    plain: TestHost  # plain.test: allowed, no credential
    plain_cert: str  # its certificate, PEM
    untrusted: TestHost  # untrusted.test: a certificate from a CA the companion refuses


def new_key() -> str:
    return f"sk-ant-api03-test-{secrets.token_hex(16)}"


def new_token() -> str:
    return f"sk-ant-oat01-test-{secrets.token_hex(16)}"


def sh(cage: Cage, name: str, script: str, timeout: float = 60):
    return cage("exec", name, "--", "bash", "-c", script, timeout=timeout)


def received(host: TestHost | ModelServer, marker: str) -> list[dict]:
    return [r for r in host.received() if marker in r["path"]]


@pytest.fixture(scope="module")
def world(cage_module: Cage, test_ca: Path, model_server: ModelServer) -> Iterator[World]:
    prefix = uuid.uuid4().hex[:6]
    hosts: list[TestHost] = []
    try:
        github = start_test_host(
            "github.com",
            prefix,
            make_cert(test_ca, ("github.com", "api.github.com")),
            aliases=("api.github.com",),
            image=IMAGE_CLI,
            setup=GIT_SETUP,
        )
        hosts.append(github)
        plain_tls = make_cert(test_ca, ("plain.test",))
        plain = start_test_host("plain.test", prefix, plain_tls)
        hosts.append(plain)
        other_ca = test_ca / "other-ca"
        make_ca(other_ca)
        untrusted_tls = make_cert(other_ca, ("untrusted.test",))
        untrusted = start_test_host("untrusted.test", prefix, untrusted_tls)
        hosts.append(untrusted)
        cage_module.env.update(model_server.session_env())
        plain_cert = (plain_tls / "cert.pem").read_text()
        yield World(test_ca, model_server, github, plain, plain_cert, untrusted)
    finally:
        if hosts:
            subprocess.run(
                ["docker", "rm", "-f", *(h.container for h in hosts)], capture_output=True
            )


ALLOW = ("--allow-host", "plain.test", "--allow-host", "github.com")
ALLOW += ("--allow-host", "api.github.com", "--allow-host", "untrusted.test")


@pytest.fixture(scope="module")
def key_session(cage_module: Cage, world: World) -> tuple[str, str]:
    key, name = new_key(), cage_module.name("key")
    result = cage_module(
        "start", "--name", name, "--detach", *ALLOW, env={"ANTHROPIC_API_KEY": key}
    )
    assert result.code == 0, result.output
    assert key not in result.output
    return key, name


@pytest.fixture(scope="module")
def token_session(cage_module: Cage, world: World) -> tuple[str, str]:
    token, name = new_token(), cage_module.name("token")
    result = cage_module(
        "start", "--name", name, "--detach", *ALLOW, env={"CLAUDE_CODE_OAUTH_TOKEN": token}
    )
    assert result.code == 0, result.output
    return token, name


def api_call(cage: Cage, name: str, marker: str, header: str = "x-api-key: placeholder") -> str:
    """A request from inside the session to the real API name, as any client sends it."""
    result = sh(
        cage,
        name,
        f"curl -sS -m 20 -o /dev/null -w '%{{http_code}}' -H '{header}' -d '{{}}' "
        f"'https://api.anthropic.com/v1/messages/count_tokens?m={marker}'",
    )
    return (result.stdout.strip() + " " + result.stderr.strip()).strip()


# --- the model server sees the key, then the token ------------------------------------


def test_model_server_sees_the_api_key(cage_module: Cage, key_session, world: World) -> None:
    key, name = key_session
    marker = uuid.uuid4().hex
    both = "x-api-key: placeholder' -H 'Authorization: Bearer placeholder"
    assert api_call(cage_module, name, marker, both) == "200"
    [request] = received(world.api, marker)
    assert request["headers"]["x-api-key"] == key  # the placeholder was replaced
    assert "authorization" not in request["headers"]
    assert "placeholder" not in json.dumps(request)  # replaced, not added beside it
    status = cage_module("status", name, "--json").json()["session"]
    assert status["credential"] == "api-key-proxy"


@pytest.mark.slow
def test_claude_code_talks_to_the_real_name_logged_in(
    cage_module: Cage, key_session, world: World
) -> None:
    key, name = key_session
    env = sh(cage_module, name, "env").stdout
    assert "ANTHROPIC_BASE_URL" not in env
    before = len(world.api.received())
    sh(cage_module, name, "timeout 60 claude -p hello </dev/null >/dev/null 2>&1; true", 90)
    calls = world.api.received()[before:]
    messages = [c for c in calls if c["path"].startswith("/v1/messages")]
    assert messages, [c["path"] for c in calls]
    assert all(c["headers"].get("x-api-key") == key for c in messages)


@pytest.mark.slow
def test_model_server_sees_the_subscription_token(
    cage_module: Cage, token_session, world: World
) -> None:
    token, name = token_session
    before = len(world.api.received())
    sh(cage_module, name, "timeout 60 claude -p hello </dev/null >/dev/null 2>&1; true", 90)
    messages = [c for c in world.api.received()[before:] if c["path"].startswith("/v1/messages")]
    assert messages  # Claude Code started logged in, with no prompt, and called the API
    for call in messages:
        assert call["headers"]["authorization"] == f"Bearer {token}"
        assert "oauth-2025-04-20" in call["headers"]["anthropic-beta"]
        assert "x-api-key" not in call["headers"]
    status = cage_module("status", name, "--json").json()["session"]
    assert status["credential"] == "claude-token-proxy"


# --- any header for any host: GitHub ---------------------------------------------------


def test_git_push_over_https_carries_the_github_token(
    cage_module: Cage, key_session, world: World
) -> None:
    _, name = key_session
    token = f"ghp_{secrets.token_hex(18)}"
    result = cage_module(
        "secret", "set", "github", "--session", name,
        "--host", "github.com", "--host", "api.github.com", input=token + "\n",
    )  # fmt: skip
    assert result.code == 0, result.output
    assert token not in result.output
    marker = uuid.uuid4().hex[:8]
    commit = (
        "set -e; cd /tmp && rm -rf r && git init -q r && cd r && "
        f"git -c user.name=t -c user.email=t@t commit -q --allow-empty -m {marker}"
    )
    assert sh(cage_module, name, commit).code == 0
    pushing = (
        "cd /tmp/r && GIT_TERMINAL_PROMPT=0 "
        "git push -q https://github.com/git/repo.git HEAD:refs/heads/main"
    )
    push = sh(cage_module, name, pushing, timeout=120)
    if push.code != 0 and "ERR_READ_ERROR" in push.output:
        # the test's git server (git http-backend under a threaded Python server) dropped
        # the connection on a loaded machine: the proxy said so (502); push once more
        push = sh(cage_module, name, pushing, timeout=120)
    assert push.code == 0, push.output
    pushes = [r for r in world.github.received() if "git-receive-pack" in r["path"]]
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    assert pushes and all(r["headers"]["authorization"] == f"Basic {basic}" for r in pushes)
    log = subprocess.run(
        ["docker", "exec", world.github.container, "git", "-C", "/srv/git/repo.git", "log", "main"],
        capture_output=True,
        text=True,
    )
    assert marker in log.stdout  # the push really landed
    api = sh(cage_module, name, f"curl -sS -o /dev/null https://api.github.com/user/{marker}")
    assert api.code == 0, api.output
    [call] = received(world.github, f"/user/{marker}")
    assert call["headers"]["authorization"] == f"Bearer {token}"
    listed = cage_module("secret", "list", "--session", name, "--json").stdout
    assert "github.com" in listed and token not in listed and "sha256:" in listed


def test_streamed_answer_arrives_in_chunks_through_the_tls_terminating_proxy(
    cage_module: Cage, key_session
) -> None:
    """Through a host with a credential (GitHub's, set above): decrypted, not buffered."""
    _, name = key_session
    script = (
        "curl -sSN -X POST -d '{}' https://api.github.com/v1/messages | "
        "while IFS= read -r line; do case $line in data:*) date +%s%3N;; esac; done"
    )
    stamps = [int(t) for t in sh(cage_module, name, script).stdout.split()]
    assert len(stamps) == 5, stamps  # not one buffered blob
    assert stamps[-1] - stamps[0] >= 900, stamps  # spread like the server's 5 x 0.3 s


# --- hosts without a credential: no header, no decryption ------------------------------


def test_a_host_without_a_credential_gets_none_and_keeps_its_own_tls(
    cage_module: Cage, key_session, world: World
) -> None:
    key, name = key_session
    marker = uuid.uuid4().hex
    # The session does not trust the test CA, so verification fails: the companion did
    # not re-sign this host's certificate with the session's CA.
    strict = sh(cage_module, name, f"curl -sS https://plain.test/{marker}")
    assert strict.code == 60, strict.output
    seen = sh(
        cage_module,
        name,
        f"curl -sSk -H 'x-api-key: {marker}' -w '%{{certs}}' -o /dev/null "
        f"https://plain.test/{marker}",
    )
    assert seen.code == 0, seen.output
    served = world.plain_cert.split("-----BEGIN CERTIFICATE-----")[1].split("-----END")[0]
    assert "".join(served.split()) in "".join(seen.stdout.split())  # the server's own
    requests = received(world.plain, marker)
    assert len(requests) == 1
    assert key not in json.dumps(requests)
    assert requests[0]["headers"]["x-api-key"] == marker  # left alone, as the client sent it


def test_credentials_never_cross_to_another_host_or_to_plain_http(
    cage_module: Cage, key_session, world: World
) -> None:
    key, name = key_session
    marker = uuid.uuid4().hex
    # A tunnel opened to the credentialed host, then a request naming another host.
    sh(
        cage_module,
        name,
        f"curl -sS -o /dev/null -H 'Host: plain.test' https://api.anthropic.com/{marker}a; "
        f"curl -sS -o /dev/null http://api.anthropic.com/{marker}b; true",
    )
    for host in (world.api, world.plain):
        assert key not in json.dumps(received(host, marker))
    plain_http = received(world.api, f"{marker}b")
    assert plain_http and "x-api-key" not in plain_http[0]["headers"]


# --- never in cleartext: every way a session can talk to the proxy ----------------------
# The upstreams record each request with the port it came to and whether it came over TLS;
# port 80 of each alias is a plain listener. A credential may reach them only over TLS, on
# 443, on a connection the companion opened itself.

CLIENT = Path(__file__).with_name("proxy_client.py").read_text()
API = "api.anthropic.com"


def talk(cage: Cage, name: str, *connections: list[dict]) -> list[list[str]]:
    """Raw requests to the session's proxy (proxy_client.py): one list per connection."""
    result = cage("exec", name, "--", "python3", "-c", CLIENT, json.dumps(connections))
    assert result.code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def get(target: str, host: str = API) -> dict:
    return {"send": f"GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n"}


def tunnel(port: int, host: str = API) -> list[dict]:
    return [{"connect": f"{host}:{port}"}, {"tls": host}]


def not_over_tls(host: TestHost | ModelServer, marker: str, secret: str) -> list[dict]:
    """The requests that carried `secret` other than over TLS to port 443."""
    return [
        r
        for r in received(host, marker)
        if secret in json.dumps(r) and not (r["tls"] and r["port"] == 443)
    ]


# Each attack: the connections (with M for a fresh marker) and the statuses they get.
ATTACKS = {
    # The break: a plain request pools a connection to port 80, then an absolute-form
    # https:// request for port 80 would have gone down it with the key.
    "http-then-https-to-port-80": (
        [[get(f"http://{API}/Mwarm"), get(f"https://{API}:80/Msteal")]],
        [["404", "403"]],
    ),
    "the-same-on-two-connections": (
        [[get(f"http://{API}/Mwarm")], [get(f"https://{API}:80/Msteal")]],
        [["404"], ["403"]],
    ),
    "absolute-https-to-443": ([[get(f"https://{API}/Mabs")]], [["403"]]),
    "absolute-https-after-plain-to-443": (
        [[get(f"http://{API}:443/Mwarm")], [get(f"https://{API}:443/Msteal")]],
        [[None], ["403"]],  # plain http to a TLS port: whatever the server makes of it
    ),
    "connect-to-port-80-plain-inside": (
        [[{"connect": f"{API}:80"}, get("/Mtunnel80")]],
        [["200", "404"]],  # a plain tunnel: the companion never sees inside
    ),
    "connect-to-port-80-tls-inside": ([tunnel(80)], [["200", None]]),
    "absolute-forms-inside-a-decrypted-tunnel": (
        [
            [
                *tunnel(443),
                get("/Mok"),
                get(f"https://{API}:80/Mabs80"),
                get(f"http://{API}/Mabshttp"),
                get(f"http://{API}:443/Mabs443"),
            ]
        ],
        [["200", "tls", "404", None, None, None]],
    ),
    # A ClientHello whose SNI is not the CONNECT's host would once have been spliced:
    # the session's own TLS to the credential's host. Squid now ends it (error:...).
    "another-sni-in-a-tunnel-to-443": (
        [
            [{"connect": f"{API}:443"}, {"tls": sni, "verify": False}, get("/Msni")]
            for sni in ("plain.test", f"{API}.")
        ],
        [["200", "error:"], ["200", "error:"]],
    ),
    "warm-ups-then-several-requests-on-one-decrypted-connection": (
        [
            [get(f"http://{API}/Mw1")],
            [get(f"http://{API}:443/Mw2")],
            [{"connect": f"{API}:80"}, get("/Mw3")],
            [*tunnel(443), get("/Ma"), get("/Mb"), get("/Mc")],
            [get(f"http://{API}/Mw4")],
        ],
        [["404"], [None], ["200", "404"], ["200", "tls", "404", "404", "404"], ["404"]],
    ),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_the_api_key_never_leaves_in_cleartext(
    cage_module: Cage, key_session, world: World, attack: str
) -> None:
    key, name = key_session
    marker = uuid.uuid4().hex
    connections, expected = ATTACKS[attack]
    steps = json.loads(json.dumps(connections).replace("/M", f"/{marker}"))
    got = talk(cage_module, name, *steps)
    assert not_over_tls(world.api, marker, key) == [], (attack, got)
    for statuses, wanted in zip(got, expected, strict=True):
        assert len(statuses) >= len([w for w in wanted if w is not None]), got
        for status, want in zip(statuses, wanted, strict=False):
            prefix = want == "error:" and status.startswith(want)
            assert want is None or status == want or prefix, (attack, got)
    decrypted = [r for r in received(world.api, marker) if r["tls"]]
    origin_form = [r for r in decrypted if r["path"].endswith(("ok", "/" + marker + "a"))]
    assert bool(origin_form) == ("decrypted" in attack), decrypted
    for request in origin_form:  # the positive control: the key does go, over TLS
        assert request["headers"]["x-api-key"] == key and request["port"] == 443


def test_an_absolute_https_request_is_refused_with_a_reason(cage_module: Cage, key_session) -> None:
    _, name = key_session
    marker = uuid.uuid4().hex
    answer = sh(
        cage_module,
        name,
        f"curl -sS -x http://127.0.0.1:3128 --request-target https://{API}/{marker} http://{API}/",
    )
    assert "absolute-form https:// requests" in answer.stdout, answer.output
    rows = cage_module("egress", name, "--json", "--all").json()["requests"]
    [row] = [r for r in rows if r["reason"] == "ERR_CAGE_SCHEME"][-1:]
    assert row["result"] == "refused" and row["status"] == 403


def test_a_header_secret_for_a_host_whose_certificate_is_refused_never_leaves(
    cage_module: Cage, key_session, world: World
) -> None:
    _, name = key_session
    value = f"hdr-{secrets.token_hex(12)}"
    host = "untrusted.test"
    result = cage_module(
        "secret", "set", "steal", "--session", name, "--kind", "header",
        "--header", "X-Steal", "--host", host, input=value,
    )  # fmt: skip
    assert result.code == 0, result.output
    try:
        marker = uuid.uuid4().hex
        got = talk(
            cage_module,
            name,
            [get(f"http://{host}/{marker}warm", host), get(f"https://{host}:80/{marker}s", host)],
            [get(f"https://{host}/{marker}abs", host)],
            [*tunnel(443, host), get(f"/{marker}bumped", host)],
            [{"connect": f"{host}:80"}, get(f"/{marker}t80", host)],
        )
        assert value not in json.dumps(received(world.untrusted, marker)), got
        assert got[0] == ["200", "403"] and got[1] == ["403"], got
        # The companion refused the server's certificate: its error, or a failed handshake.
        assert got[2][-1] == "503" or got[2][-1].startswith("error"), got
        assert received(world.untrusted, f"{marker}warm")  # the plain listener was there
    finally:
        assert cage_module("secret", "rm", "steal", "--session", name).code == 0


# --- nowhere in the box ------------------------------------------------------------------


@pytest.mark.slow
def test_no_credential_anywhere_in_the_session_or_our_records(
    cage_module: Cage, key_session, token_session
) -> None:
    for value, name in (key_session, token_session):
        for container in (f"cage-{name}", f"companion-cage-{name}"):
            raw = subprocess.run(["docker", "inspect", container], capture_output=True, text=True)
            assert container in raw.stdout and value not in raw.stdout
            logs = subprocess.run(["docker", "logs", container], capture_output=True, text=True)
            assert value not in logs.stdout + logs.stderr
        pids = host_pids(f"cage-{name}")
        root = f"/proc/{pids[0]}/root"
        grep = subprocess.run(
            ["grep", "-rlsF", "--exclude-dir=proc", "--exclude-dir=sys", "--exclude-dir=dev",
             value, f"{root}/"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert grep.stdout == "" and grep.returncode == 1, grep.stdout
        assert Path(f"{root}/sock/out/ca-bundle.pem").is_file()  # the volume was searched
        for pid in pids:
            assert value.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
        inside = sh(cage_module, name, "env; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'")
        assert value not in inside.stdout
        assert value not in cage_module("logs", name).output
        assert value not in cage_module("status", name, "--json").stdout
        assert value not in cage_module("egress", name).output
    events = cage_module("events", "--json", "--limit", "1000").stdout
    for path in cage_module.data_dir.rglob("*"):  # metadata, events, locks, egress copies
        if path.is_file() and path.parent.name != "credentials":
            for value, _ in (key_session, token_session):
                assert value.encode() not in path.read_bytes(), path
    for value, _ in (key_session, token_session):
        assert value not in events
    for stored in cage_module.data_dir.rglob("credentials/*.json"):
        assert stored.stat().st_mode & 0o777 == 0o600


def test_the_ca_key_stays_in_the_companion(cage_module: Cage, key_session) -> None:
    _, name = key_session
    inside = sh(cage_module, name, "grep -rl 'PRIVATE KEY' /sock /run /tmp 2>/dev/null; true")
    assert inside.stdout.strip() == ""
    key_mode = subprocess.run(
        ["docker", "exec", f"companion-cage-{name}", "stat", "-c", "%a", "/run/cage/tls/ca.key"],
        capture_output=True,
        text=True,
    )
    assert key_mode.stdout.strip() == "600"


# --- rotation ---------------------------------------------------------------------------


def test_key_set_reaches_the_running_session(cage_module: Cage, key_session, world: World) -> None:
    _, name = key_session
    started = inspect(f"cage-{name}")["State"]["StartedAt"]
    rotated = new_key()
    result = cage_module("key", "set", name, input=rotated + "\n")
    assert result.code == 0, result.output
    assert rotated not in result.output
    marker = uuid.uuid4().hex
    assert api_call(cage_module, name, marker) == "200"
    [request] = received(world.api, marker)
    assert request["headers"]["x-api-key"] == rotated
    assert inspect(f"cage-{name}")["State"]["StartedAt"] == started


def test_a_secret_for_all_sessions_reaches_running_ones(
    cage_module: Cage, key_session, token_session, world: World
) -> None:
    """Set for every session, with api.github.com allowed in the config's allowlist."""
    value = f"all-{secrets.token_hex(12)}"
    config = cage_module.config_dir / "config.yaml"
    config.write_text("allowed_hosts: [api.anthropic.com, api.github.com]\n")
    try:
        result = cage_module(
            "secret", "set", "ci", "--kind", "header", "--header", "X-Ci-Token",
            "--host", "api.github.com", input=value,
        )  # fmt: skip
    finally:
        config.unlink()
    assert result.code == 0, result.output
    marker = uuid.uuid4().hex
    for _, name in (key_session, token_session):
        sh(cage_module, name, f"curl -sS -o /dev/null https://api.github.com/{marker}")
    calls = received(world.github, marker)
    assert len(calls) == 2
    assert all(c["headers"].get("x-ci-token") == value for c in calls)
    assert cage_module("secret", "rm", "ci").code == 0
    # Gone at once: no header, and no longer decrypted (so the test CA shows through).
    after_rm = f"curl -sS -o /dev/null https://api.github.com/{marker}x"
    assert sh(cage_module, token_session[1], after_rm).code == 60
    sh(cage_module, token_session[1], after_rm.replace("-sS", "-sSk"))
    [after] = received(world.github, f"{marker}x")
    assert "x-ci-token" not in after["headers"]


def test_a_stopped_session_starts_again_with_its_credential(
    cage_module: Cage, token_session, world: World
) -> None:
    token, name = token_session
    assert cage_module("stop", name).code == 0
    again = cage_module("start", "--name", name, "--detach")
    assert again.code == 0, again.output
    marker = uuid.uuid4().hex
    assert api_call(cage_module, name, marker, "Authorization: Bearer placeholder") == "200"
    [request] = received(world.api, marker)
    assert request["headers"]["authorization"] == f"Bearer {token}"


# --- bad input: one line, a hint, exit 2 (3 when not found), nothing changes ------------


def _refused(result, code: int = 2) -> str:
    assert result.code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("hint: ")
    assert "Traceback" not in result.output
    return result.stderr


BAD_SETS = [
    # (args, stdin, what the error says)
    (["x", "--host", "example.org"], "tok", "not in the configured allowed_hosts"),
    (["x", "--host", "*.com"], "tok", "broader than one registrable domain"),
    (["x", "--host", "*.co.uk"], "tok", "broader than one registrable domain"),
    (["x", "--host", "com"], "tok", "broader than one registrable domain"),
    (["x", "--host", "api.anthropic.com"], "line one\nline two", "newline"),
    (["x", "--host", "api.anthropic.com"], "tok\x07en", "control character"),
    (["x", "--host", "api.anthropic.com"], 'to"ken', "quote"),
    (["anthropic", "--kind", "api-key"], new_token(), "subscription token, not an API key"),
    (["anthropic", "--kind", "claude-token"], new_key(), "API key, not a subscription token"),
    (["x", "--host", "api.anthropic.com", "--kind", "header"], "tok", "needs --header"),
    (["Bad/Name", "--host", "api.anthropic.com"], "tok", "bad credential name"),
]


# Named by what the error says: the values are fresh secrets, and every pytest-xdist
# worker must collect the same names.
@pytest.mark.parametrize(("args", "value", "says"), BAD_SETS, ids=[s for *_, s in BAD_SETS])
def test_bad_secret_set_is_refused_and_changes_nothing(
    cage_module: Cage, world: World, args: list[str], value: str, says: str
) -> None:
    before = cage_module("secret", "list", "--json").stdout
    stderr = _refused(cage_module("secret", "set", *args, input=value))
    assert says in stderr
    for secret_text in value.split():
        if len(secret_text) > 6:
            assert secret_text not in stderr  # never echoed
    assert cage_module("secret", "list", "--json").stdout == before


def test_a_session_credential_for_a_host_it_cannot_reach(cage_module: Cage, key_session) -> None:
    _, name = key_session
    before = cage_module("secret", "list", "--session", name, "--json").stdout
    stderr = _refused(
        cage_module("secret", "set", "x", "--session", name, "--host", "nope.test", input="tok")
    )
    assert f"claude-cage allow {name} nope.test" in stderr
    assert cage_module("secret", "list", "--session", name, "--json").stdout == before


def test_a_token_in_the_key_slot_and_unknown_names(cage_module: Cage, key_session) -> None:
    _, name = key_session
    token = new_token()
    stderr = _refused(cage_module("key", "set", name, input=token))
    assert "subscription token" in stderr and token not in stderr
    started = cage_module("start", "--detach", env={"ANTHROPIC_API_KEY": token})
    assert "subscription token" in _refused(started)
    assert "no credential named 'nope'" in _refused(cage_module("secret", "rm", "nope"), 3)
    _refused(cage_module("secret", "rm", "nope", "--session", name), 3)
    _refused(cage_module("secret", "list", "--session", "no-such-session"), 3)
