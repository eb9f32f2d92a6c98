"""The sandbox, seen from `docker inspect` and from inside a running session: read-only
root, uid 1000, no capabilities, limits that hold, isolation between sessions, and an
API key that shows up only where Claude Code reads it."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from claude_cage import config, runtimes
from tests.conftest import ON_PODMAN, Cage, drops_every_capability, inspect

pytestmark = [pytest.mark.engine, pytest.mark.podman]

PIDS = 64
MEMORY = "96m"
DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")
# A bounded fork bomb: children that sleep, counted, then killed.
FORK_BOMB = r"""
my ($ok, $fail, %err, @kids) = (0, 0);
for (1 .. 200) {
    my $pid = fork;
    if (!defined $pid) { $fail++; $err{"$!"}++; next }
    if (!$pid) { sleep 30; exit 0 }
    $ok++; push @kids, $pid;
}
kill 9, @kids; waitpid($_, 0) for @kids;
print "forked=$ok\nfailed=$fail\n"; print "error=$_\n" for keys %err;
"""
MEMORY_HOG = "head -c 400m /dev/zero | tail"  # tail keeps the one endless line in memory


def sh(cage: Cage, name: str, script: str, **kwargs):
    return cage("exec", name, "--", "sh", "-c", script, **kwargs)


def proc_status(cage: Cage, name: str) -> dict[str, str]:
    text = cage("exec", name, "--", "cat", "/proc/self/status").stdout
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def on_gvisor(cage: Cage) -> bool:
    return cage.env.get("CAGE_RUNTIME") == "runsc"


def perl_stat(cage: Cage, name: str, path: str) -> list[str]:
    """Mode and owner of `path`. Not coreutils' stat: Debian 12's gVisor refuses its statx
    flags (AT_NO_AUTOMOUNT) with EINVAL; perl's stat works on both runtimes."""
    script = "@s = stat shift or die $!; printf qq(%o %d\\n), $s[2] & 07777, $s[4]"
    return cage("exec", name, "--", "perl", "-e", script, path).stdout.split()


def session_memory(cage: Cage) -> str:
    """The shared session's memory limit. On gVisor a session over its limit dies whole,
    and its Claude Code alone needs more than 96m there."""
    return "768m" if on_gvisor(cage) else MEMORY


def fake_key() -> str:
    return f"sk-ant-test-{secrets.token_hex(16)}"


@pytest.fixture(scope="module")
def session(cage_module: Cage) -> str:
    """One session with small limits, for the tests that look at it from inside."""
    name = cage_module.name("sandbox")
    result = cage_module(
        "start", "--name", name, "--network", "none", "--detach", "--pids", str(PIDS),
        "--memory", session_memory(cage_module),
    )  # fmt: skip
    assert result.code == 0, result.output
    return name


# --- from docker inspect --------------------------------------------------------------


def test_inspect_shows_the_hardening(session: str) -> None:
    info = inspect(f"cage-{session}")
    host = info["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert drops_every_capability(host)
    assert host["Privileged"] is False
    opts = host["SecurityOpt"]
    [seccomp] = [o for o in opts if o.startswith("seccomp=")]
    profile = seccomp.removeprefix("seccomp=")
    if ON_PODMAN:  # Podman's words: the option without ":true", the profile's file
        assert "no-new-privileges" in opts
        profile = Path(profile).read_text()
    else:
        assert "no-new-privileges:true" in opts
    assert json.loads(profile)["defaultAction"] != "SCMP_ACT_ALLOW"
    assert info["Config"]["User"] == "1000:1000"
    memory = 768 if host.get("Runtime") == "runsc" else 96
    assert host["Memory"] == memory * 1024**2 and host["MemorySwap"] == host["Memory"]
    # On gVisor the engine's limit caps gVisor's own host tasks, and nproc is the
    # session's process limit, which gVisor's kernel enforces (runtimes.limits).
    pids, nproc = runtimes.limits(host.get("Runtime") or "runc", PIDS, 1024)
    assert host["NanoCpus"] == config.DEFAULTS["cpus"] * 10**9 and host["PidsLimit"] == pids
    # Podman's words: RLIMIT_NOFILE for nofile
    ulimits = {
        u["Name"].removeprefix("RLIMIT_").lower(): (u["Soft"], u["Hard"]) for u in host["Ulimits"]
    }
    assert ulimits == {"nofile": (4096, 4096), "nproc": (nproc, nproc)}
    assert host["NetworkMode"] == "none"
    # Podman's words for its own namespaces: "private" and "shareable"
    modes = ("private", "shareable") if ON_PODMAN else ("", "private")
    assert (host["PidMode"], host["IpcMode"]) == modes
    assert set(host["Tmpfs"]) >= {"/tmp", "/run"}
    assert all("size=" in options for options in host["Tmpfs"].values())
    sources = [m.get("Source", "") for m in info["Mounts"]] + (host.get("Binds") or [])
    assert not any(sock in s for s in sources for sock in DOCKER_SOCKETS)


def test_apparmor_when_the_host_has_it(session: str) -> None:
    try:
        enabled = Path("/sys/module/apparmor/parameters/enabled").read_text().strip() == "Y"
    except OSError:
        enabled = False
    info = inspect(f"cage-{session}")
    opts = info["HostConfig"]["SecurityOpt"]
    if enabled:
        assert "apparmor=docker-default" in opts and info["AppArmorProfile"] == "docker-default"
    else:
        assert not any(o.startswith("apparmor") for o in opts)


def test_status_verifies_the_sandbox(cage_module: Cage, session: str) -> None:
    sandbox = cage_module("status", session, "--json").json()["session"]["sandbox"]
    failed = [c for c in sandbox["checks"] if not c["ok"]]
    assert sandbox["ok"] is True and failed == []


# --- from inside ----------------------------------------------------------------------


def test_root_is_read_only(cage_module: Cage, session: str) -> None:
    # (gVisor checks permissions before read-only-ness: root-owned paths say EACCES.)
    refusals = ("Permission denied", "Read-only file system") if on_gvisor(cage_module) else ()
    # (/var/tmp: Podman mounts a tmpfs of no size there under a read-only root, unasked)
    for path in ("/probe", "/usr/bin/probe", "/etc/probe", "/workspace/../probe", "/var/tmp/p"):
        result = sh(cage_module, session, f"echo x > {path}")
        assert result.code != 0, path
        assert "Read-only file system" in result.stderr or any(
            r in result.stderr for r in refusals
        ), (path, result.stderr)
    # The writable places: the size-limited tmpfs ones, and a project-less session's
    # scratch /workspace, a volume of its own (bounded by workspace_size).
    assert sh(cage_module, session, "echo x > /tmp/ok && echo x > /run/ok").code == 0
    assert sh(cage_module, session, "echo x > /workspace/ok").code == 0
    mounts = {m["Destination"]: m for m in inspect(f"cage-{session}")["Mounts"]}
    assert mounts["/workspace"]["Type"] == "volume", mounts.get("/workspace")


def test_tmpfs_are_size_limited(cage_module: Cage, session: str) -> None:
    mounts = cage_module("exec", session, "--", "cat", "/proc/mounts").stdout.splitlines()
    by_target = {line.split()[1]: line.split() for line in mounts}
    for target in ("/tmp", "/run"):
        assert by_target[target][2] == "tmpfs"
        assert "size=" in by_target[target][3], by_target[target]


def test_runs_as_uid_1000(cage_module: Cage, session: str) -> None:
    assert cage_module("exec", session, "--", "id", "-u").stdout.strip() == "1000"
    assert cage_module("exec", session, "--", "id", "-g").stdout.strip() == "1000"
    # PID 1 (tini) too, not just the exec'd process.
    assert perl_stat(cage_module, session, "/proc/1")[1] == "1000"


def test_no_capabilities_no_new_privileges_seccomp(cage_module: Cage, session: str) -> None:
    status = proc_status(cage_module, session)
    assert status["CapEff"] == "0000000000000000"
    assert status["CapPrm"] == "0000000000000000"
    if on_gvisor(cage_module):
        # gVisor's kernel takes the syscalls (the profile guards the host's on runc), and
        # does not list no_new_privs in /proc: ask prctl(PR_GET_NO_NEW_PRIVS) instead.
        prctl = "print syscall(157, 39, 0, 0, 0, 0)"
        assert cage_module("exec", session, "--", "perl", "-e", prctl).stdout == "1"
        assert "Starting gVisor" in sh(cage_module, session, "dmesg").stdout
        return
    assert status["CapBnd"] == "0000000000000000"
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"


def test_setuid_does_not_help(cage_module: Cage, session: str) -> None:
    result = sh(cage_module, session, "su -c id root </dev/null; echo rc=$?")
    assert "uid=0" not in result.stdout


def test_no_docker_socket_inside(cage_module: Cage, session: str) -> None:
    for sock in DOCKER_SOCKETS:
        assert sh(cage_module, session, f"test -e {sock}").code == 1


def test_ulimits_inside(cage_module: Cage, session: str) -> None:
    result = cage_module("exec", session, "--", "bash", "-c", "ulimit -n; ulimit -u")
    assert result.stdout.split() == ["4096", str(PIDS if on_gvisor(cage_module) else 1024)]


@pytest.mark.slow
def test_fork_bomb_stops_at_the_pids_limit(cage_module: Cage, session: str) -> None:
    if on_gvisor(cage_module):
        # Each process costs gVisor more host memory than 96m leaves room for 64 of them
        # (the whole session can be OOM-killed): a session of its own with room for them.
        session = cage_module.name("forks")
        started = cage_module(
            "start", "--name", session, "--network", "none", "--detach", "--pids", str(PIDS),
            "--memory", "768m",
        )  # fmt: skip
        assert started.code == 0, started.output
    result = cage_module("exec", session, "--", "perl", "-e", FORK_BOMB, timeout=60)
    assert result.code == 0, result.output
    facts = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert 0 < int(facts["forked"]) < PIDS
    assert int(facts["failed"]) >= 200 - PIDS
    assert facts["error"] == "Resource temporarily unavailable"
    # The session is still usable afterwards: the children are gone.
    assert sh(cage_module, session, "echo alive").stdout == "alive\n"


@pytest.mark.slow
def test_memory_hog_is_oom_killed_and_reported(cage_module: Cage, session: str) -> None:
    if on_gvisor(cage_module):
        return _memory_hog_stops_a_gvisor_session(cage_module)
    before = cage_module("status", session, "--json").json()["session"]
    assert before["oom_killed"] is False
    result = cage_module("exec", session, "--", "sh", "-c", MEMORY_HOG, timeout=60)
    assert result.code == 137  # SIGKILL, from the kernel's OOM killer
    after = cage_module("status", session, "--json").json()["session"]
    assert after["oom_killed"] is True and after["status"] == "running"
    assert "--memory 8g" in after["oom_hint"]
    text = cage_module("status", session)
    assert "--memory 8g" in text.stderr and "out of memory" in text.stderr


def _memory_hog_stops_a_gvisor_session(cage: Cage) -> None:
    """On gVisor the host's OOM killer can only kill gVisor's kernel: the whole session
    stops, and status says why."""
    name = cage.name("oom")
    assert (
        cage("start", "--name", name, "--network", "none", "--detach", "--memory", MEMORY).code == 0
    )
    # The exec stays open while the engine is polled: what an exec leaves behind ends
    # with it, and an exec whose sandbox died may never return (the engine's wait on
    # gVisor can hang), so it is not waited for.
    hog = subprocess.Popen(
        [sys.executable, "-m", "claude_cage", "exec", name, "--", "sh", "-c", MEMORY_HOG],
        env=cage.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while inspect(f"cage-{name}")["State"]["Running"] and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        hog.kill()
        hog.wait(10)
    after = cage("status", name, "--json").json()["session"]
    assert after["oom_killed"] is True and after["status"] != "running"
    assert "--memory 8g" in after["oom_hint"]


# --- isolation between sessions -------------------------------------------------------


def test_sessions_cannot_reach_each_other(cage_module: Cage, session: str) -> None:
    other = cage_module.name("other")
    assert cage_module("start", "--name", other, "--network", "none", "--detach").code == 0
    try:
        if on_gvisor(cage_module):  # a kernel of its own each: neither sees the other's
            marker = f"sleep {4000 + secrets.randbelow(5000)}"
            # Nothing an exec starts outlives it: the marker runs for as long as this
            # exec does, while the other session looks.
            keeper = subprocess.Popen(
                [sys.executable, "-m", "claude_cage", "exec", other, "--", *marker.split()],
                env=cage_module.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                deadline = time.monotonic() + 30
                while marker not in sh(cage_module, other, "ps -eo args").stdout:
                    assert time.monotonic() < deadline, "the marker never ran"
                    time.sleep(0.2)
                seen = sh(cage_module, session, "ps -eo args").stdout
                assert marker not in seen and "dockerd" not in seen
            finally:
                keeper.terminate()
                keeper.wait(timeout=30)
        else:
            namespaces = "for ns in ipc net pid uts mnt; do readlink /proc/self/ns/$ns; done"
            mine = sh(cage_module, session, namespaces).stdout.split()
            theirs = sh(cage_module, other, namespaces).stdout.split()
            assert len(mine) == 5 and all(a != b for a, b in zip(mine, theirs, strict=True))
            ns = ("ipc", "net", "pid", "uts", "mnt")
            assert not set(mine) & {os.readlink(f"/proc/self/ns/{n}") for n in ns}
        for name in (session, other):
            links = sh(cage_module, name, "echo /sys/class/net/*").stdout.split()
            assert links == ["/sys/class/net/lo"]
            routes = cage_module("exec", name, "--", "cat", "/proc/net/route").stdout
            assert len(routes.splitlines()) == 1  # the header: no route at all
        host_ip = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
        target = host_ip[0] if host_ip else "127.0.0.2"
        probe = cage_module(
            "exec", session, "--", "bash", "-c", f"timeout 5 bash -c 'echo > /dev/tcp/{target}/22'"
        )
        # No route anywhere: the host's kernel and gVisor's word it differently.
        unreachable = ("Network is unreachable", "No route to host")
        assert probe.code != 0 and any(u in probe.stderr for u in unreachable), probe.stderr
    finally:
        assert cage_module("destroy", "--force", other).code == 0


# --- the API key ----------------------------------------------------------------------


def _key_not_stored(cage: Cage, key: str, name: str) -> None:
    """Not in inspect of any of the session's containers, their logs, or our files."""
    containers = (f"cage-{name}", f"companion-cage-{name}")
    out = subprocess.run(["docker", "inspect", *containers], capture_output=True, text=True)
    assert f"cage-{name}" in out.stdout and key not in out.stdout
    for container in containers:
        logs = subprocess.run(["docker", "logs", container], capture_output=True, text=True)
        assert key not in logs.stdout + logs.stderr
    assert key not in (cage.data_dir / "sessions" / name / "metadata").read_text()
    for path in cage.data_dir.rglob("*"):  # events, locks, ...: all but the 0600 secret
        if path.is_file() and path.name != "api_key" and path.parent.name != "credentials":
            assert key.encode() not in path.read_bytes(), path


def _key_nowhere(cage: Cage, key: str, name: str) -> None:
    """Not stored anywhere but the secret file, not in JSON output, not in the env."""
    _key_not_stored(cage, key, name)
    assert key not in cage("status", name, "--json").stdout
    assert key not in cage("list", "--json").stdout
    assert key not in cage("exec", name, "--", "sh", "-c", "cat /proc/1/environ; env").stdout


def _helper_prints(cage: Cage, name: str) -> str:
    settings = cage("exec", name, "--", "cat", "/etc/claude-code/managed-settings.json")
    helper = json.loads(settings.stdout)["apiKeyHelper"]
    return cage("exec", name, "--", "sh", "-c", helper).stdout.strip()


def test_api_key_from_the_environment(cage: Cage) -> None:
    key = fake_key()
    name = cage.name("envkey")
    result = cage(
        "start", "--name", name, "--network", "none", "--detach", env={"ANTHROPIC_API_KEY": key}
    )
    assert result.code == 0, result.output
    assert key not in result.output
    assert cage("exec", name, "--", "cat", "/run/cage/secrets/api_key").stdout.strip() == key
    assert _helper_prints(cage, name) == key
    assert perl_stat(cage, name, "/run/cage/secrets/api_key") == ["600", "1000"]
    _key_nowhere(cage, key, name)
    # The key is handed over again when the session starts again.
    assert cage("stop", name).code == 0
    assert cage("start", "--name", name).code == 0
    assert _helper_prints(cage, name) == key
    _key_not_stored(cage, key, name)


def test_api_key_from_a_file(cage: Cage, tmp_path: Path) -> None:
    key = fake_key()
    key_file = tmp_path / "key"
    key_file.write_text(key + "\n")
    name = cage.name("filekey")
    result = cage(
        "start", "--name", name, "--network", "none", "--detach", "--api-key-file", str(key_file)
    )
    assert result.code == 0, result.output
    assert key not in result.output
    assert _helper_prints(cage, name) == key
    _key_nowhere(cage, key, name)


def test_api_key_stays_out_of_the_filtered_session(cage: Cage, tmp_path: Path) -> None:
    key = fake_key()
    key_file = tmp_path / "key"
    key_file.write_text(key)
    name = cage.name("proxykey")
    result = cage("start", "--name", name, "--detach", "--api-key-file", str(key_file))
    assert result.code == 0, result.output
    assert key not in result.output
    inside = cage("exec", name, "--", "sh", "-c", "cat /run/cage/secrets/* 2>/dev/null; true")
    assert key not in inside.stdout
    assert _helper_prints(cage, name) != key
    _key_nowhere(cage, key, name)


@pytest.mark.parametrize(
    "args",
    [
        ["--image", "claude-cage-no-such-image:latest"],  # fails after the key is read
        ["--mount", "/"],
        ["--memory", "lots"],
    ],
)
def test_api_key_never_in_error_messages(cage: Cage, args: list[str]) -> None:
    key = fake_key()
    result = cage(
        "start", "--name", cage.name("err"), "--network", "none", "--detach", *args,
        env={"ANTHROPIC_API_KEY": key},
    )  # fmt: skip
    assert result.code != 0 and result.stderr.startswith("error: ")
    assert key not in result.output


def test_malformed_key_is_refused_without_echoing_it(cage: Cage) -> None:
    key = fake_key() + " \u00e9 oops"
    result = cage(
        "start", "--name", cage.name("bad"), "--network", "none", env={"ANTHROPIC_API_KEY": key}
    )
    assert result.code == 2 and key not in result.output and "sk-ant" not in result.output
