"""`doctor`: is this machine ready to run sessions? Each check says ok, warn or fail,
and every failure names the command that fixes it (the seed's decision framework:
engine down -> start it; image missing -> build; no egress -> look at the proxy).

The filtered-network check is proven, not assumed: it starts a real throwaway session
(`--network filtered --ephemeral`, named doctor-probe-xxxxxx), checks from inside that
the session has no route out and that the egress proxy answers a request for a host
off the allowlist with 403, then destroys the probe. Nothing leaves the machine: the
proxy refuses the request before any name is looked up.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from claude_cage import (
    __version__,
    bindmounts,
    claude_code,
    managed,
    names,
    paths,
    runtimes,
)
from claude_cage import config as config_mod
from claude_cage.engine import fleet, podman
from claude_cage.engine.answers import EngineInfo
from claude_cage.engine.api import EngineAPI
from claude_cage.errors import (
    CageError,
    CapacityReached,
    EngineError,
    EngineUnavailable,
    ImageMissing,
    file_error,
)
from claude_cage.eventlog.redaction import MASK, mask_uri
from claude_cage.labels import VERSION as VERSION_LABEL
from claude_cage.operations import cleanup, gvisor
from claude_cage.operations.inputs import StartOptions
from claude_cage.operations.session import start
from claude_cage.operations.teardown import destroy

if TYPE_CHECKING:
    from claude_cage.context import Context

OK, WARN, FAIL = "ok", "warn", "fail"
DISK_FAIL_BYTES = 2 * 1024**3  # an image rebuild alone needs about this much
DISK_WARN_BYTES = 10 * 1024**3
PROBE_PREFIX = "doctor-probe-"
PROBE_URL = "http://denied.invalid/"  # off every allowlist; .invalid never resolves
MONGO_TIMEOUT_MS = 2000


@dataclass
class Check:
    check: str
    status: str  # ok | warn | fail
    detail: str
    fix: str | None = None


@dataclass
class Report:
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.status != FAIL for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks]}


def check_engine(engine: EngineAPI) -> tuple[Check, EngineInfo | None]:
    try:
        version = engine.ping()
        info = engine.info()
    except CageError as exc:
        return Check("engine", FAIL, exc.message, EngineUnavailable.hint), None
    detail = (
        f"Docker {version.version or '?'} (API {version.api_version or '?'}), "
        f"{info.driver or '?'} storage, root {info.root_dir or '?'}"
    )
    return Check("engine", OK, detail), info


def check_far_engines(cfg: config_mod.Config) -> list[Check]:
    """Each configured engine besides the local one, all asked at once within
    engine_timeout: it answers, has seccomp, and has the session images."""
    names = [n for n in fleet.configured(cfg["engines"]) if n]
    if not names:
        return []

    def look(engine: EngineAPI) -> str:
        version, info = engine.ping(), engine.info()
        if "seccomp" not in " ".join(info.security_options):
            raise EngineError(f"Docker {version.version or '?'} without seccomp")
        missing = [
            cfg[key]
            for key in ("image_cli", "image_companion")
            if engine.image_labels(cfg[key]) is None
        ]
        if missing:
            raise ImageMissing(", ".join(missing))
        runtimes = ", ".join(sorted(info.runtimes))
        return (
            f"Docker {version.version or '?'} at {engine.endpoint.host}, "
            f"{info.cpus or '?'} cores, runtimes {runtimes}, images built"
        )

    checks = []
    for name, answer in fleet.ask(names, look, float(cfg["engine_timeout"])).items():
        if isinstance(answer, ImageMissing):
            fix = f"claude-cage build all --engine {name}"
            checks.append(Check(f"engine {name}", FAIL, answer.message, fix))
        elif isinstance(answer, CageError):
            checks.append(Check(f"engine {name}", FAIL, answer.message, answer.hint))
        else:
            checks.append(Check(f"engine {name}", OK, answer))
    return checks


def check_images(engine: EngineAPI, cfg: config_mod.Config) -> list[Check]:
    checks = []
    wanted = [("image_cli", True), ("image_companion", True), ("image_desktop", False)]
    for key, required in wanted:
        image = cfg[key]
        labels = engine.image_labels(image)
        target = "desktop" if key == "image_desktop" else "cli"
        if labels is None:
            status = FAIL if required else WARN
            detail = f"{image} is not built" + ("" if required else " (needed by --mode desktop)")
            checks.append(Check(f"image {image}", status, detail, f"claude-cage build {target}"))
            continue
        built = labels.get(VERSION_LABEL)
        session_image = key != "image_companion"
        if session_image and labels.get(managed.IMAGE_LABEL) != "read-only":
            checks.append(
                Check(
                    f"image {image}",
                    FAIL if required else WARN,
                    "built before Claude Code's managed settings were bound read-only",
                    f"claude-cage build {target}",
                )
            )
        elif built != __version__:
            checks.append(
                Check(
                    f"image {image}",
                    FAIL if required else WARN,
                    f"built by claude-cage {built or 'unknown'}, this is {__version__}",
                    f"claude-cage build {target}",
                )
            )
        else:
            checks.append(Check(f"image {image}", OK, f"built by claude-cage {built}"))
    return checks


def check_claude_code(engine: EngineAPI, cfg: config_mod.Config) -> list[Check]:
    """The image's Claude Code against the newest release (skipped quietly offline)."""
    labels = engine.image_labels(cfg["image_cli"])
    if labels is None:
        return []  # the image check already says to build it
    have = labels.get(claude_code.LABEL)
    if not have or not claude_code.is_release(have):
        return [
            Check(
                "claude code",
                WARN,
                f"{cfg['image_cli']} does not record its Claude Code release",
                "claude-cage build cli",
            )
        ]
    newest = claude_code.latest_release()
    if newest is None:
        return [Check("claude code", OK, f"{have} (the npm registry did not answer: not compared)")]
    if not claude_code.older(have, newest):
        return [Check("claude code", OK, f"{have}, the newest release")]
    pinned = cfg["claude_code_version"] != "latest"
    fix = "claude-cage build cli" + (" --claude-code-version latest" if pinned else "")
    detail = f"{have} in {cfg['image_cli']}; {newest} is out"
    if pinned:
        detail += f" (config pins claude_code_version {cfg['claude_code_version']})"
    return [Check("claude code", WARN, detail, fix)]


def check_gvisor(engine: EngineAPI, cfg: config_mod.Config, info: EngineInfo, probe: bool) -> Check:
    """gVisor registered as sessions need it; with the probe, this image's Claude Code
    started on it. A failure only when the configured runtime is runsc."""
    wanted = cfg["runtime"] == runtimes.RUNSC
    found = gvisor.registration(info)
    if not found.registered:
        detail = "gVisor (runsc) is not registered: sessions run on the host's kernel (runc)"
        return Check("gvisor", FAIL if wanted else WARN, detail, runtimes.ENABLE_HINT)
    if found.problems:
        detail = "runsc is registered without " + "; ".join(found.problems)
        return Check("gvisor", FAIL if wanted else WARN, detail, runtimes.ENABLE_HINT)
    default = f"runtime {cfg['runtime']} by default"
    if not probe or engine.image_labels(cfg["image_cli"]) is None:
        return Check("gvisor", OK, f"runsc is registered ({default}; not probed)")
    ok, said = gvisor.probe(engine, cfg["image_cli"])
    if ok:
        return Check(
            "gvisor", OK, f"runsc is registered ({default}); Claude Code runs on it: {said}"
        )
    return Check(
        "gvisor",
        FAIL if wanted else WARN,
        f"this Claude Code does not run on gVisor: {said}",
        "keep runtime runc (config runtime), or build another release: "
        "claude-cage build cli --claude-code-version X.Y.Z",
    )


def check_security(info: EngineInfo) -> list[Check]:
    options = " ".join(info.security_options)
    seccomp = "name=seccomp" in options
    apparmor = "name=apparmor" in options
    return [
        Check(
            "seccomp",
            OK if seccomp else FAIL,
            "the engine applies seccomp profiles"
            if seccomp
            else "the engine has no seccomp support: sessions would run without a syscall filter",
            None
            if seccomp
            else "install an engine built with seccomp (Debian: apt-get install "
            "docker.io), then restart dockerd",
        ),
        Check(
            "apparmor",
            OK if apparmor else WARN,
            "the engine applies AppArmor profiles"
            if apparmor
            else "AppArmor is not available on this host: sessions run without an AppArmor "
            "profile (seccomp, dropped capabilities and the read-only root still apply)",
            None
            if apparmor
            else "enable AppArmor in the host kernel (boot with apparmor=1 "
            "security=apparmor) and apt-get install apparmor",
        ),
    ]


def check_disk(info: EngineInfo) -> Check:
    root = info.root_dir or "/var/lib/docker"
    try:
        free = shutil.disk_usage(root).free
    except OSError:
        return Check(
            "disk", WARN, f"cannot see {root} from here (a remote engine?)", "docker system df"
        )
    text = f"{free / 1024**3:.1f} GiB free for {root}"
    fix = "claude-cage gc, then 'docker system df' to see what else uses the space"
    if free < DISK_FAIL_BYTES:
        return Check("disk", FAIL, text, fix)
    if free < DISK_WARN_BYTES:
        return Check("disk", WARN, text, fix)
    return Check("disk", OK, text)


def check_podman(ctx: Context) -> Check | None:
    """A Podman on this machine: the socket that answers, or how to start its service.
    Nothing when neither podman nor a socket is there."""
    sockets = [url for url in podman.local_sockets(ctx.environ) if Path(url[7:]).exists()]
    for url in sockets:
        try:
            ctx.engine_named(url, timeout=5).ping()
        except CageError:
            continue
        return Check("podman", OK, f"Podman answers at {url}: use --engine {url}")
    if sockets or podman.installed():
        where = ", ".join(sockets) or "no socket"
        return Check("podman", WARN, f"podman is installed; its API does not answer ({where})",
                     podman.START_HINT)  # fmt: skip
    return None


def check_data_dir() -> Check:
    """The data directory takes a write: every state change records there."""
    where = paths.data_dir()
    probe = where / f".doctor-{secrets.token_hex(4)}"
    try:
        where.mkdir(parents=True, exist_ok=True)
        with probe.open("wb") as handle:
            handle.write(b"\0" * 65536)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        failed = file_error(exc, where)
        return Check("data directory", FAIL, failed.message, failed.hint)
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    return Check("data directory", OK, f"{where} is writable")


def check_config(cfg: config_mod.Config) -> Check:
    if cfg.problems:
        listed = "; ".join(str(p) for p in cfg.problems[:3])
        more = f" (and {len(cfg.problems) - 3} more)" if len(cfg.problems) > 3 else ""
        return Check("config", FAIL, listed + more, "claude-cage config validate")
    return Check("config", OK, "every layer is valid")


def check_mongodb(cfg: config_mod.Config) -> Check | None:
    uri = cfg["mongodb_uri"]
    if not uri:
        return None
    shown = mask_uri(uri)
    fix = "check mongodb_uri ('claude-cage config show') and that the server is up"
    try:
        # start-up: pymongo takes ~80 ms to import; only a configured mongodb_uri needs it
        import pymongo

        client: Any = pymongo.MongoClient(
            uri,
            serverSelectionTimeoutMS=MONGO_TIMEOUT_MS,
            connectTimeoutMS=MONGO_TIMEOUT_MS,
        )
        try:
            client.admin.command("ping")
        finally:
            client.close()
    except Exception as exc:  # any driver error is a "cannot reach"
        reason = _scrub(f"{type(exc).__name__}: {exc}", uri)
        return Check("mongodb", FAIL, f"cannot reach {shown}: {reason[:200]}", fix)
    return Check("mongodb", OK, f"{shown} answers")


def _scrub(text: str, uri: str) -> str:
    """The driver's message with any credential of the URI masked."""
    text = mask_uri(text)
    with contextlib.suppress(ValueError):
        password = urlsplit(uri).password
        if password:
            for form in {password, unquote(password)}:
                text = text.replace(form, MASK)
    return text


def check_filtered_network(ctx: Context, engine: EngineAPI) -> Check:
    """Start a throwaway filtered session, ask its proxy for a denied host, remove it."""
    name = PROBE_PREFIX + secrets.token_hex(3)
    fix = "claude-cage build (companion image), then claude-cage start --network filtered"
    with contextlib.suppress(CageError):  # what a doctor killed before cleaning up left
        cleanup.remove_dead_probes(ctx, engine)
    try:
        start(  # on the engine doctor checks: the local one; a probe is given no credential
            ctx,
            StartOptions(
                name=name,
                network="filtered",
                ephemeral=True,
                persist=False,
                probe=True,
                engine=fleet.LOCAL,
            ),
        )
    except CapacityReached as exc:
        return Check(
            "filtered network",
            WARN,
            f"not probed: {exc.message}",
            "claude-cage reap, or stop a session, then run doctor again",
        )
    except CageError as exc:
        return Check("filtered network", FAIL, f"probe session did not start: {exc.message}", fix)
    try:
        container = names.container_name(name)
        _code, routes = engine.exec_run(container, ["cat", "/proc/net/route"])
        route_lines = [line for line in routes.decode(errors="replace").splitlines()[1:] if line]
        curl = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10"]
        _code, answer = engine.exec_run(container, [*curl, PROBE_URL])
        code = answer.decode(errors="replace").strip()
    except CageError as exc:
        return Check("filtered network", FAIL, f"probe failed: {exc.message}", fix)
    finally:
        with contextlib.suppress(CageError):
            destroy(ctx, name, force=True)
    if route_lines:
        return Check(
            "filtered network",
            FAIL,
            f"the probe session has {len(route_lines)} route(s) out: it is not isolated",
            "check the policy: sessions must run with network mode none",
        )
    if code != "403":
        return Check(
            "filtered network",
            FAIL,
            f"the egress proxy answered {code or 'nothing'} for a denied host (wanted 403)",
            "claude-cage build (rebuilds the companion proxy)",
        )
    network = str(ctx.config["egress_network"])
    if engine.network(network) is None:
        return Check(
            "filtered network",
            FAIL,
            f"the companions' network {network} is missing after a filtered start",
            "claude-cage start --network filtered (it makes the network)",
        )
    return Check(
        "filtered network",
        OK,
        "a probe session had no route out, and its proxy refused a denied host (403); "
        f"the companions' network is {network} (docker network ls | grep {network})",
    )


def check_session_mounts(ctx: Context) -> list[Check]:
    """Every session's read-write mounts are writable by the uid it runs as."""
    checks = []
    for name, meta in sorted(ctx.store.load_all().items()):
        user, bad = bindmounts.unwritable(meta)
        if bad:
            checks.append(
                Check(
                    f"mounts of {name}",
                    FAIL,
                    f"not writable by the session's user {user}: {', '.join(bad)}",
                    f"chown {user} the directory, or destroy the session and mount it :ro",
                )
            )
    return checks


def run(ctx: Context, probe: bool = True) -> Report:
    """Every check, in the order a person would look."""
    engine = ctx.local_engine()
    cfg = ctx.config
    checks: list[Check] = []
    engine_check, info = check_engine(engine)
    checks.append(engine_check)
    if info is not None:
        guarded: list[Callable[[], list[Check]]] = [
            lambda: check_images(engine, cfg),
            lambda: check_claude_code(engine, cfg),
            lambda: check_security(info),
            lambda: [check_disk(info)],
            lambda: [check_gvisor(engine, cfg, info, probe and not cfg.problems)],
        ]
        for step in guarded:
            try:
                checks += step()
            except CageError as exc:
                checks.append(Check("engine", FAIL, exc.message, exc.hint))
    checks.append(check_data_dir())
    checks.append(check_config(cfg))
    checks += check_far_engines(cfg)
    podman_check = check_podman(ctx)
    if podman_check is not None:
        checks.append(podman_check)
    checks += check_session_mounts(ctx)
    mongo = check_mongodb(cfg)
    if mongo is not None:
        checks.append(mongo)
    if info is None:
        checks.append(Check("filtered network", FAIL, "not probed: no engine", "see 'engine'"))
    elif not probe:
        checks.append(Check("filtered network", WARN, "not probed (--no-probe)", None))
    elif cfg.problems:
        checks.append(
            Check("filtered network", FAIL, "not probed: the config is invalid", "see 'config'")
        )
    elif any(engine.image_labels(cfg[k]) is None for k in ("image_cli", "image_companion")):
        checks.append(
            Check("filtered network", FAIL, "not probed: images missing", "claude-cage build")
        )
    else:
        checks.append(check_filtered_network(ctx, engine))
    return Report(checks)
