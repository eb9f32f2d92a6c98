"""Lifecycle on the real engine: reap (idle, attached, busy, memory), max_sessions,
status's resource use, changes made behind claude-cage's back, and concurrency.

A real dockerd restart is not tested: other people's containers run on this shared
engine, and restarting it would stop them. What a restart does to sessions (they
exit, or vanish with their auto-removed ephemeral containers) is simulated with
`docker kill`, `docker stop` and `docker rm -f` on our own containers; `list` and
`status` read the engine afresh on every call, so they see the same thing after a
real restart.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import pytest

from claude_cage import metadata, resources
from claude_cage.metadata import REQUIRED, parse
from tests.conftest import Cage, Result, inspect
from tests.polling import wait_until

pytestmark = [pytest.mark.engine, pytest.mark.podman]

LONG_AGO = resources.format_time(time.time() - 5 * 3600)


def start(cage: Cage, name: str, *extra: str, env: dict | None = None) -> None:
    result = cage("start", "--name", name, "--detach", "--network", "none", *extra, env=env)
    assert result.code == 0, result.output


def running(name: str) -> bool:
    return bool(inspect(f"cage-{name}")["State"]["Running"])


def backdate(name: str, drop_sample: bool = False) -> None:
    """Make the session look unused for five hours."""
    store = metadata.SessionStore()
    with store.lock(name):
        data = store.read(name)
        assert data is not None
        data.update(last_active=LONG_AGO, started=LONG_AGO)
        if drop_sample:
            data.pop("cpu_total", None)
            data.pop("cpu_sampled", None)
        store.write(name, data)


def reap(cage: Cage, *args: str, env: dict | None = None) -> dict[str, dict]:
    result = cage("reap", "--json", *args, env=env)
    assert result.code == 0, result.output
    return {v["name"]: v for v in result.json()["sessions"]}


def events(cage: Cage, name: str) -> list[str]:
    result = cage("events", "--session", name, "--json")
    assert result.code == 0, result.output
    return [e["key"].split(":")[0] for e in result.json()["events"]]


# --- reap -----------------------------------------------------------------------------


def test_reap_stops_an_idle_session_and_keeps_a_fresh_one(cage: Cage) -> None:
    idle, fresh = cage.name("idle"), cage.name("fresh")
    start(cage, idle)
    start(cage, fresh)
    backdate(idle)
    path = cage.data_dir / "sessions" / idle / "metadata"
    before = path.read_bytes()

    dry = reap(cage, "--dry-run")
    assert (dry[idle]["action"], dry[idle]["reason"], dry[idle]["done"]) == ("stop", "idle", False)
    assert dry[idle]["idle_minutes"] >= 4 * 60
    assert dry[fresh]["action"] == "keep"
    assert running(idle) and path.read_bytes() == before  # a dry run changes nothing
    assert "reaped" not in events(cage, idle)

    verdicts = reap(cage)
    assert (verdicts[idle]["action"], verdicts[idle]["done"]) == ("stop", True)
    assert verdicts[fresh]["action"] == "keep"
    assert not running(idle) and running(fresh)
    meta = metadata.SessionStore().read(idle)
    assert meta is not None and meta["status"] == "stopped"
    assert "reaped" in events(cage, idle)
    kept = metadata.SessionStore().read(fresh)
    assert kept is not None and "cpu_sampled" in kept  # the sample for the next check


def execs_running(name: str) -> list[str]:
    """The session's execs still running, as the engine's exec inspect says (Docker
    drops finished ones from ExecIDs, Podman keeps them)."""
    api = docker.from_env().api
    ids = inspect(f"cage-{name}").get("ExecIDs") or []
    return [exec_id for exec_id in ids if api.exec_inspect(exec_id)["Running"]]


def test_reap_keeps_a_session_someone_is_attached_to(cage: Cage) -> None:
    name = cage.name()
    start(cage, name)
    shell = subprocess.Popen(
        [sys.executable, "-m", "claude_cage", "shell", name],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=cage.env,
    )
    try:
        wait_until(lambda: execs_running(name), what="an exec in the session")
        backdate(name, drop_sample=True)
        verdict = reap(cage, env={"CAGE_IDLE_TIMEOUT": "1"})[name]
        assert (verdict["action"], verdict["reason"], verdict["attached"]) == (
            "keep",
            "attached",
            1,
        )
        assert running(name)
    finally:
        assert shell.stdin is not None
        shell.stdin.close()
        shell.wait(timeout=30)
    wait_until(lambda: not execs_running(name), what="no exec left")
    backdate(name)  # detached now, and quiet since the last check
    assert reap(cage, env={"CAGE_IDLE_TIMEOUT": "1"})[name]["action"] == "stop"
    assert not running(name)


def test_reap_keeps_a_session_that_used_cpu_since_the_last_check(cage: Cage) -> None:
    name = cage.name()
    start(cage, name)
    # 1.5 s of CPU time, however long a busy host makes that take.
    burn = cage("exec", name, "--", "perl", "-e", "1 while (times)[0] < 1.5")
    assert burn.code == 0, burn.output
    backdate(name, drop_sample=True)
    verdict = reap(cage, env={"CAGE_IDLE_TIMEOUT": "1"})[name]
    assert (verdict["action"], verdict["reason"]) == ("keep", "busy")
    assert verdict["cpu_seconds"] > 1
    assert running(name)

    backdate(name)  # keeps the sample just taken: quiet since then
    verdict = reap(cage, env={"CAGE_IDLE_TIMEOUT": "1"})[name]
    assert (verdict["action"], verdict["reason"]) == ("stop", "idle")
    assert verdict["cpu_seconds"] < 1


def test_reap_stops_above_memory_kill_and_warns_above_memory_warn(cage: Cage) -> None:
    hog, warm, calm = cage.name("hog"), cage.name("warm"), cage.name("calm")
    start(cage, hog, "--memory", "64m")
    # warm: 64 MiB of fill in 1 GiB is 6%, and its Claude Code's own memory (which varies
    # with the machine's load) has 190 MiB before it reaches the kill threshold
    start(cage, warm, "--memory", "1g")
    start(cage, calm)
    for name, size in ((hog, "24m"), (warm, "64m")):  # the session's tmpfs counts as memory
        fill = cage("exec", name, "--", "sh", "-c", f"head -c {size} /dev/zero > /tmp/fill")
        assert fill.code == 0, fill.output
    env = {"CAGE_MEMORY_WARN": "5", "CAGE_MEMORY_KILL": "25"}

    verdicts = reap(cage, env=env)
    assert (verdicts[hog]["action"], verdicts[hog]["reason"]) == ("stop", "memory")
    assert verdicts[hog]["memory_percent"] >= 25
    assert (verdicts[warm]["action"], verdicts[warm]["reason"]) == ("warn", "memory-warning")
    assert 5 <= verdicts[warm]["memory_percent"] < 25
    assert verdicts[calm]["action"] == "keep"
    assert not running(hog) and running(warm) and running(calm)
    assert "reaped" in events(cage, hog)
    assert "reap-warning" in events(cage, warm)

    human = cage("reap", env=env)
    assert human.code == 0 and "memory limit" in human.stderr


# --- max_sessions ---------------------------------------------------------------------


def test_max_sessions_names_the_running_ones_and_suggests_reap(cage: Cage) -> None:
    first, second = cage.name("one"), cage.name("two")
    start(cage, first, env={"CAGE_MAX_SESSIONS": "1"})
    refused = cage("start", "--name", second, "--detach", "--network", "none",
                   env={"CAGE_MAX_SESSIONS": "1"})  # fmt: skip
    assert refused.code == 1
    assert first in refused.stderr and "reap" in refused.stderr and "stop" in refused.stderr
    assert "Traceback" not in refused.output
    gone = subprocess.run(["docker", "inspect", f"cage-{second}"], capture_output=True)
    assert gone.returncode != 0


# --- status ---------------------------------------------------------------------------


def test_status_shows_resource_use_uptime_and_the_sandbox(cage: Cage) -> None:
    name = cage.name()
    start(cage, name, "--memory", "512m", "--pids", "256")
    result = cage("status", name, "--json")
    assert result.code == 0, result.output
    info = result.json()["session"]
    use = info["resources"]
    assert use["memory_limit"] == 512 * 1024**2
    assert 0 < use["memory_used"] < use["memory_limit"]
    assert use["pids"] >= 1 and use["pids_limit"] == 256
    assert use["cpu_percent"] is not None and use["cpu_percent"] >= 0
    assert use["cpu_basis"] in (resources.SAMPLED, resources.SINCE_START)
    assert (use["net_rx"], use["net_tx"], use["net_via"]) == (0, 0, "none")
    assert info["uptime_seconds"] >= 0 and info["restart_count"] == 0
    assert info["oom_killed"] is False and info["oom_hint"] is None
    checks = {c["check"]: c["ok"] for c in info["sandbox"]["checks"]}
    for required in ("read-only root", "capabilities", "seccomp", "no-new-privileges",
                     "limits", "network policy", "mounts"):  # fmt: skip
        assert checks[required] is True, required

    human = cage("status", name)
    for label in ("uptime", "cpu", "memory", "pids", "net i/o", "sandbox: PASS"):
        assert label in human.stdout, label


# --- changes behind claude-cage's back ------------------------------------------------


def test_list_and_status_follow_the_engine(cage: Cage) -> None:
    killed, removed, filtered = cage.name("kill"), cage.name("rm"), cage.name("filt")
    start(cage, killed)
    start(cage, removed)
    result = cage("start", "--name", filtered, "--detach", "--network", "filtered")
    assert result.code == 0, result.output

    subprocess.run(["docker", "kill", f"cage-{killed}"], check=True, capture_output=True)
    subprocess.run(["docker", "rm", "-f", f"cage-{removed}"], check=True, capture_output=True)
    subprocess.run(["docker", "stop", "-t", "1", f"companion-cage-{filtered}"], check=True,
                   capture_output=True)  # fmt: skip

    listed = cage("list", "--json")
    assert listed.code == 0, listed.output
    status_of = {s["name"]: s["status"] for s in listed.json()["sessions"]}
    assert status_of[killed] == "stopped"
    assert status_of[removed] == "removed"
    assert status_of[filtered] == "running"
    store = metadata.SessionStore()
    assert store.read(killed)["status"] == "stopped"  # type: ignore[index]
    assert store.read(removed)["status"] == "removed"  # type: ignore[index]

    info = cage("status", killed, "--json").json()["session"]
    assert info["status"] == "stopped" and info["exit_code"] == 137
    assert info.get("resources") is None
    gone = cage("status", removed, "--json").json()["session"]
    assert gone["status"] == "removed" and gone["sandbox"] is None
    proxy = cage("status", filtered, "--json").json()["session"]
    assert proxy["companion"]["status"] == "stopped"
    egress = [c for c in proxy["sandbox"]["checks"] if c["check"] == "egress proxy"]
    assert egress and egress[0]["ok"] is False

    again = cage("start", "--name", removed, "--detach")  # recreated from its metadata
    assert again.code == 0, again.output
    assert running(removed)
    assert store.read(removed)["status"] == "running"  # type: ignore[index]


# --- concurrency ----------------------------------------------------------------------


def start_in_parallel(cage: Cage, names: list[str], env: dict[str, str]) -> list[Result]:
    """`start --detach --network none` for every name at once; results in name order."""
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        return list(
            pool.map(
                lambda n: cage("start", "--name", n, "--detach", "--network", "none", env=env),
                names,
            )
        )


@pytest.mark.slow
def test_ten_parallel_starts_with_different_names(cage: Cage) -> None:
    names = [cage.name(f"p{i}") for i in range(10)]
    results = start_in_parallel(cage, names, {"CAGE_MAX_SESSIONS": "20"})
    for name, result in zip(names, results, strict=True):
        assert result.code == 0, (name, result.output)
    listed = {s["name"]: s for s in cage("list", "--json").json()["sessions"]}
    assert all(listed[n]["status"] == "running" and not listed[n]["orphan"] for n in names)


def test_two_parallel_starts_with_the_same_name(cage: Cage) -> None:
    name = cage.name()
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(
            pool.map(
                lambda _: cage("start", "--name", name, "--detach", "--network", "none"),
                range(2),
            )
        )
    codes = sorted(r.code for r in results)
    assert codes == [0, 2], [r.output for r in results]
    loser = next(r for r in results if r.code == 2)
    assert "already running" in loser.stderr and "Traceback" not in loser.output
    assert running(name)


def test_concurrent_stop_and_destroy_never_corrupt_the_metadata(cage: Cage) -> None:
    def path_of(name: str) -> Path:
        return cage.data_dir / "sessions" / name / "metadata"

    bad: list[str] = []
    done = threading.Event()
    watched: list[str] = []

    def reader() -> None:
        while not done.is_set():
            for name in list(watched):
                try:
                    text = path_of(name).read_text()
                except FileNotFoundError:
                    continue
                data = parse(text)
                if not all(key in data for key in REQUIRED):
                    bad.append(text)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for round_ in range(4):
            name = cage.name(f"c{round_}")
            start(cage, name)
            watched.append(name)
            with ThreadPoolExecutor(max_workers=3) as pool:
                stop = pool.submit(cage, "stop", name)
                destroy = pool.submit(cage, "destroy", "--force", name)
                listing = pool.submit(cage, "list", "--json")
                stop_result, destroy_result = stop.result(), destroy.result()
                assert listing.result().code == 0
            assert destroy_result.code == 0, destroy_result.output
            assert stop_result.code in (0, 3), stop_result.output  # 3: destroyed first
            assert "Traceback" not in stop_result.output + destroy_result.output
            assert not path_of(name).exists()
            gone = subprocess.run(["docker", "inspect", f"cage-{name}"], capture_output=True)
            assert gone.returncode != 0
    finally:
        done.set()
        thread.join()
    assert bad == []


@pytest.mark.slow
def test_parallel_starts_never_overshoot_max_sessions(cage: Cage) -> None:
    names = [cage.name(f"cap{i}") for i in range(10)]
    results = start_in_parallel(cage, names, {"CAGE_MAX_SESSIONS": "2"})
    won = [n for n, r in zip(names, results, strict=True) if r.code == 0]
    lost = [r for r in results if r.code != 0]
    assert len(won) == 2, [r.output for r in results]
    assert all("max_sessions (2) reached" in r.stderr and "hint:" in r.stderr for r in lost)
    listed = cage("list", "--json").json()["sessions"]
    assert sorted(s["name"] for s in listed if s["status"] == "running") == sorted(won)
