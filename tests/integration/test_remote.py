"""Sessions on a remote engine: a second dockerd on this machine, reached over SSH
(scripts/second-engine), plus a context where nothing listens.

The session's containers must be on the second engine and nowhere else, every command
must find them there without being told, and what cannot work remotely (bind mounts)
is refused before anything exists on either engine.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import pty
import select
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_ENGINE, Cage
from tests.integration.conftest import SERVER, make_cert
from tests.integration.workspace_helpers import git, make_repo
from tests.isolation import EGRESS_NETWORK, IMAGE_COMPANION

pytestmark = [pytest.mark.engine, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
REMOTE = "cage-e2"
DEAD = "cage-unreachable"


def on_remote(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "--context", REMOTE, *args], capture_output=True, text=True, timeout=120
    )


def names_on(context: str | None, owner: str) -> list[str]:
    docker = ["docker"] + (["--context", context] if context else [])
    out = subprocess.run(
        [*docker, "ps", "-a", "--format", "{{.Names}}", "--filter", f"label=cage.owner={owner}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return sorted(out.stdout.split())


def volumes_on(context: str, owner: str) -> list[str]:
    out = subprocess.run(
        ["docker", "--context", context, "volume", "ls", "-q", "--filter",
         f"label=cage.owner={owner}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return sorted(out.stdout.split())


@pytest.fixture(scope="session")
def second_engine() -> Iterator[str]:
    """The second engine, up, with this run's images on it."""
    up = subprocess.run([str(ROOT / "scripts/second-engine"), "up"], capture_output=True, text=True)
    if up.returncode != 0:
        message = f"the second engine did not come up: {up.stderr[-800:]}"
        if REQUIRE_ENGINE:
            pytest.fail(message)
        pytest.skip(message)
    from tests import isolation

    env = {**os.environ, **isolation.cage_env()}
    sent = subprocess.run(
        ["python3", "-m", "claude_cage", "build", "all", "--engine", REMOTE],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    assert sent.returncode == 0, sent.stdout + sent.stderr
    yield REMOTE
    subprocess.run([str(ROOT / "scripts/second-engine"), "down"], capture_output=True)


@pytest.fixture
def remote_cage(cage: Cage, second_engine: str) -> Iterator[Cage]:
    # A loaded 2-core machine can take more than the default 2 s for an SSH round trip.
    (cage.config_dir / "config.yaml").write_text("engine_timeout: 20\n")
    # The test hosts on the second engine's networks live at private addresses of its own
    # pool (scripts/second-engine), which the address guard refuses unless allowed.
    pool = os.environ.get("CAGE_E2_POOL", "10.213.0.0/16")
    ranges = cage.env.get("CAGE_ALLOWED_ADDRESS_RANGES", "")
    cage.env["CAGE_ALLOWED_ADDRESS_RANGES"] = f"{ranges} {pool}".strip()
    yield cage
    owner = cage.owner()
    containers = names_on(REMOTE, owner)
    if containers:
        on_remote("rm", "-f", *containers)
    volumes = volumes_on(REMOTE, owner)
    if volumes:
        on_remote("volume", "rm", "-f", *volumes)


def test_a_clone_session_lives_on_the_remote_engine(remote_cage: Cage, tmp_path: Path) -> None:
    cage = remote_cage
    repo = make_repo(tmp_path / "project")
    name = cage.name("clone")
    started = cage(
        "start", "--engine", REMOTE, "--name", name, "--clone", str(repo),
        "--network", "none", "--detach", "--json",
    )  # fmt: skip
    assert started.code == 0, started.output
    assert started.json()["engine"] == REMOTE
    owner = cage.owner()
    assert names_on(REMOTE, owner) == [f"cage-{name}"]
    assert names_on(None, owner) == []  # nothing on the local engine

    listed = cage("list", "--json").json()
    [entry] = [s for s in listed["sessions"] if s["name"] == name]
    assert entry["engine"] == REMOTE and entry["status"] == "running"
    assert entry["branch"] == f"cage/{name}"

    # exec goes to the session's engine without being told
    inside = cage("exec", name, "--", "sh", "-c", "hostname; pwd; cat unstaged.txt")
    assert inside.code == 0, inside.output
    assert inside.stdout.split() == [f"cage-{name}", "/workspace/project", "one", "unstaged"]
    work = cage(
        "exec", name, "--", "sh", "-c",
        "echo remote > remote.txt && git add remote.txt && git commit -qm 'from afar'",
    )  # fmt: skip
    assert work.code == 0, work.output

    # the operator's managed settings: there, root's, and out of the agent's reach
    managed = cage(
        "exec", name, "--", "sh", "-c",
        "stat -c %u /etc/claude-code/managed-settings.json; "
        "echo '{}' > /etc/claude-code/managed-settings.json || echo refused",
    )  # fmt: skip
    assert managed.stdout.split() == ["0", "refused"], managed.output

    diff = cage("diff", name, "--stat")
    assert diff.code == 0 and "remote.txt" in diff.stdout, diff.output
    fetched = cage("fetch", name)
    assert fetched.code == 0, fetched.output
    assert "from afar" in git(repo, "log", "--format=%s", f"cage/{name}")

    status = cage("status", name, "--json").json()["session"]
    failed = [c for c in status["sandbox"]["checks"] if not c["ok"]]
    assert status["engine"] == REMOTE and status["sandbox"]["ok"] and not failed, failed

    assert cage("stop", name).code == 0
    assert on_remote("inspect", "-f", "{{.State.Running}}", f"cage-{name}").stdout.strip() == (
        "false"
    )
    assert cage("fetch", name).code == 0  # also from a stopped session
    assert cage("destroy", name).code == 0
    assert names_on(REMOTE, owner) == [] and volumes_on(REMOTE, owner) == []
    assert cage("diff", name).code == 3


def test_shell_reaches_the_remote_session_on_a_terminal(remote_cage: Cage) -> None:
    cage = remote_cage
    name = cage.name("tty")
    assert cage("start", "--engine", REMOTE, "--name", name, "--network", "none",
                "--detach").code == 0  # fmt: skip
    pid, fd = pty.fork()
    if pid == 0:  # the child: claude-cage on a terminal, as a person runs it
        os.execvpe("python3", ["python3", "-m", "claude_cage", "shell", name], cage.env)
    seen, wanted = b"", f"marker-42 cage-{name}".encode()
    try:
        os.write(fd, b"echo marker-$((6*7)) $(hostname); exit\n")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and wanted not in seen:  # (it may come in pieces)
            ready, _, _ = select.select([fd], [], [], 1)
            if ready:
                try:
                    seen += os.read(fd, 4096)
                except OSError:
                    break
    finally:
        _, code = os.waitpid(pid, 0)
    assert wanted in seen, seen[-500:]
    assert os.waitstatus_to_exitcode(code) == 0


def test_egress_and_the_key_work_remotely(remote_cage: Cage, test_ca: Path) -> None:
    """The companion runs on the remote engine too, and adds the key there; the key
    travels only on an exec's stdin over the engine connection."""
    cage = remote_cage
    testhost = f"cage-testhost-{cage.prefix}remote"
    subprocess.run(
        ["docker", "--context", REMOTE, "network", "create", "--label",
         "managed-by=claude-cage", "--label", "cage.role=network", EGRESS_NETWORK],
        capture_output=True,
    )  # fmt: skip
    tls = make_cert(test_ca, ("api.anthropic.com",))
    run = on_remote(
        "run", "-d", "--rm", "--name", testhost, "--network", EGRESS_NETWORK,
        "--network-alias", "api.anthropic.com", "--network-alias", "allowed.test",
        "--user", "0", "-v", f"{SERVER}:/testserver.py:ro", "-v", f"{tls}:/tls:ro",
        "--entrypoint", "python3", IMAGE_COMPANION,
        "/testserver.py", "api.anthropic.com", "/tls/cert.pem", "/tls/key.pem",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    try:
        key = "sk-ant-remote-" + os.urandom(12).hex()
        name = cage.name("egress")
        started = cage(
            "start", "--engine", REMOTE, "--name", name, "--detach",
            "--allow-host", "allowed.test",
            env={"ANTHROPIC_API_KEY": key, "CAGE_UPSTREAM_CA_CERTS": str(test_ca / "ca.pem")},
        )  # fmt: skip
        assert started.code == 0, started.output
        assert names_on(REMOTE, cage.owner()) == sorted([f"cage-{name}", f"companion-cage-{name}"])
        code = "curl -s -m 20 -o /dev/null -w '%{http_code}' "
        allowed = cage("exec", name, "--", "sh", "-c", code + "http://allowed.test/hello")
        denied = cage("exec", name, "--", "sh", "-c", code + "http://denied.test/")
        assert (allowed.stdout, denied.stdout) == ("200", "403"), allowed.output + denied.output
        egress = cage("egress", name, "--json")
        assert egress.code == 0 and "denied.test" in egress.stdout, egress.output
        api = cage(
            "exec", name, "--", "sh", "-c",
            code + "-H 'x-api-key: placeholder' -d '{}' "
            "https://api.anthropic.com/v1/messages/count_tokens?m=remote-marker",
        )  # fmt: skip
        assert api.stdout == "200", api.output
        got = on_remote(
            "exec", testhost, "python3", "-c",
            "import urllib.request;print(urllib.request.urlopen("
            "'http://127.0.0.1/_received').read().decode())",
        )  # fmt: skip
        marked = [r for r in json.loads(got.stdout) if "remote-marker" in r["path"]]
        assert marked and marked[0]["headers"].get("x-api-key") == key
        inspected = on_remote("inspect", f"cage-{name}", f"companion-cage-{name}").stdout
        assert key not in inspected
        inside = cage("exec", name, "--", "sh", "-c", "cat /proc/*/environ 2>/dev/null")
        assert key not in inside.stdout
    finally:
        on_remote("rm", "-f", testhost)


def test_mount_on_a_remote_engine_is_refused(remote_cage: Cage, tmp_path: Path) -> None:
    cage = remote_cage
    project = tmp_path / "files"
    project.mkdir()
    result = cage("start", "--engine", REMOTE, "--mount", str(project), "--detach")
    assert result.code == 2, result.output
    assert "--clone" in result.stderr and "Traceback" not in result.output
    assert names_on(REMOTE, cage.owner()) == [] and volumes_on(REMOTE, cage.owner()) == []


def test_bad_engines_at_start(remote_cage: Cage) -> None:
    cage = remote_cage
    unknown = cage("start", "--engine", "no-such-context", "--detach")
    assert unknown.code == 2 and "docker context create" in unknown.stderr, unknown.output
    dead = cage("start", "--engine", DEAD, "--detach")
    assert dead.code == 1 and "cannot reach" in dead.stderr, dead.output
    assert "Traceback" not in unknown.output + dead.output


@pytest.fixture
def silent_engine() -> Iterator[str]:
    """A context whose engine accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    name = f"cage-silent-{os.getpid()}"
    port = listener.getsockname()[1]
    subprocess.run(
        ["docker", "context", "create", name, "--docker", f"host=tcp://127.0.0.1:{port}"],
        capture_output=True,
        check=True,
    )
    try:
        yield name
    finally:
        stop.set()
        subprocess.run(["docker", "context", "rm", "-f", name], capture_output=True)
        for conn in held:
            conn.close()
        listener.close()


def test_list_over_three_engines_one_unreachable(remote_cage: Cage, silent_engine: str) -> None:
    cage = remote_cage
    name = cage.name("listed")
    assert cage("start", "--engine", REMOTE, "--name", name, "--network", "none",
                "--detach").code == 0  # fmt: skip
    (cage.config_dir / "config.yaml").write_text(
        f"engines: [{REMOTE}, {DEAD}, {silent_engine}]\nengine_timeout: 8\n"
    )
    began = time.monotonic()
    listed = cage("list", "--json")
    took = time.monotonic() - began
    assert listed.code == 0, listed.output
    payload = listed.json()
    reach = {e["name"]: e["reachable"] for e in payload["engines"]}
    assert reach == {"local": True, REMOTE: True, DEAD: False, silent_engine: False}
    silent = next(e for e in payload["engines"] if e["name"] == silent_engine)
    assert "did not answer within 8 s" in silent["error"]
    assert [s["engine"] for s in payload["sessions"] if s["name"] == name] == [REMOTE]
    # One bound for all: the engines are asked at once, and a silent one costs the
    # timeout, not more (the rest is Python's start-up and the other engines).
    assert took < 8 + 4, took
    text = cage("list")
    assert text.code == 0 and "ENGINE" in text.stdout and REMOTE in text.stdout
    assert f"engine {DEAD} is unreachable" in text.stderr
    # one engine alone: only its sessions, and only it is asked
    alone = cage("list", "--engine", REMOTE, "--json")
    assert alone.code == 0, alone.output
    assert [e["name"] for e in alone.json()["engines"]] == [REMOTE]
    assert [s["name"] for s in alone.json()["sessions"]] == [name]
    here = cage("list", "--engine", "local", "--json").json()
    assert [e["name"] for e in here["engines"]] == ["local"]
    assert name not in [s["name"] for s in here["sessions"]]
    dead = cage("list", "--engine", DEAD)
    assert dead.code == 1 and dead.stderr.startswith("error: cannot reach"), dead.output
    assert "Traceback" not in dead.output
    began = time.monotonic()
    silent = cage("list", "--engine", silent_engine)
    assert silent.code == 1 and silent.stderr.startswith("error: "), silent.output
    assert time.monotonic() - began < 8 + 4  # engine_timeout bounds it, once
    unknown = cage("list", "--engine", "no-such-context")
    assert unknown.code == 2 and "docker context create" in unknown.stderr, unknown.output
    # gc works on the local engine: a session on another engine is none of its business
    assert cage("gc", "--yes").code == 0
    assert names_on(REMOTE, cage.owner()) == [f"cage-{name}"]
    assert (cage.data_dir / "sessions" / name / "metadata").is_file()


def test_auto_placement_holds_each_engines_max_sessions(remote_cage: Cage) -> None:
    cage = remote_cage
    (cage.config_dir / "config.yaml").write_text(
        f"max_sessions: 1\nengine_timeout: 20\nengines:\n  - name: {REMOTE}\n    max_sessions: 2\n"
    )

    def start(i: int) -> tuple[int, str]:
        result = cage("start", "--engine", "auto", "--name", cage.name(f"auto{i}"),
                      "--network", "none", "--detach", "--json")  # fmt: skip
        return result.code, result.output

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(start, range(4)))
    codes = sorted(code for code, _ in results)
    assert codes == [0, 0, 0, 2], results
    refused = next(out for code, out in results if code == 2)
    assert "every engine is full" in refused
    placed = {s["name"]: s["engine"] for s in cage("list", "--json").json()["sessions"]}
    assert sorted(placed.values()) == sorted(["local", REMOTE, REMOTE]), placed
    assert len(names_on(REMOTE, cage.owner())) == 2
    assert len(names_on(None, cage.owner())) == 1


def test_doctor_checks_each_engine(remote_cage: Cage) -> None:
    cage = remote_cage
    (cage.config_dir / "config.yaml").write_text(
        f"engines: [{REMOTE}, {DEAD}]\nengine_timeout: 20\n"
    )
    result = cage("doctor", "--no-probe", "--json")
    checks = {c["check"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks[f"engine {REMOTE}"]["status"] == "ok", checks[f"engine {REMOTE}"]
    assert f"at ssh://{REMOTE}" in checks[f"engine {REMOTE}"]["detail"]
    dead = checks[f"engine {DEAD}"]
    assert dead["status"] == "fail" and f"docker --context {DEAD} info" in dead["fix"]
    assert result.code == 1


def test_snapshot_fork_and_restore_stay_on_the_remote_engine(
    remote_cage: Cage, tmp_path: Path
) -> None:
    """A remote session's snapshot is volumes on its engine; a fork and a restore run
    there too, and nothing of either reaches the local engine."""
    cage = remote_cage
    repo = make_repo(tmp_path / "project")
    name, twin = cage.name("snap"), cage.name("twin")
    started = cage(
        "start", "--engine", REMOTE, "--name", name, "--clone", str(repo),
        "--network", "none", "--detach",
    )  # fmt: skip
    assert started.code == 0, started.output
    work = "git add -A && git commit -qm 'agent: kept' && echo wip > wip.txt"
    assert cage("exec", name, "--", "sh", "-c", work).code == 0

    taken = cage("snapshot", name, "--name", f"{name}-s", "--json")
    assert taken.code == 0, taken.output
    owner = cage.owner()
    snap_volumes = [v for v in volumes_on(REMOTE, owner) if v.startswith(f"cage-snap-{name}-s-")]
    assert snap_volumes, volumes_on(REMOTE, owner)
    local = subprocess.run(["docker", "volume", "ls", "-q"], capture_output=True, text=True)
    assert f"cage-snap-{name}-s-" not in local.stdout

    forked = cage("fork", name, twin, "--json")
    assert forked.code == 0, forked.output
    assert names_on(REMOTE, owner) == sorted([f"cage-{name}", f"cage-{twin}"])
    assert names_on(None, owner) == []
    twin_state = cage("exec", twin, "--", "sh", "-c", "git branch --show-current; cat wip.txt")
    assert twin_state.stdout.split() == [f"cage/{twin}", "wip"], twin_state.output

    assert cage("exec", name, "--", "sh", "-c", "rm wip.txt && echo later > later.txt").code == 0
    restored = cage("restore", name, f"{name}-s")
    assert restored.code == 0, restored.output
    back = cage("exec", name, "--", "sh", "-c", "cat wip.txt; ls later.txt 2>/dev/null; true")
    assert back.stdout.split() == ["wip"], back.output
    assert names_on(None, owner) == []
    assert cage("snapshot", "rm", f"{name}-s").code == 0
    assert not [v for v in volumes_on(REMOTE, owner) if v.startswith(f"cage-snap-{name}-s-")]
