"""Docker's answers read into the typed values the engine returns (engine/answers.py).

The fixtures were captured from a real engine (Docker 20.10): a filtered session with a
`--mount` and a running exec, its companion publishing `--port 18093:8080`, their list
entries, the exec, the data volume and the egress network. A damaged or older engine's
answer reads as "unknown" and never raises.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claude_cage import sandbox
from claude_cage.engine import answers
from claude_cage.engine.answers import Container, Mount, State
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
