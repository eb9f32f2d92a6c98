"""The sandbox policy: `policy.plan()` is a pure function, and every hardening item in it
is pinned here, for each network policy and with mounts, ports and env."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import sys
from collections.abc import Callable

import pytest

from claude_cage import config, names, policy
from claude_cage.credentials import Secret
from claude_cage.errors import BadInput
from claude_cage.kinds import Network
from claude_cage.parsing import Mount
from claude_cage.paths import package_data

SECCOMP = package_data("data", "seccomp.json").read_text()
NO_APPARMOR = policy.HostFacts(seccomp_profile=SECCOMP, apparmor=False)
WITH_APPARMOR = policy.HostFacts(seccomp_profile=SECCOMP, apparmor=True)
NETWORKS = ("none", "filtered", "host")
FAKE_KEY = "sk-ant-test-0123456789abcdef"
DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


def cfg() -> dict:
    return copy.deepcopy(config.DEFAULTS)


def request(**kwargs) -> policy.SessionRequest:
    kwargs.setdefault("name", "demo")
    kwargs.setdefault("owner", "0123456789ab")
    return policy.SessionRequest(**kwargs)


# What a start decides (policy.Decisions); cpus and memory given here are the request's.
DECIDED = {f.name for f in dataclasses.fields(policy.Decisions)} - {"cpus", "memory"}


def plan(host: policy.HostFacts = NO_APPARMOR, **kwargs) -> policy.Plan:
    decided = policy.Decisions(**{k: kwargs.pop(k) for k in list(kwargs) if k in DECIDED})
    return policy.plan(cfg(), request(**kwargs), decided, host)


def busy_request() -> policy.SessionRequest:
    """A request that uses everything: mounts, ports, env, a key through the proxy."""
    return request(
        network="filtered",
        mounts=[
            Mount("/srv/project", "/workspace/project", False),
            Mount("/srv/docs", "/workspace/docs", True),
        ],
        ports=[(8080, 3000)],
        env={"DEBUG": "1"},
        credential="api-key-proxy",
        allowed_hosts=["api.anthropic.com", "*.sentry.io"],
    )


# --- purity ---------------------------------------------------------------------------

SECCOMP_PATH = package_data("data", "seccomp.json")
IO_EVENTS = (
    "open", "os.", "socket.", "subprocess.", "shutil.", "glob.", "pathlib.", "tempfile.",
    "fcntl.", "mmap.", "sqlite3.", "urllib.", "http.", "ctypes.", "pty.", "import",
)  # fmt: skip
_watching: list[list[tuple[str, tuple]]] = []


def _hook(event: str, args: tuple) -> None:
    if _watching and event.startswith(IO_EVENTS):
        _watching[-1].append((event, args))


sys.addaudithook(_hook)  # audit hooks cannot be removed: this one only records while asked


def _audited(action: Callable[[], object]) -> list[tuple[str, tuple]]:
    """The file, socket and process events (and imports) `action` caused."""
    _watching.append([])
    try:
        action()
    finally:
        events = _watching.pop()
    return events


# --- the plan ---------------------------------------------------------------------------


def test_plan_is_pure() -> None:
    """Same input, same output; the inputs are left untouched."""
    settings, req = cfg(), busy_request()
    before = (copy.deepcopy(settings), copy.deepcopy(req))
    first = policy.plan(settings, req, policy.Decisions(), NO_APPARMOR)
    second = policy.plan(settings, req, policy.Decisions(), NO_APPARMOR)
    assert first == second
    assert (settings, req) == before


def test_plan_does_no_io() -> None:
    """plan() must not touch a file, a socket or a process: all facts come in as
    arguments. An audit hook sees every such event, however it is reached (open,
    Path.read_text, os.listdir, socket, subprocess, a lazy import)."""
    decided = policy.Decisions()
    plan_io = _audited(lambda: policy.plan(cfg(), busy_request(), decided, WITH_APPARMOR))
    assert plan_io == []
    # The hook itself sees what plan() must not do.
    seen = _audited(lambda: (SECCOMP_PATH.read_text(), os.listdir("/")))
    assert {"open", "os.listdir"} <= {event for event, _ in seen}


# --- what the policy decides before the plan ---------------------------------------------

ANTHROPIC_KEY = Secret("anthropic", "api-key", ("api.anthropic.com",), FAKE_KEY)
ANTHROPIC_TOKEN = Secret("anthropic", "claude-token", ("api.anthropic.com",), FAKE_KEY)


def test_resolve_decides_the_credential_and_the_allowlist() -> None:
    hosts = ["api.anthropic.com", "example.com"]
    filtered = request(network="filtered", allowed_hosts=hosts)
    held = policy.resolve(filtered, [ANTHROPIC_KEY], api_key=True)
    assert held.credential == "api-key-proxy" and held.proxy_credentials
    assert held.allowed_hosts == hosts
    token = policy.resolve(filtered, [ANTHROPIC_TOKEN], api_key=False)
    assert token.credential == "claude-token-proxy" and token.proxy_credentials
    bare = policy.resolve(filtered, [], api_key=True)  # filtered: the key is the companion's
    assert bare.credential == "none" and not bare.proxy_credentials
    for network in ("none", "host"):  # nothing filters: no allowlist
        keyed = policy.resolve(request(network=network, allowed_hosts=hosts), [], api_key=True)
        assert keyed.credential == "api-key-file" and keyed.allowed_hosts == ()
        assert not keyed.proxy_credentials
        plain = policy.resolve(request(network=network), [ANTHROPIC_KEY], api_key=False)
        assert plain.credential == "none"
    assert filtered.credential == "none" and filtered.allowed_hosts == hosts  # left as it was


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"network": "host", "ports": [(8080, 3000)]}, "--port has no effect with --network host"),
        ({"ports": [(8080, policy.SQUID_PORT)]}, "is taken by the session's companion"),
        ({"network": "host", "runtime": "runsc"}, "--network host"),
        ({"mode": "desktop", "runtime": "runsc"}, "desktop"),
    ],
)
def test_check_refuses_what_the_sandbox_cannot_give(fields: dict, message: str) -> None:
    with pytest.raises(BadInput) as err:
        policy.check(request(**fields))
    assert message in err.value.message


def test_a_subscription_token_needs_the_filtered_network() -> None:
    policy.check_token(Network.FILTERED)
    for network in (Network.NONE, Network.HOST):
        with pytest.raises(BadInput) as err:
            policy.check_token(network)
        assert f"--network {network} has none" in err.value.message
        assert "--network filtered" in (err.value.hint or "")


def test_check_and_resolve_do_no_io() -> None:
    def decide() -> None:
        req = busy_request()
        policy.check(req)
        policy.check_token(req.network)
        policy.resolve(req, [ANTHROPIC_KEY], api_key=False)

    assert _audited(decide) == []


# --- the session container ------------------------------------------------------------


@pytest.mark.parametrize("network", NETWORKS)
def test_session_hardening(network: str) -> None:
    spec = plan(network=network).session
    assert spec.read_only is True
    assert spec.cap_drop == ["ALL"]
    assert not getattr(spec, "cap_add", None)
    assert "no-new-privileges:true" in spec.security_opt
    assert spec.user == "1000:1000"
    assert spec.role == "session"


@pytest.mark.parametrize("network", NETWORKS)
def test_session_tmpfs_is_size_limited(network: str) -> None:
    tmpfs = plan(network=network).session.tmpfs
    assert {"/tmp", "/run"} <= tmpfs.keys()
    for target, options in tmpfs.items():
        assert "size=" in options, f"{target} has no size limit"
        assert "nosuid" in options and "nodev" in options
    assert f"size={config.DEFAULTS['tmp_size']}" in tmpfs["/tmp"]
    assert "noexec" in tmpfs["/run"]


def test_seccomp_profile_is_inlined() -> None:
    opts = plan().session.security_opt
    seccomp = [o for o in opts if o.startswith("seccomp=")]
    assert len(seccomp) == 1
    profile = json.loads(seccomp[0].removeprefix("seccomp="))
    assert profile == json.loads(SECCOMP)
    assert profile["defaultAction"] != "SCMP_ACT_ALLOW"


@pytest.mark.parametrize(("host", "expected"), [(NO_APPARMOR, False), (WITH_APPARMOR, True)])
def test_apparmor_only_when_the_host_has_it(host: policy.HostFacts, expected: bool) -> None:
    result = plan(host, network="filtered")
    for spec in (result.session, result.companion):
        assert spec is not None
        apparmor = [o for o in spec.security_opt if o.startswith("apparmor")]
        assert apparmor == (["apparmor=docker-default"] if expected else [])


def test_default_limits() -> None:
    spec = plan().session
    assert spec.mem_limit == 4 * 1024**3
    assert spec.nano_cpus == 2 * 10**9
    assert spec.pids_limit == 512
    assert dict((n, (s, h)) for n, s, h in spec.ulimits) == {
        "nofile": (4096, 4096),
        "nproc": (1024, 1024),
    }


def test_requested_limits() -> None:
    spec = plan(memory="512m", cpus=0.5, pids=64).session
    assert spec.mem_limit == 512 * 1024**2
    assert spec.nano_cpus == 5 * 10**8
    assert spec.pids_limit == 64


@pytest.mark.parametrize(
    ("network", "mode"), [("none", "none"), ("filtered", "none"), ("host", "host")]
)
def test_network_mode(network: str, mode: str) -> None:
    assert plan(network=network).session.network_mode == mode


@pytest.mark.parametrize("network", NETWORKS)
def test_no_docker_socket_anywhere(network: str) -> None:
    result = policy.plan(
        cfg(),
        busy_request() if network == "filtered" else request(network=network),
        policy.Decisions(),
        NO_APPARMOR,
    )
    for spec in (result.session, result.companion):
        if spec is None:
            continue
        sources = [b.source for b in spec.binds] + [v["source"] for v in spec.volumes]
        targets = [b.target for b in spec.binds] + [v["target"] for v in spec.volumes]
        for sock in DOCKER_SOCKETS:
            assert not any(sock.startswith(s) or s == sock for s in sources)
            assert sock not in targets
        assert "DOCKER_HOST" not in spec.environment


def test_names_and_hostname() -> None:
    spec = plan(name="my-proj").session
    assert spec.name == spec.hostname == "cage-my-proj"
    long = "a" * 63
    assert len(plan(name=long).session.hostname or "") <= 63


@pytest.mark.parametrize("network", NETWORKS)
def test_labels(network: str) -> None:
    ports = [(8080, 80)] if network != "host" else []
    result = plan(name="lbl", network=network, mode="cli", ports=ports)
    specs = {"session": result.session, "companion": result.companion}
    for role, spec in specs.items():
        if spec is None:
            continue
        assert spec.labels["managed-by"] == "claude-cage"
        assert spec.labels["cage.session"] == "lbl"
        assert spec.labels["cage.mode"] == "cli"
        assert spec.labels["cage.network"] == network
        assert spec.labels["cage.role"] == role
        assert spec.labels["cage.owner"] == "0123456789ab"
    assert (specs["companion"] is None) == (network == "host")


def test_volume_labels() -> None:
    labels = policy.labels(request(name="v"), "volume")
    assert labels["cage.role"] == "volume" and labels["cage.session"] == "v"
    assert labels["managed-by"] == "claude-cage" and labels["cage.owner"] == "0123456789ab"


# --- mounts, volumes, ports, env ------------------------------------------------------


def test_mounts_become_binds_with_their_mode() -> None:
    spec = policy.plan(cfg(), busy_request(), policy.Decisions(), NO_APPARMOR).session
    assert [(b.source, b.target, b.read_only) for b in spec.binds] == [
        ("/srv/project", "/workspace/project", False),
        ("/srv/docs", "/workspace/docs", True),
    ]


def test_data_volume_holds_claude_dir() -> None:
    result = plan(network="none")
    assert result.session.volumes[0] == {
        "source": names.data_volume("demo"),
        "target": "/home/claude/.claude",
    }
    assert names.data_volume("demo") in result.volumes


def test_no_persist_has_no_data_volume() -> None:
    result = plan(network="none", persist=False)
    assert result.session.volumes == []
    assert result.volumes == []
    # its scratch /workspace is a tmpfs, gone when it stops, where a venv's scripts run
    assert ",exec," in result.session.tmpfs["/workspace"]


def test_a_session_without_a_project_writes_in_a_scratch_volume() -> None:
    result = plan(network="none")
    scratch = {"source": names.scratch_volume("demo"), "target": "/workspace"}
    assert scratch in result.session.volumes
    assert result.session.working_dir == "/workspace"
    assert "/workspace" not in result.session.tmpfs
    with_project = policy.plan(cfg(), busy_request(), policy.Decisions(), NO_APPARMOR).session
    assert names.scratch_volume("demo") not in [v["source"] for v in with_project.volumes]


def test_package_caches_are_in_the_data_volume() -> None:
    env = plan(network="filtered").session.environment
    for var in ("PIP_CACHE_DIR", "npm_config_cache", "UV_CACHE_DIR"):
        assert env[var].startswith("/home/claude/.claude/"), var
    assert "PIP_CACHE_DIR" not in plan(network="none", persist=False).session.environment


def test_package_clients_find_the_proxy() -> None:
    env = plan(network="filtered").session.environment
    proxy = "http://127.0.0.1:3128"
    for var in ("HTTPS_PROXY", "https_proxy", "npm_config_https_proxy", "YARN_HTTPS_PROXY"):
        assert env[var] == proxy, var
    assert "-Dhttps.proxyHost=127.0.0.1 -Dhttps.proxyPort=3128" in env["GRADLE_OPTS"]
    assert "HTTPS_PROXY" not in plan(network="none").session.environment


def test_filtered_shares_a_socket_volume_with_its_companion() -> None:
    result = plan(network="filtered")
    sock = names.socket_volume("demo")
    assert sock in result.volumes
    assert result.companion is not None
    assert [v["source"] for v in result.companion.volumes] == [sock]


def test_ephemeral_is_auto_removed() -> None:
    result = plan(network="filtered", ephemeral=True)
    assert result.session.auto_remove is True
    assert result.companion is not None and result.companion.auto_remove is True
    assert result.session.labels["cage.ephemeral"] == "true"
    assert plan().session.auto_remove is False


def test_ports_publish_on_loopback_through_the_companion() -> None:
    result = plan(network="none", ports=[(8080, 3000)])
    assert result.session.ports == {}
    assert result.companion is not None
    assert result.companion.ports == {"3000/tcp": ("127.0.0.1", 8080)}
    assert "in:3000:port-3000.sock" in result.session.environment["CAGE_BRIDGES"]


def test_user_env_is_passed() -> None:
    spec = plan(env={"DEBUG": "1", "EDITOR": "vi"}).session
    assert spec.environment["DEBUG"] == "1" and spec.environment["EDITOR"] == "vi"


# --- the companion --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "needed"),
    [
        ({"network": "none"}, False),
        ({"network": "host"}, False),
        ({"network": "filtered"}, True),
        ({"network": "none", "mode": "desktop", "desktop_port": 6080}, True),
        ({"network": "none", "ports": [(8080, 3000)]}, True),
    ],
)
def test_companion_only_when_needed(kwargs: dict, needed: bool) -> None:
    result = plan(**kwargs)
    assert (result.companion is not None) is needed
    assert (names.socket_volume("demo") in result.volumes) is needed


def test_companion_hardening() -> None:
    companion = policy.plan(cfg(), busy_request(), policy.Decisions(), WITH_APPARMOR).companion
    assert companion is not None
    assert companion.name == "companion-cage-demo"
    assert companion.read_only is True
    assert companion.cap_drop == ["ALL"]
    assert "no-new-privileges:true" in companion.security_opt
    assert any(o.startswith("seccomp={") for o in companion.security_opt)
    assert companion.user.split(":")[0] not in ("0", "root", "")
    assert 0 < companion.mem_limit <= 512 * 1024**2
    assert 0 < companion.nano_cpus <= 10**9
    assert 0 < companion.pids_limit <= 256
    assert companion.binds == []
    for target, options in companion.tmpfs.items():
        assert "size=" in options, f"{target} has no size limit"
    # The companion is the one on a network; the session never is.
    assert companion.network_mode == config.DEFAULTS["egress_network"]


# --- proxy and credential environment -------------------------------------------------


@pytest.mark.parametrize("network", NETWORKS)
def test_proxy_env_only_for_filtered(network: str) -> None:
    env = plan(network=network).session.environment
    if network == "filtered":
        for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            assert env[var] == "http://127.0.0.1:3128"
        assert env["NO_PROXY"] == env["no_proxy"]
        assert "127.0.0.1" in env["NO_PROXY"] and "localhost" in env["NO_PROXY"]
        assert "out:3128:proxy.sock" in env["CAGE_BRIDGES"]
    else:
        assert not set(PROXY_VARS) & env.keys()


@pytest.mark.parametrize("credential", ["none", "api-key-file", "api-key-proxy"])
def test_no_base_url_the_real_endpoints(credential: str) -> None:
    """Claude Code talks to api.anthropic.com itself; the proxy adds the credential."""
    network = "filtered" if credential == "api-key-proxy" else "none"
    env = plan(network=network, credential=credential).session.environment
    assert env["CAGE_CREDENTIAL"] == ("proxy" if network == "filtered" else credential)
    assert "ANTHROPIC_BASE_URL" not in env
    assert "api.sock" not in env["CAGE_BRIDGES"]


@pytest.mark.parametrize("network", NETWORKS)
def test_filtered_sessions_trust_the_session_ca_through_env(network: str) -> None:
    env = plan(network=network).session.environment
    for var in policy.CA_BUNDLE_VARS:
        if network == "filtered":
            assert env[var] == "/sock/out/ca-bundle.pem"
        else:
            assert var not in env


def test_companion_waits_for_credentials_only_when_there_are_some() -> None:
    waiting = plan(network="filtered", proxy_credentials=True).companion
    idle = plan(network="filtered").companion
    assert waiting is not None and idle is not None
    assert waiting.environment["CAGE_CREDENTIALS"] == "wait"
    assert idle.environment["CAGE_CREDENTIALS"] == ""


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("credential", ["none", "api-key-file", "api-key-proxy"])
def test_api_key_never_in_any_env(network: str, credential: str) -> None:
    result = plan(network=network, credential=credential, env={"DEBUG": FAKE_KEY[:4]})
    for spec in (result.session, result.companion):
        if spec is None:
            continue
        assert not {"ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"} & spec.environment.keys()
        assert FAKE_KEY not in repr(spec)
    assert not any(f.name in ("api_key", "key") for f in _fields(policy.SessionRequest))


def _fields(cls: type) -> list:
    import dataclasses

    return list(dataclasses.fields(cls))


def test_allowlist_goes_to_the_companion() -> None:
    companion = policy.plan(cfg(), busy_request(), policy.Decisions(), NO_APPARMOR).companion
    assert companion is not None
    env = companion.environment
    assert env["CAGE_ALLOWED_EXACT"] == "api.anthropic.com"
    assert env["CAGE_ALLOWED_SUFFIXES"] == ".sentry.io"
    assert env["CAGE_SERVICES"].split() == ["proxy", "port:3000"]


def test_managed_settings_are_bound_read_only_over_etc_claude_code() -> None:
    spec = plan(managed_settings="/data/sessions/demo/claude-code").session
    [bind] = [b for b in spec.binds if b.target == "/etc/claude-code"]
    assert bind.source == "/data/sessions/demo/claude-code" and bind.read_only is True
    assert not [b for b in plan().session.binds if b.target == "/etc/claude-code"]
