"""The sandbox, as pure functions: configuration + request -> container specs.

No I/O happens here. Everything that hardens a session is decided in this file, so a
reviewer can audit the sandbox by reading it top to bottom: `check()` refuses what the
sandbox cannot give a request, `resolve()` decides what the request means for it (the
credential, the allowlist) and `plan()` turns it into container specs.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from claude_cage import labels as labels_mod
from claude_cage import names, runtimes, userconfig, workdir
from claude_cage.config import parse_size
from claude_cage.egress import blocked_ranges, split_allowlist
from claude_cage.errors import BadInput
from claude_cage.kinds import (
    DEFAULT_MODE,
    DEFAULT_NETWORK,
    DEFAULT_RUNTIME,
    Credential,
    Mode,
    Network,
    Runtime,
)
from claude_cage.netpolicy import rules as netpolicy_rules
from claude_cage.netpolicy import squid
from claude_cage.netpolicy.rules import Layer, session_layer
from claude_cage.record import Mount
from claude_cage.workdir import COMPANION_UID, CONFIG_DIR, HOME, MANAGED_SETTINGS_DIR

if TYPE_CHECKING:
    from claude_cage.credentials import Secret

SESSION_UID = 1000
SOCK_DIR = "/sock"  # the shared socket volume, as the session sees it
COMPANION_SOCK_DIR = "/sock"  # ... and as the companion sees it
PROXY_PORT = 3128  # loopback port in the session -> egress proxy
NOVNC_PORT = 6080  # websockify's port inside the companion
SQUID_PORT = 8888  # the egress proxy's port inside the companion (loopback only)
BUMP_PORTS = (8889, 8890)  # squid's TLS-terminating port, and the relay to it
COMPANION_PORTS = (SQUID_PORT, *BUMP_PORTS, NOVNC_PORT)  # never free for --port
# The sockets on the shared volume: out/ is the companion's, in/ the session's.
PROXY_SOCKET = "proxy.sock"  # out/: the egress proxy
VNC_SOCKET = "vnc.sock"  # in/: x11vnc
# The image files repeat these values (entrypoints, squid.conf); each pair is held
# together by tests/unit/test_image_constants.py, which reads those files.


def port_socket(inner: int) -> str:
    """in/: the session's --port CONTAINER, reached by the companion."""
    return f"port-{inner}.sock"


NO_PROXY = "localhost,127.0.0.1,::1"
SESSION_LOG_SIZE = 8 * 1024**2  # the session container's own output (the engine rotates it)
COMPANION_PIDS = 192  # room for the proxy bridge's connections (companion-entrypoint) and more
# Claude Code's own switches: no error reports (to sentry.io), no telemetry, no update
# checks. With them, the allowlist needs no host that takes uploads from anyone.
CLAUDE_CODE_ENV = {
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_TELEMETRY": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
}
# The companion publishes its CA (with the system's CAs) here; the session's tools trust
# it through their environment, so nothing is written to the read-only root.
CA_BUNDLE = f"{SOCK_DIR}/out/ca-bundle.pem"
CA_BUNDLE_VARS = (
    "SSL_CERT_FILE",  # OpenSSL, and Python's ssl module
    "NODE_EXTRA_CA_CERTS",  # Node and Bun: Claude Code
    "CURL_CA_BUNDLE",
    "REQUESTS_CA_BUNDLE",  # Python requests, pip
    "GIT_SSL_CAINFO",
    "NPM_CONFIG_CAFILE",
    "CARGO_HTTP_CAINFO",  # cargo's libcurl reads no SSL_CERT_FILE
)
# The package clients' caches, in the data volume: a restart does not download again.
CACHE_DIR = f"{CONFIG_DIR}/cage-cache"  # in the data volume, beside Claude Code's own data
CACHE_VARS = {
    "PIP_CACHE_DIR": f"{CACHE_DIR}/pip",
    "UV_CACHE_DIR": f"{CACHE_DIR}/uv",
    "npm_config_cache": f"{CACHE_DIR}/npm",  # npm, and pnpm's metadata
    "CARGO_HOME": f"{CACHE_DIR}/cargo",  # the registry's index and crates (and `cargo install`)
    "GOMODCACHE": f"{CACHE_DIR}/go-mod",
}


def proxy_env(proxy: str) -> dict[str, str]:
    """What each package client needs to find the proxy. pip, uv, cargo, go, gem and
    curl read HTTP(S)_PROXY; npm and pnpm read them too, and yarn 1 reads npm's own
    settings (npm_config_*), yarn 2+ its YARN_* ones. Java reads no variable: Gradle and
    Maven's launch scripts pass GRADLE_OPTS and MAVEN_OPTS to the JVM."""
    host, _, port = proxy.removeprefix("http://").partition(":")
    java = (
        f"-Dhttp.proxyHost={host} -Dhttp.proxyPort={port} "
        f"-Dhttps.proxyHost={host} -Dhttps.proxyPort={port} "
        f"-Dhttp.nonProxyHosts={NO_PROXY.replace(',', '|')}"
    )
    env = {var: proxy for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")}
    env.update(
        npm_config_proxy=proxy,
        npm_config_https_proxy=proxy,
        YARN_HTTP_PROXY=proxy,
        YARN_HTTPS_PROXY=proxy,
        GRADLE_OPTS=java,
        MAVEN_OPTS=java,
        NO_PROXY=NO_PROXY,
        no_proxy=NO_PROXY,
    )
    return env


@dataclass(frozen=True)
class HostFacts:
    """What the policy needs to know about the host, gathered by the caller."""

    seccomp_profile: str  # the profile's JSON text
    apparmor: bool
    upstream_ca: str = ""  # PEM text of config upstream_ca_certs
    addresses: tuple[str, ...] = ()  # the host's own (CIDRs), which the address guard refuses


@dataclass(frozen=True)
class SessionRequest:
    """What the user asked for (flags over the config, or a session's record), frozen
    once built: what a start decides for it on this host is `Decisions`."""

    name: str
    mode: Mode = DEFAULT_MODE
    network: Network = DEFAULT_NETWORK
    image: str = "claude-cage-cli:latest"
    cpus: float = 2.0
    memory: str = "4g"
    pids: int = 512
    mounts: tuple[Mount, ...] = ()
    ports: tuple[tuple[int, int], ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    ephemeral: bool = False
    persist: bool = True
    credential: Credential = Credential.NONE
    proxy_credentials: bool = False  # the companion waits for credentials before serving
    allowed_hosts: tuple[str, ...] = ()
    allowed_presets: tuple[str, ...] = ()  # registries (presets.py)
    desktop_port: int | None = None  # the port a session recorded, tried first
    owner: str = ""  # paths.owner_id() of the data directory that owns the session
    clone: str = ""  # clone mode: the repository's name, cloned to /workspace/<clone>
    runtime: Runtime = DEFAULT_RUNTIME
    probe: str = ""  # doctor's throwaway session: the pid of that doctor (labels.PROBE)


@dataclass(frozen=True)
class Decisions:
    """What a start decides for a request on this host and engine (operations/session.py
    `_decide`), taken by plan() beside the request."""

    uid: int = SESSION_UID  # the owner of the read-write mounts, if any (bindmounts.py)
    gid: int = SESSION_UID
    protect: tuple[Mount, ...] = ()  # .git kept apart (gitdirs.py)
    managed_settings: str = ""  # host directory bound read-only at /etc/claude-code
    managed_volume: str = ""  # ... or, on a remote engine, a volume mounted read-only there
    user_config: str = ""  # host directory of the user's Claude Code setup (userconfig.py)
    desktop_port: int | None = None  # noVNC's port on the host
    cpus: float | None = None  # a far engine's own default limits, over the request's
    memory: str | None = None
    # The egress policy's managed, user and project layers (netpolicy/layers.py); the
    # session layer is allowed_presets and allowed_hosts (netpolicy.rules.session_layer).
    policy_layers: tuple[Layer, ...] = ()
    learn: bool = False  # start --learn (netpolicy/rules.py)


def limits(req: SessionRequest, decided: Decisions) -> tuple[float, str]:
    """The session's cpus and memory: the request's, unless a far engine's defaults
    replace the config's defaults (decided)."""
    cpus = req.cpus if decided.cpus is None else decided.cpus
    return cpus, req.memory if decided.memory is None else decided.memory


@dataclass
class ContainerSpec:
    """Everything needed to create one container; engine/client.py turns it into SDK calls."""

    name: str
    image: str
    role: labels_mod.Role
    labels: dict[str, str]
    hostname: str | None = None
    user: str = f"{SESSION_UID}:{SESSION_UID}"
    command: list[str] | None = None
    environment: dict[str, str] = field(default_factory=dict)
    volumes: list[dict[str, Any]] = field(default_factory=list)  # named volumes
    binds: list[Mount] = field(default_factory=list)
    tmpfs: dict[str, str] = field(default_factory=dict)
    read_only: bool = True
    cap_drop: list[str] = field(default_factory=lambda: ["ALL"])
    cap_add: list[str] = field(default_factory=list)  # only a state copy's (snapcopy.py)
    security_opt: list[str] = field(default_factory=list)
    mem_limit: int = 0
    nano_cpus: int = 0
    pids_limit: int = 0
    ulimits: list[tuple[str, int, int]] = field(default_factory=list)
    network_mode: str = "none"  # none | host | a network name
    ports: dict[str, tuple[str, int]] = field(default_factory=dict)
    working_dir: str | None = None
    auto_remove: bool = False
    ipc_mode: str = "private"  # never the host's, never another container's
    log_size: int = 0  # cap of the container's own log in bytes (0: the engine's default)
    runtime: str = runtimes.RUNC


@dataclass
class Plan:
    session: ContainerSpec
    companion: ContainerSpec | None
    volumes: list[str]  # named volumes to create, each labelled for the session


def labels(req: SessionRequest, role: labels_mod.Role | str) -> dict[str, str]:
    return labels_mod.for_session(
        req.name,
        req.owner,
        req.mode,
        req.network,
        req.ephemeral,
        labels_mod.Role(role),
        req.probe,
    )


def needs_companion(req: SessionRequest) -> bool:
    """Anything that must cross the session's missing network goes through a companion."""
    return req.network == Network.FILTERED or req.mode == Mode.DESKTOP or bool(req.ports)


def _hardening(cfg: dict[str, Any], host: HostFacts) -> list[str]:
    opts = ["no-new-privileges:true", f"seccomp={host.seccomp_profile}"]
    if host.apparmor:
        opts.append(f"apparmor={cfg['apparmor_profile']}")
    return opts


def managed_settings_bind(decided: Decisions) -> list[Mount]:
    """Claude Code's managed settings, the operator's policy: read-only, over the image's
    root-owned /etc/claude-code, so the agent can neither change nor replace them."""
    if not decided.managed_settings:
        return []
    return [Mount(decided.managed_settings, MANAGED_SETTINGS_DIR, read_only=True)]


def session_spec(
    cfg: dict[str, Any], req: SessionRequest, decided: Decisions, host: HostFacts
) -> ContainerSpec:
    bridges = []
    env = {
        "CAGE_SESSION": req.name,
        "CAGE_MODE": str(req.mode),
        # filtered: the companion adds the credentials, and Claude Code's managed settings
        # hold a placeholder of the right kind (managed.py), which can change live.
        "CAGE_CREDENTIAL": "proxy" if req.network == Network.FILTERED else str(req.credential),
        "TERM": "xterm-256color",
        **CLAUDE_CODE_ENV,
    }
    if req.network == Network.FILTERED:
        bridges.append(f"out:{PROXY_PORT}:{PROXY_SOCKET}")
        env.update(proxy_env(f"http://127.0.0.1:{PROXY_PORT}"))
        env.update(dict.fromkeys(CA_BUNDLE_VARS, CA_BUNDLE))
    if req.persist:
        env.update(CACHE_VARS)
    if req.mode == Mode.DESKTOP:  # x11vnc itself listens on the socket volume's in/vnc.sock
        env["VNC_RESOLUTION"] = cfg["vnc_resolution"]
    bridges += [f"in:{inner}:{port_socket(inner)}" for _, inner in req.ports]
    env["CAGE_BRIDGES"] = " ".join(bridges)
    project = workdir.project_dir_of(req.clone, [m.target for m in req.mounts])
    env["CAGE_PROJECT"] = project  # the desktop's terminal starts there
    env.update(req.env)  # user values last; reserved names were refused earlier

    volumes = []
    if needs_companion(req):
        volumes.append(
            {"source": names.socket_volume(req.name), "target": SOCK_DIR, "no_copy": True}
        )
    if req.persist:
        volumes.append({"source": names.data_volume(req.name), "target": CONFIG_DIR})
    if req.clone:  # the session's own copy of the repository (operations/clone.py)
        volumes.append({"source": names.workspace_volume(req.name), "target": project})
    scratch = not req.clone and not req.mounts  # no project: /workspace is its to write
    if scratch and req.persist:  # ... kept across stop and start, like its data
        volumes.append({"source": names.scratch_volume(req.name), "target": project})
    if decided.managed_volume:  # root-owned files, filled by claude-cage, read-only inside
        volumes.append(
            {"source": decided.managed_volume, "target": MANAGED_SETTINGS_DIR, "read_only": True}
        )

    # The user's Claude Code setup, read-only over its names in the session's ~/.claude.
    user_config = decided.user_config
    user_binds = userconfig.binds(Path(user_config), CONFIG_DIR) if user_config else []
    pids_limit, nproc = runtimes.limits(req.runtime, req.pids, cfg["nproc"])
    cpus, memory = limits(req, decided)
    uid, gid = decided.uid, decided.gid
    user_tmpfs = f"rw,nosuid,nodev,uid={uid},gid={gid}"
    if uid != SESSION_UID:  # no passwd entry in the image: nss_wrapper gives one
        env.update(
            LD_PRELOAD="libnss_wrapper.so",
            NSS_WRAPPER_PASSWD="/run/cage/passwd",
            NSS_WRAPPER_GROUP="/run/cage/group",
        )
    return ContainerSpec(
        name=names.container_name(req.name),
        hostname=names.container_name(req.name)[:63],
        image=req.image,
        role=labels_mod.Role.SESSION,
        labels={**labels(req, labels_mod.Role.SESSION), labels_mod.RUNTIME: str(req.runtime)},
        environment=env,
        volumes=volumes,
        binds=[*req.mounts, *decided.protect, *managed_settings_bind(decided), *user_binds],
        user=f"{uid}:{gid}",
        tmpfs={
            "/tmp": f"rw,nosuid,nodev,size={cfg['tmp_size']},mode=1777",
            "/run": f"{user_tmpfs},noexec,size=16m,mode=0755",
            HOME: f"{user_tmpfs},size={cfg['home_size']},mode=0755",
            # Without its data volume, ~/.claude is a tmpfs of the session's own: the
            # engine would otherwise make it root's, as the parent of the setup's binds.
            **(
                {CONFIG_DIR: f"{user_tmpfs},size={cfg['home_size']},mode=0755"}
                if not req.persist
                else {}
            ),
            # --no-persist keeps nothing: its scratch /workspace lives as long as it runs.
            # exec, as the scratch volume is: a venv's scripts and a build's binaries run.
            **(
                {project: f"{user_tmpfs},exec,size={cfg['tmp_size']},mode=0755"}
                if scratch and not req.persist
                else {}
            ),
        },
        read_only=bool(cfg["read_only_root"]),
        security_opt=_hardening(cfg, host),
        mem_limit=parse_size(memory),
        nano_cpus=int(cpus * 1e9),
        pids_limit=pids_limit,
        ulimits=[("nofile", cfg["nofile"], cfg["nofile"]), ("nproc", nproc, nproc)],
        # filtered and none both mean: no network namespace beyond loopback.
        network_mode="host" if req.network == Network.HOST else "none",
        working_dir=project,
        auto_remove=req.ephemeral,
        log_size=SESSION_LOG_SIZE,
        runtime=req.runtime,
    )


def companion_spec(
    cfg: dict[str, Any], req: SessionRequest, decided: Decisions, host: HostFacts
) -> ContainerSpec:
    companion_owner = f"uid={COMPANION_UID},gid={COMPANION_UID}"
    services = []
    if req.network == Network.FILTERED:
        services.append("proxy")
    ports: dict[str, tuple[str, int]] = {}
    if req.mode == Mode.DESKTOP and decided.desktop_port:
        services.append("vnc")
        ports[f"{NOVNC_PORT}/tcp"] = (cfg["desktop_bind"], decided.desktop_port)
    for outer, inner in req.ports:
        services.append(f"port:{inner}")
        ports[f"{inner}/tcp"] = ("127.0.0.1", outer)
    exact, suffixes = split_allowlist(req.allowed_hosts)
    return ContainerSpec(
        name=names.companion_name(req.name),
        image=cfg["image_companion"],
        role=labels_mod.Role.COMPANION,
        labels=labels(req, labels_mod.Role.COMPANION),
        user=f"{COMPANION_UID}:{COMPANION_UID}",
        environment={
            "CAGE_SESSION": req.name,
            "CAGE_SERVICES": " ".join(services),
            "CAGE_ALLOWED_EXACT": " ".join(exact),
            "CAGE_ALLOWED_SUFFIXES": " ".join(suffixes),
            "CAGE_ALLOWED_PORTS": " ".join(str(p) for p in cfg["allowed_ports"]),
            "CAGE_UPSTREAM_CA": host.upstream_ca,
            "CAGE_BLOCKED_ADDRESSES": " ".join(
                blocked_ranges(cfg["allowed_address_ranges"], host.addresses)
            ),
            "CAGE_CREDENTIALS": "wait" if req.proxy_credentials else "",
            # what adoption reads back (operations/adoption.py), as the allowlist above
            "CAGE_ALLOWED_PRESETS": " ".join(req.allowed_presets),
            "CAGE_POLICY": policy_env(
                (*decided.policy_layers, session_layer(req.allowed_hosts, req.allowed_presets)),
                cfg["allowed_ports"],
                decided.learn,
            ),
        },
        volumes=[{"source": names.socket_volume(req.name), "target": COMPANION_SOCK_DIR}],
        tmpfs={
            "/tmp": "rw,nosuid,nodev,noexec,size=64m,mode=1777",
            "/run/cage": f"rw,nosuid,nodev,noexec,size=16m,mode=0700,{companion_owner}",
        },
        read_only=True,
        security_opt=_hardening(cfg, host),
        mem_limit=parse_size("256m"),
        nano_cpus=int(0.5e9),
        pids_limit=COMPANION_PIDS,
        ulimits=[("nofile", 4096, 4096)],
        network_mode=cfg["egress_network"],
        ports=ports,
        auto_remove=req.ephemeral,
        log_size=parse_size(cfg["egress_log_size"]),  # squid's audit log is this output
        # Always runc: it holds the credentials and needs a real network namespace on
        # the egress bridge; the session never reaches it except through unix sockets.
        runtime=runtimes.RUNC,
    )


def needs_policy(layers: Sequence[Layer], learn: bool = False) -> bool:
    """Whether the companion needs policy files: learn mode, a rule of a policy file,
    a managed `default: deny`, or a preset of the session (a companion image older than
    the policy files cannot enforce any of them)."""
    return learn or any(
        x.default == "deny" or any(r.inside or x.name != "session" for r in x.rules) for x in layers
    )


def policy_env(layers: Sequence[Layer], ports: Sequence[int], learn: bool = False) -> str:
    """The egress policy's squid files, as the companion reads them at start (a tar in
    base64): empty for a session whose layers hold no rule squid.py compiles (the
    session layer's hosts are the allowlist files)."""
    if not needs_policy(layers, learn):
        return ""
    effective = netpolicy_rules.Policy(tuple(layers), tuple(int(p) for p in ports), learn)
    return base64.b64encode(squid.tar_bytes(squid.compile_files(effective))).decode()


def check(req: SessionRequest) -> None:
    """Refuse (BadInput) what the sandbox cannot give the request: a container port its
    companion uses, ports on the host's network (there is nothing to publish them from),
    and what its runtime cannot run (runtimes.refusal)."""
    for _, inner in req.ports:
        if inner in COMPANION_PORTS:
            raise BadInput(
                f"--port: container port {inner} is taken by the session's companion",
                "use another port in the session than "
                + " or ".join(str(p) for p in COMPANION_PORTS),
            )
    if req.ports and req.network == Network.HOST:
        raise BadInput("--port has no effect with --network host", "drop --port, or use filtered")
    refused = runtimes.refusal(req.runtime, req.network, req.mode)
    if refused:
        raise BadInput(*refused)


def check_token(network: Network) -> None:
    """Refuse a subscription token where nothing can carry it: only the filtered
    network's proxy adds it to requests, and the session itself never holds it."""
    if network != Network.FILTERED:
        raise BadInput(
            "a subscription token is added by the filtered network's proxy; "
            f"--network {network} has none",
            "use --network filtered (the default), or log in inside with /login",
        )


def resolve(req: SessionRequest, held: Sequence[Secret], api_key: bool) -> SessionRequest:
    """The request as the sandbox honours it; the caller's is left as it was.

    filtered: the companion adds the credentials it holds (`held`), so the session's
    credential is their kind, and the companion waits for them before it serves.
    none and host: nothing filters, so there is no allowlist; the credential is an API
    key file inside the session when it has a key (`api_key`)."""
    if req.network == Network.FILTERED:
        # `status` imports this module (through sandbox.py) and never resolves a request;
        # start-up: credentials.py would cost it ~3 ms (a start has it loaded already)
        from claude_cage import credentials

        kind = credentials.session_kind(list(held))
        return dataclasses.replace(req, credential=kind, proxy_credentials=bool(held))
    kind = Credential.API_KEY_FILE if api_key else Credential.NONE
    return dataclasses.replace(
        req, credential=kind, proxy_credentials=False, allowed_hosts=(), allowed_presets=()
    )


def plan(cfg: dict[str, Any], req: SessionRequest, decided: Decisions, host: HostFacts) -> Plan:
    """Every container of the session, from the settings, the resolved request and what
    the start decided for it."""
    session = session_spec(cfg, req, decided, host)
    companion = companion_spec(cfg, req, decided, host) if needs_companion(req) else None
    return Plan(session, companion, [v["source"] for v in session.volumes])
