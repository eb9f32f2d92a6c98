"""status reads a session's resource use from outside it: its cgroup on this host
(cgroup v1, hybrid and v2 layouts, in fake /proc and /sys trees here), or the engine's
stats when the cgroup is not visible; never from a probe that a full session refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from claude_cage import cgroups, paths, resources
from claude_cage.context import Context
from claude_cage.engine.answers import Container, State, from_docker_stats
from claude_cage.operations import views
from tests.unit.fake_engine import FakeEngine, record

CID = "9158931d9a6aba4f69bcc70fb9788de56c2b53e171b5fe04435589758fdd191a"  # the fixture's
PID = 3168
GIB = 1024**3
V1 = (
    "".join(
        f"{i}:{c}:/docker/{CID}\n"
        for i, c in enumerate(["cpu", "cpuacct", "cpuset", "memory", "devices", "pids"], 1)
    )
    + f"0::/docker/{CID}\n"
)  # the hybrid layout of this machine: an empty unified tree


def tree(tmp_path: Path, cgroup_text: str, files: dict[str, str]) -> tuple[Path, Path]:
    proc, root = tmp_path / "proc", tmp_path / "cgroup"
    (proc / str(PID)).mkdir(parents=True)
    (proc / str(PID) / "cgroup").write_text(cgroup_text)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root, proc


def v1_files(pids: int = 7, oom: int = 0) -> dict[str, str]:
    base = f"docker/{CID}"
    return {
        f"memory/{base}/memory.usage_in_bytes": f"{GIB + 1000}\n",
        f"memory/{base}/memory.stat": "cache 5\ntotal_inactive_file 1000\n",
        f"memory/{base}/memory.oom_control": f"oom_kill_disable 0\nunder_oom 0\noom_kill {oom}\n",
        f"cpuacct/{base}/cpuacct.usage": f"{10**9}\n",
        f"pids/{base}/pids.current": f"{pids}\n",
    }


def v2_files(pids: int = 7) -> dict[str, str]:
    base = f"system.slice/docker-{CID}.scope"
    return {
        f"{base}/memory.current": f"{GIB + 1000}\n",
        f"{base}/memory.stat": "anon 5\ninactive_file 1000\n",
        f"{base}/memory.events": "low 0\noom 1\noom_kill 1\n",
        f"{base}/cpu.stat": "usage_usec 1000000\nuser_usec 5\n",
        f"{base}/pids.current": f"{pids}\n",
    }


def info(pid: int = PID, cid: str = CID) -> Container:
    return Container(id=cid, name="cage-web", state=State(running=True, pid=pid))


def test_v1_and_hybrid(tmp_path: Path) -> None:
    root, proc = tree(tmp_path, V1, v1_files(pids=48, oom=2))
    facts = cgroups.read(info(), root, proc)
    assert facts == {
        "mem_usage": str(GIB + 1000),
        "mem_inactive": "1000",
        "cpu_ns": str(10**9),
        "pids": "48",
        "oom_kill": "2",
    }


def test_v1_with_cpu_and_cpuacct_mounted_together(tmp_path: Path) -> None:
    text = V1.replace("1:cpu:", "1:cpu,cpuacct:").replace(f"2:cpuacct:/docker/{CID}\n", "")
    files = {k.replace("cpuacct/", "cpu,cpuacct/"): v for k, v in v1_files().items()}
    root, proc = tree(tmp_path, text, files)
    assert cgroups.read(info(), root, proc)["cpu_ns"] == str(10**9)  # type: ignore[index]


def test_v2(tmp_path: Path) -> None:
    root, proc = tree(tmp_path, f"0::/system.slice/docker-{CID}.scope\n", v2_files(pids=512))
    facts = cgroups.read(info(), root, proc)
    assert facts is not None
    assert (facts["mem_usage"], facts["mem_inactive"]) == (str(GIB + 1000), "1000")
    assert (facts["cpu_ns"], facts["pids"], facts["oom_kill"]) == (str(10**9), "512", "1")


@pytest.mark.parametrize(
    "case", ["another container's pid", "no such pid", "no pid", "cgroup files not visible"]
)
def test_none_when_it_is_not_this_containers_cgroup(tmp_path: Path, case: str) -> None:
    root, proc = tree(tmp_path, V1, {} if case == "cgroup files not visible" else v1_files())
    target = {
        "another container's pid": info(cid="f" * 64),
        "no such pid": info(pid=PID + 1),
        "no pid": info(pid=0),
        "cgroup files not visible": info(),
    }[case]
    assert cgroups.read(target, root, proc) is None


def seen_from(monkeypatch: pytest.MonkeyPatch, root: Path, proc: Path) -> None:
    monkeypatch.setattr(cgroups, "ROOT", root)
    monkeypatch.setattr(cgroups, "PROC", proc)


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    monkeypatch.setenv("CAGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr("claude_cage.operations.egress.read_log", lambda *a, **k: [])
    fake = FakeEngine(paths.owner_id())
    record("web")
    fake.add_session("web")
    return fake


def test_status_reads_the_cgroup_even_when_no_probe_can_start(
    engine: FakeEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, proc = tree(tmp_path, V1, v1_files(pids=48))
    seen_from(monkeypatch, root, proc)
    engine.probe_output = b"sh: 1: Cannot fork\n"  # a session at its pids limit
    entry = views.status(Context(engine=engine), "web")
    use = entry["resources"]
    assert (use["memory_used"], use["pids"], use["cpu_seconds"]) == (GIB, 48, 1.0)
    assert use["cpu_basis"] == resources.SINCE_START
    assert not [c for c in engine.calls if "stats" in c]  # no engine stats: no 1 s tick
    inside = [c for c in entry["sandbox"]["checks"] if c["check"] == "inside"]
    assert inside[0]["ok"] is False and "Cannot fork" in inside[0]["detail"]


def test_status_reports_an_oom_kill_in_the_cgroup(
    engine: FakeEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine sets OOMKilled only when the container exits; the kernel's count of
    OOM kills in the session's memory cgroup tells about a killed process at once."""
    root, proc = tree(tmp_path, V1, v1_files(oom=0))
    seen_from(monkeypatch, root, proc)
    calm = views.status(Context(engine=engine), "web")
    assert calm["oom_killed"] is False and not calm.get("oom_hint")
    tree(tmp_path / "2", V1, v1_files(oom=2))
    seen_from(monkeypatch, tmp_path / "2/cgroup", tmp_path / "2/proc")
    killed = views.status(Context(engine=engine), "web")
    assert killed["oom_killed"] is True and "--memory 8g" in killed["oom_hint"]


def test_status_asks_the_engine_when_the_cgroup_is_not_visible(
    engine: FakeEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen_from(monkeypatch, tmp_path / "none", tmp_path / "none")
    sample = {
        "memory_stats": {"usage": 2000, "limit": GIB, "stats": {"total_inactive_file": 1000}},
        "cpu_stats": {"cpu_usage": {"total_usage": 5 * 10**9}},
        "pids_stats": {"current": 9, "limit": 64},
    }
    engine.stats = lambda name: from_docker_stats(sample)  # type: ignore[method-assign]
    use = views.status(Context(engine=engine), "web")["resources"]
    assert (use["memory_used"], use["pids"], use["pids_limit"]) == (1000, 9, 64)
