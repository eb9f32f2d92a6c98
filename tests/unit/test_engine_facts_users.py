"""Each reader of the engine's version, set-up and stats samples (`ping`, `info`,
`stats`, `stats_many`): what it makes of a real answer (captured, see
test_engine_answers.py), and that a damaged one gives the typed defaults' meaning
("unknown") and never a traceback: doctor, gVisor's registration, a far engine's
limits and AppArmor, reap's idle detection, and `status`.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from claude_cage import config, paths, resources
from claude_cage.context import Context
from claude_cage.engine import answers, fleet
from claude_cage.engine.answers import EngineInfo, EngineVersion, Exec, Stats
from claude_cage.engine.client import Engine
from claude_cage.engine.endpoints import Endpoint
from claude_cage.errors import BadInput, CageError, EngineNotFound
from claude_cage.operations import doctor, gvisor, inputs, reap, views
from tests.unit.fake_engine import FIXTURES, FakeEngine, UnusedEngine, record

NOW = 1_800_000_000.0
# Answers of an engine gone wrong: every field the readers use missing or mistyped.
DAMAGED: list[Any] = [
    {},
    None,
    ["not", "an", "object"],
    {
        "Version": None, "ApiVersion": 1, "Components": "Podman", "Driver": None,
        "DockerRootDir": 7, "NCPU": "lots", "MemTotal": [], "SecurityOptions": None,
        "Runtimes": {"runsc": None},
        "cpu_stats": [], "memory_stats": {"usage": "x", "limit": "y"}, "pids_stats": 3,
        "networks": ["eth0"],
    },
]  # fmt: skip


def captured(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


class HostEngine(UnusedEngine):
    """An engine that answers `ping` and `info` with the JSON given, read as the real
    client reads it, and knows every image."""

    def __init__(self, version: Any, info: Any, host: str = "") -> None:
        self.version = answers.from_docker_version(version)
        self.facts = answers.from_docker_info(info)
        self.endpoint = Endpoint(host, f"ssh://{host}" if host else "unix:///x.sock")

    def ping(self) -> EngineVersion:
        return self.version

    def info(self) -> EngineInfo:
        return self.facts

    def image_labels(self, image: str) -> dict[str, str] | None:
        return {}


@pytest.fixture
def cfg(config_dir: Path) -> config.Config:
    return config.load()


# --- doctor ---------------------------------------------------------------------------


def test_doctor_names_the_engine_from_its_answers() -> None:
    real = HostEngine(captured("engine-version.json"), captured("engine-info.json"))
    check, info = doctor.check_engine(real)
    assert check.detail == (
        "Docker 20.10.24+dfsg1 (API 1.41), overlay2 storage, root /var/lib/docker"
    )
    assert info is not None and info.cpus == 2
    for damaged in DAMAGED:
        check, info = doctor.check_engine(HostEngine(damaged, damaged))
        assert check.status == doctor.OK and info == EngineInfo()
        assert check.detail == "Docker ? (API ?), ? storage, root ?"


def test_doctor_security_disk_and_gvisor_on_a_damaged_answer(
    cfg: config.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    def disk_usage(root: str) -> SimpleNamespace:
        seen.append(root)
        return SimpleNamespace(free=1 << 40)

    monkeypatch.setattr("shutil.disk_usage", disk_usage)
    real = answers.from_docker_info(captured("engine-info.json"))
    assert [c.status for c in doctor.check_security(real)] == [doctor.OK, doctor.WARN]
    assert doctor.check_gvisor(UnusedEngine(), cfg, real, probe=False).status == doctor.OK
    for damaged in DAMAGED:
        info = answers.from_docker_info(damaged)
        assert [c.status for c in doctor.check_security(info)] == [doctor.FAIL, doctor.WARN]
        assert doctor.check_disk(info).status == doctor.OK  # the engine's usual root
        gv = doctor.check_gvisor(UnusedEngine(), cfg, info, probe=False)
        assert gv.status == doctor.WARN and "not registered" in gv.detail
    assert set(seen) == {"/var/lib/docker"}


def test_doctor_asks_far_engines_what_they_are(
    cfg: config.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    engines = {
        "ssh://good": HostEngine(captured("engine-version.json"), captured("engine-info.json"),
                                 "good"),
        "ssh://odd": HostEngine({"Version": "27.1"}, {"SecurityOptions": ["name=seccomp"]},
                                "odd"),
        "ssh://bad": HostEngine(DAMAGED[3], DAMAGED[3], "bad"),
    }  # fmt: skip

    def ask(names: list[str], look: Any, _timeout: float) -> dict[str, Any]:
        found = {}
        for name in names:  # as fleet.ask: each answer, or the error it raised
            try:
                found[name] = look(engines[name])
            except CageError as exc:
                found[name] = exc
        return found

    monkeypatch.setattr(fleet, "configured", lambda _engines: ["", *engines])
    monkeypatch.setattr(fleet, "ask", ask)
    checks = {c.check: c for c in doctor.check_far_engines(cfg)}
    good = checks["engine ssh://good"]
    assert good.status == doctor.OK and good.detail == (
        "Docker 20.10.24+dfsg1 at ssh://good, 2 cores, runtimes io.containerd.runc.v2, "
        "io.containerd.runtime.v1.linux, runc, runsc, images built"
    )
    assert checks["engine ssh://odd"].detail == (
        "Docker 27.1 at ssh://odd, ? cores, runtimes , images built"
    )
    bad = checks["engine ssh://bad"]
    assert bad.status == doctor.FAIL and bad.detail == "Docker ? without seccomp"


# --- gVisor's registration ------------------------------------------------------------


def test_a_damaged_runtimes_answer_is_no_registration() -> None:
    real = gvisor.registration(answers.from_docker_info(captured("engine-info.json")))
    assert real.registered and real.problems == []
    for damaged in DAMAGED:
        engine = HostEngine(damaged, damaged)
        assert not gvisor.registration(engine.info()).registered
        with pytest.raises(BadInput, match="not registered"):
            gvisor.check_start(engine, "img")


# --- a far engine: its limits and its AppArmor ----------------------------------------


def test_a_far_engines_limits_follow_its_host(cfg: config.Config) -> None:
    # As config.load leaves them when the user set neither: derived from this machine.
    assert (cfg.sources.get("cpus"), cfg.sources.get("memory")) == ("machine", "machine")
    info = answers.from_docker_info(captured("engine-info.json"))
    assert inputs.remote_limits(cfg, {}, info) == (
        config.default_cpus(2),
        config.default_memory(25276190720),
    )
    assert inputs.remote_limits(cfg, {"cpus": 1.0}, info)[0] is None  # a flag's stays
    for damaged in DAMAGED:
        assert inputs.remote_limits(cfg, {}, answers.from_docker_info(damaged)) == (None, None)
    cfg.sources.update(cpus="file", memory="file")  # the user's own limits stay
    assert inputs.remote_limits(cfg, {}, info) == (None, None)


def test_a_far_engines_apparmor_is_what_it_says(cfg: config.Config) -> None:
    with_apparmor = EngineInfo(security_options=("name=seccomp", "name=apparmor"))
    assert inputs.host_facts(cfg, with_apparmor).apparmor
    assert inputs.host_facts(cfg, with_apparmor).addresses == ()
    real = answers.from_docker_info(captured("engine-info.json"))
    assert not inputs.host_facts(cfg, real).apparmor  # that engine's host has none
    for damaged in DAMAGED:
        assert not inputs.host_facts(cfg, answers.from_docker_info(damaged)).apparmor


# --- reap's idle detection ------------------------------------------------------------


class SampledEngine(UnusedEngine):
    """One running session, long idle, whose stats answer is the JSON given."""

    def __init__(self, sample: Any) -> None:
        self.sample = sample

    def list_containers(self, labels: list[str] | None = None) -> list[answers.Container]:
        return [self._session()]

    def inspect(self, name: str) -> answers.Container | None:
        return self._session()

    def _session(self) -> answers.Container:
        owned = {"managed-by": "claude-cage", "cage.owner": paths.owner_id(), "cage.session": "s"}
        state = answers.State(status="running", running=True, started_at="2020-01-01T00:00:00Z")
        return answers.Container(id="c", name="cage-s", labels=owned, state=state)

    def stats_many(self, names: list[str]) -> dict[str, Stats | None]:
        return {n: answers.from_docker_stats(self.sample) for n in names}

    def exec_inspect(self, exec_id: str) -> Exec | None:
        return None


def test_reap_stops_on_a_real_sample_and_never_on_a_damaged_one(config_dir: Path) -> None:
    record("s")
    real = captured("stats-session.json")
    [verdict] = reap.reap(Context(engine=SampledEngine(real), clock=lambda: NOW), dry_run=True)
    assert (verdict.action, verdict.reason) == ("stop", "idle")
    assert verdict.cpu_seconds == 0.77 and verdict.memory_percent == 0.26
    for damaged in DAMAGED:
        ctx = Context(engine=SampledEngine(damaged), clock=lambda: NOW)
        [verdict] = reap.reap(ctx, dry_run=True)
        assert (verdict.action, verdict.reason) == ("keep", "unknown"), damaged
        assert verdict.memory_percent is None


# --- status ---------------------------------------------------------------------------


@pytest.fixture
def status_engine(config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    monkeypatch.setattr("claude_cage.operations.egress.read_log", lambda *a, **k: [])
    monkeypatch.setattr("claude_cage.cgroups.read", lambda info: None)  # not visible here
    fake = FakeEngine(paths.owner_id())
    record("web")
    fake.add_session("web")
    return fake


def test_status_shows_a_real_sample_and_nothing_of_a_damaged_one(
    status_engine: FakeEngine,
) -> None:
    sample: Any = captured("stats-session.json")
    status_engine.stats = lambda name: answers.from_docker_stats(sample)  # type: ignore[method-assign]
    use = views.status(Context(engine=status_engine), "web")["resources"]
    assert (use["memory_used"], use["memory_limit"], use["pids"], use["pids_limit"]) == (
        704512, 256 << 20, 2, 64,
    )  # fmt: skip
    assert (use["cpu_seconds"], use["net_rx"], use["net_via"]) == (0.77, 736, "session")
    assert use["cpu_basis"] == resources.SINCE_START
    for damaged in DAMAGED:
        sample = damaged
        assert views.status(Context(engine=status_engine), "web")["resources"] is None


def test_status_of_a_container_gone_meanwhile(status_engine: FakeEngine) -> None:
    def gone(name: str) -> Stats:
        raise EngineNotFound(f"no container {name}")

    status_engine.stats = gone  # type: ignore[method-assign]
    assert views.status(Context(engine=status_engine), "web")["resources"] is None


# --- the client reads each answer once -------------------------------------------------


@pytest.mark.parametrize("damaged", DAMAGED)
def test_the_client_reads_a_damaged_answer_as_defaults(
    damaged: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Engine, "_get", lambda self, path, query=None: damaged)
    engine = Engine(timeout=5)
    assert engine.ping() == EngineVersion() and engine.info() == EngineInfo()
    if damaged is None:  # the engine's 404: the container is gone
        with pytest.raises(EngineNotFound):
            engine.stats("cage-a")
        assert engine.stats_many(["cage-a"]) == {"cage-a": None}
    else:
        assert engine.stats("cage-a") == Stats()
        assert engine.stats_many(["cage-a"]) == {"cage-a": Stats()}
    assert not engine.is_podman


def test_the_client_tells_podman_by_its_components(monkeypatch: pytest.MonkeyPatch) -> None:
    said = {"Components": [{"Name": "Podman Engine", "Version": "4.3.1"}], "Version": "4.3.1"}
    monkeypatch.setattr(Engine, "_get", lambda self, path, query=None: said)
    assert Engine(timeout=5).is_podman
    said = captured("engine-version.json")
    assert not Engine(timeout=5).is_podman
