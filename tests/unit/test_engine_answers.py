"""Docker's answers read into the typed values the engine returns (engine/answers.py).

The fixtures were captured from a real engine (Docker 20.10): a filtered session with a
`--mount` and a running exec, its companion publishing `--port 18093:8080`, their list
entries, the exec, the data volume and the egress network; the engine's `/version` and
`/info` (host names and ids left out) and a one-shot stats sample of a container with
limits. A damaged or older engine's answer reads as "unknown" and never raises.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claude_cage import resources, sandbox
from claude_cage.engine import answers
from claude_cage.engine.answers import Container, EngineInfo, EngineVersion, Mount, State, Stats
from tests.unit.fake_engine import FIXTURES


def captured(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def test_a_real_session_inspect() -> None:
    info = answers.from_docker_inspect(captured("inspect-session-mount.json"))
    assert info.name == "cage-typedcap" and len(info.id) == 64
    assert info.image == "claude-cage-cli:latest" and info.user == "1000:1000"
    assert info.labels["cage.session"] == "typedcap" and info.labels["managed-by"] == "claude-cage"
    assert info.running and info.state.status == "running" and info.state.pid > 0
    assert info.state.started_at == "2026-12-07T00:14:14.37521751Z"
    assert info.state.exit_code == 0 and not info.state.oom_killed and info.state.health is None
    assert info.created.startswith("2026-12-07T00:14")
    assert info.env["CAGE_BRIDGES"] == "out:3128:proxy.sock in:8080:port-8080.sock"
    assert len(info.exec_ids) == 1
    host = info.settings
    assert host.read_only_root and host.cap_drop == ("ALL",) and not host.cap_add
    assert host.memory == 4 << 30 and host.nano_cpus == 10**9 and host.pids_limit == 512
    assert host.network_mode == "none" and host.ipc_mode == "private" and host.pid_mode == ""
    assert set(host.ulimits) == {"nofile", "nproc"} and host.runtime == "runc"
    assert any(o.startswith("seccomp=") for o in host.security_opt)
    mounts = {m.destination: m for m in info.mounts}
    assert mounts["/workspace/proj"] == Mount("bind", "/tmp/typed/proj", "/workspace/proj")
    assert not mounts["/etc/claude-code"].writable
    data = mounts["/home/claude/.claude"]
    assert data.type == "volume" and data.name == "cage-data-typedcap" and data.writable


def test_the_real_answer_passes_the_sandbox_checks() -> None:
    info = answers.from_docker_inspect(captured("inspect-session-mount.json"))
    companion = answers.from_docker_inspect(captured("inspect-companion-port.json"))
    checks = sandbox.verify(info, "filtered", None, companion)["checks"]
    assert [c["check"] for c in checks if not c["ok"]] == []


def test_a_real_companion_and_its_list_entry() -> None:
    companion = answers.from_docker_inspect(captured("inspect-companion-port.json"))
    assert companion.name == "companion-cage-typedcap"
    assert companion.settings.published == {8080: 18093}
    entry = answers.from_docker_list(captured("list-companion-port.json")[0])
    assert entry.name == "companion-cage-typedcap" and entry.id == companion.id
    assert entry.running and entry.live and entry.public_ports == (18093,)
    assert entry.labels == companion.labels and entry.image == "claude-cage-companion:latest"


def test_a_real_exec_volume_and_network() -> None:
    running = answers.from_docker_exec(captured("exec-running.json"))
    assert running.running and running.exit_code is None and running.argv == ("sleep", "600")
    volume = answers.from_docker_volume(captured("volume-data.json"))
    assert volume.name == "cage-data-typedcap" and volume.labels["cage.role"] == "volume"
    network = answers.from_docker_network(captured("network-egress.json"))
    assert network.name == "cage-filtered" and network.labels["managed-by"] == "claude-cage"
    assert len(network.containers) == 1


def test_a_list_entry_names_only_its_state() -> None:
    for state, running, live in (("running", True, True), ("created", False, True),
                                 ("exited", False, False), ("", False, False)):  # fmt: skip
        found = answers.from_docker_list({"Id": "abc", "State": state})
        assert (found.running, found.live) == (running, live)
        assert found.name == "abc"  # no Names: its id


def test_an_empty_answer_reads_as_unknown() -> None:
    assert answers.from_docker_inspect({}) == Container(id="", name="")
    assert answers.from_docker_list({}) == Container(id="", name="")
    assert answers.from_docker_exec({}) == answers.Exec(argv=("",))
    assert answers.from_docker_volume({}) == answers.Volume("")
    assert answers.from_docker_network({}) == answers.Network("")


def test_a_damaged_answer_reads_what_it_can() -> None:
    info = answers.from_docker_inspect({
        "Id": "abc", "Name": None, "State": {"Running": 1, "Pid": "x", "ExitCode": "9",
                                             "Health": "ok", "StartedAt": 5},
        "Config": {"Labels": None, "Env": ["A=1", "B", 3]}, "HostConfig": ["odd"],
        "Mounts": [None, {"Type": "bind", "RW": False}], "ExecIDs": "id",
        "RestartCount": "many",
    })  # fmt: skip
    assert info.id == "abc" and info.name == "" and info.labels == {}
    assert info.state == State(running=True)
    assert info.env == {"A": "1", "B": "", "3": ""}
    assert info.settings == answers.Settings() and info.exec_ids == () and info.restart_count == 0
    assert info.mounts == (Mount("", "", ""), Mount("bind", "", "", writable=False))
    ports = {"PortBindings": {"80/tcp": [{"HostPort": "8080"}], "x": [], "443/tcp": None}}
    assert answers.from_docker_settings(ports).published == {80: 8080}


def test_the_real_engine_version_and_info() -> None:
    version = answers.from_docker_version(captured("engine-version.json"))
    assert (version.version, version.api_version) == ("20.10.24+dfsg1", "1.41")
    assert version.components == ("Engine", "containerd", "runc", "docker-init")
    info = answers.from_docker_info(captured("engine-info.json"))
    assert (info.driver, info.root_dir) == ("overlay2", "/var/lib/docker")
    assert info.cpus == 2 and info.memory == 25276190720
    assert info.security_options == ("name=seccomp,profile=default",)
    assert info.runtimes["runsc"] == ("--network=none", "--host-uds=all")
    assert info.runtimes["runc"] == () and len(info.runtimes) == 4


def test_a_real_stats_sample() -> None:
    """One-shot: no previous sample; cgroup v1 with no inactive page cache; one network."""
    stats = answers.from_docker_stats(captured("stats-session.json"))
    assert stats.cpu_ns == 770077574 and stats.system_cpu_ns == 98874720000000
    assert stats.online_cpus == 2
    assert (stats.previous_cpu_ns, stats.previous_system_cpu_ns) == (0, 0)
    assert (stats.memory_usage, stats.memory_inactive, stats.memory_limit) == (704512, 0, 256 << 20)
    assert (stats.pids, stats.pids_limit) == (2, 64)
    assert stats.network == (736, 0)


def test_the_page_cache_left_out_is_the_first_below_the_usage() -> None:
    def inactive(detail: dict[str, Any], usage: int = 300) -> int:
        sample = {"memory_stats": {"usage": usage, "stats": detail}}
        return answers.from_docker_stats(sample).memory_inactive

    assert inactive({"total_inactive_file": 100, "inactive_file": 50}) == 100  # cgroup v1
    assert inactive({"inactive_file": 50}) == 50  # cgroup v2
    assert inactive({"total_inactive_file": 900, "inactive_file": 50}) == 50
    assert inactive({"total_inactive_file": 300}) == 0  # never all of the usage


def test_online_cpus_fall_back_to_the_per_cpu_counters() -> None:
    def online(cpu: dict[str, Any]) -> int:
        return answers.from_docker_stats({"cpu_stats": cpu}).online_cpus

    assert online({"online_cpus": 4, "cpu_usage": {"percpu_usage": [1, 2]}}) == 4
    assert online({"cpu_usage": {"percpu_usage": [1, 2, 3]}}) == 3
    assert online({"cpu_usage": {"percpu_usage": []}}) == 1 and online({}) == 1


def test_an_empty_or_absent_engine_answer_reads_as_unknown() -> None:
    nothings: list[Any] = [{}, None, [], "", 0, "<html>502</html>"]
    for nothing in nothings:
        assert answers.from_docker_version(nothing) == EngineVersion()
        assert answers.from_docker_info(nothing) == EngineInfo()
        assert answers.from_docker_stats(nothing) == Stats()
    assert Stats().cpu_ns is None and Stats().network is None  # no figure, not a zero


def test_a_damaged_engine_answer_reads_what_it_can() -> None:
    version = answers.from_docker_version(
        {"Version": 27, "ApiVersion": None, "Components": [None, {"Name": "Podman Engine"}, "x"]}
    )
    assert version == EngineVersion("", "", ("", "Podman Engine", ""))
    info = answers.from_docker_info({
        "Driver": ["overlay2"], "DockerRootDir": None, "NCPU": "lots", "MemTotal": "2048",
        "SecurityOptions": "name=seccomp", "Runtimes": {"runsc": None, "runc": {"runtimeArgs": 5},
                                                        "kata": {"runtimeArgs": ["--x", 1]}},
    })  # fmt: skip
    assert info.driver == "" and info.root_dir == "" and info.cpus == 0
    assert info.memory == 2048 and info.security_options == ()
    assert info.runtimes == {"runc": (), "kata": ("--x", "1")}  # null: no registration
    stats = answers.from_docker_stats({
        "cpu_stats": {"cpu_usage": {"total_usage": "many"}, "system_cpu_usage": [1]},
        "precpu_stats": "none", "memory_stats": {"usage": "300", "limit": None,
                                                 "stats": {"inactive_file": "x"}},
        "pids_stats": {"current": True, "limit": "64"},
        "networks": {"eth0": {"rx_bytes": "5", "tx_bytes": None}, "eth1": None},
    })  # fmt: skip
    assert stats.cpu_ns is None and stats.system_cpu_ns == 0
    assert (stats.memory_usage, stats.memory_inactive, stats.memory_limit) == (300, 0, 0)
    assert (stats.pids, stats.pids_limit) == (None, 64)
    assert stats.network == (5, 0)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
KEYS = ("Id", "Name", "Names", "Image", "State", "Config", "HostConfig", "Mounts", "ExecIDs",
        "Labels", "Env", "Ports", "PortBindings", "Ulimits", "Running", "Pid", "ExitCode",
        "Health", "ProcessConfig", "Containers", "RW", "Type")  # fmt: skip
ENGINE_KEYS = ("Version", "ApiVersion", "Components", "Name", "Driver", "DockerRootDir", "NCPU",
               "MemTotal", "SecurityOptions", "Runtimes", "runsc", "runtimeArgs")  # fmt: skip
STATS_KEYS = ("cpu_stats", "precpu_stats", "cpu_usage", "total_usage", "percpu_usage",
              "system_cpu_usage", "online_cpus", "memory_stats", "usage", "limit", "stats",
              "total_inactive_file", "inactive_file", "pids_stats", "current", "networks",
              "eth0", "rx_bytes", "tx_bytes")  # fmt: skip
ANSWER = st.dictionaries(st.sampled_from(KEYS), JSON | st.dictionaries(st.sampled_from(KEYS), JSON))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ANSWER)
def test_no_answer_raises(answer: dict[str, Any]) -> None:
    answers.from_docker_inspect(answer)
    answers.from_docker_list(answer)
    answers.from_docker_exec(answer)
    answers.from_docker_volume(answer)
    answers.from_docker_network(answer)
    answers.from_docker_settings(answer.get("HostConfig"))


def nested(keys: tuple[str, ...]) -> st.SearchStrategy[Any]:
    """JSON whose objects use `keys` (three levels deep), so damage reaches every field."""
    return st.recursive(
        JSON,
        lambda inner: st.dictionaries(st.sampled_from(keys), inner, max_size=4),
        max_leaves=12,
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nested(ENGINE_KEYS), nested(STATS_KEYS))
def test_no_engine_answer_raises(engine: Any, sample: Any) -> None:
    version = answers.from_docker_version(engine)
    info = answers.from_docker_info(engine)
    stats = answers.from_docker_stats(sample)
    assert all(isinstance(name, str) for name in version.components)
    assert isinstance(info.cpus, int) and isinstance(info.memory, int)
    assert all(isinstance(args, tuple) for args in info.runtimes.values())
    assert stats.cpu_ns is None or isinstance(stats.cpu_ns, int)
    assert stats.memory_inactive < stats.memory_usage or stats.memory_inactive == 0
    assert stats.online_cpus != 0  # the number said, else one per CPU counter, else one
    use = resources.usage(stats, 1.0, 2.0, stats)  # what `status` shows of any sample
    assert use["net_via"] in ("session", "none")
