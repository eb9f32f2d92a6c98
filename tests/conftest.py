"""Shared fixtures.

Engine tests are marked `engine`. Where no Docker engine answers they are skipped
locally, and fail in CI (CI=true) or with CAGE_REQUIRE_ENGINE=1: a missing engine
there is a broken machine, not a reason to pass.

With CAGE_TEST_ENGINE=podman the engine tests run on rootful Podman instead, through its
Docker-compatible API: scripts/ensure-podman starts it, and DOCKER_HOST names its socket
for the `docker` CLI the tests use and for every claude-cage they run. `make test` runs
the tests marked `podman` that way after the rest (scripts/run-tests).

Each test gets its own data and config directories. Every Docker object claude-cage
creates carries `cage.owner`, a hash of the data directory, so teardown removes
exactly what this test made, even after a failure, and tests never see each other.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import isolation

REQUIRE_ENGINE = os.environ.get("CI") == "true" or os.environ.get("CAGE_REQUIRE_ENGINE") == "1"
# CI registers gVisor (scripts/ensure-docker), so there a missing runsc is a failure.
REQUIRE_RUNSC = os.environ.get("CI") == "true" or os.environ.get("CAGE_REQUIRE_RUNSC") == "1"
ON_PODMAN = os.environ.get("CAGE_TEST_ENGINE") == "podman"
# claude-cage as its console script runs it (`python -c CLI_PROBE ARGS...`), then what
# ended it and whether Click loaded (cli/quick.py runs some command lines without it).
CLI_PROBE = (
    "import sys\n"
    "from claude_cage.cli import main\n"
    "sys.argv = ['claude-cage', *sys.argv[1:]]\n"
    "try:\n    main()\n"
    "except SystemExit as exc:\n    print('EXIT', exc.code)\n"
    "print('CLICK', 'click' in sys.modules)\n"
)


def pytest_configure(config: pytest.Config) -> None:
    # (pytest-xdist's workers inherit DOCKER_HOST from the process that starts them)
    if ON_PODMAN and not os.environ.get("PYTEST_XDIST_WORKER"):
        from tests.integration.podman_setup import run_ensure_podman

        run = run_ensure_podman(timeout=900)
        if run.returncode != 0:
            raise pytest.UsageError(f"CAGE_TEST_ENGINE=podman, but no Podman: {run.stderr}")
        os.environ["DOCKER_HOST"] = run.stdout.strip()


def _engine_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


# How scripts/run-tests spreads the tests over its workers (pytest-xdist, --dist
# loadgroup): a module's tests go to one worker, so its shared sessions are made once;
# every test on gVisor goes to one worker in turn ("gvisor"), since an idle gVisor
# session keeps a core busy and several at once starve the rest. The gVisor tests and
# then the longest modules (test-output/junit.xml) start first: one started last would
# run on alone.
LONGEST_FIRST = (
    "gvisor",
    "tests/integration/test_sandbox.py",
    "tests/integration/test_damaged_state.py",
    "tests/integration/test_desktop.py",
    "tests/integration/test_credentials.py",
    "tests/integration/test_clone_hostile.py",
    "tests/integration/test_crash_safety.py",
    "tests/integration/test_egress.py",
    "tests/integration/test_remote.py",
    "tests/integration/test_killed_clone.py",
    "tests/integration/test_dashboard.py",
    "tests/integration/test_audit.py",
    "tests/integration/test_devcontainer.py",
)


def _worker_group(item: pytest.Item) -> str:
    path = item.nodeid.partition("::")[0]
    params = getattr(item, "callspec", None)
    on_gvisor = params is not None and params.params.get("runtime") == "runsc"
    return "gvisor" if on_gvisor or path.endswith("/test_gvisor.py") else path


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.xdist_group(_worker_group(item)))

    def rank(item: pytest.Item) -> int:
        group = _worker_group(item)
        return LONGEST_FIRST.index(group) if group in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each module's tests keep their order
    if not any(item.get_closest_marker("engine") for item in items):
        return
    if _engine_answers():
        return
    if REQUIRE_ENGINE:
        raise pytest.UsageError(
            "no Docker engine answers, and CI requires one: run scripts/ensure-docker"
        )
    skip = pytest.mark.skip(reason="no Docker engine (set CAGE_REQUIRE_ENGINE=1 to fail instead)")
    for item in items:
        if item.get_closest_marker("engine"):
            item.add_marker(skip)


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> dict:
        return json.loads(self.stdout)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class Cage:
    """Runs the real `claude-cage` in a subprocess with isolated data and config dirs."""

    data_dir: Path
    config_dir: Path
    env: dict[str, str]
    prefix: str

    def name(self, suffix: str = "") -> str:
        """A session name unique to this test run."""
        return f"{self.prefix}{suffix or uuid.uuid4().hex[:4]}"

    def __call__(
        self,
        *args: str,
        input: str | None = None,
        timeout: float = 300,
        env: dict[str, str] | None = None,
    ) -> Result:
        run = subprocess.run(
            [sys.executable, "-m", "claude_cage", *args],
            input=input,
            # exec passes a stdin that is not a terminal on: never the test runner's.
            stdin=subprocess.DEVNULL if input is None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**self.env, **(env or {})},
        )
        return Result(run.returncode, run.stdout, run.stderr)

    def owner(self) -> str:
        from claude_cage import paths

        return paths.owner_id(self.data_dir)


def logs_bytes(cage: Cage, name: str, *flags: str) -> bytes:
    """`claude-cage logs NAME FLAGS` into a pipe: its output as bytes (exit 0 checked)."""
    run = subprocess.run(
        [sys.executable, "-m", "claude_cage", "logs", name, *flags],
        capture_output=True,
        env=cage.env,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


def docker_json(*args: str) -> object:
    out = subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def inspect(name: str) -> dict:
    return docker_json("inspect", name)[0]  # type: ignore[index]


def host_pids(container: str) -> list[str]:
    """The container's processes as the host numbers them (Podman's compatible `top`
    gives the container's own numbers; its `hpid` the host's)."""
    argv = ["podman", "top", container, "hpid"] if ON_PODMAN else ["docker", "top", container]
    argv += [] if ON_PODMAN else ["-o", "pid"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return [pid for pid in out.split()[1:] if pid.isdigit()]  # Podman: "?" for one it lost


def drops_every_capability(host: dict) -> bool:
    """Whether an inspect answer's HostConfig drops every capability and adds none:
    Docker says ALL, Podman's compatible API names each one it dropped."""
    dropped = set(host.get("CapDrop") or [])
    if ON_PODMAN:
        return {"CHOWN", "NET_RAW", "SETUID", "SYS_CHROOT"} <= dropped and not host["CapAdd"]
    return dropped == {"ALL"} and not host["CapAdd"]


def owned(owner: str) -> tuple[list[str], list[str]]:
    """Names of the containers and volumes labelled with this owner."""
    label = f"label=cage.owner={owner}"
    containers = subprocess.run(
        ["docker", "ps", "-a", "--format", "{{.Names}}", "--filter", label],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    volumes = subprocess.run(
        ["docker", "volume", "ls", "-q", "--filter", label],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return containers, volumes


def remove_owned(owner: str) -> None:
    """Force-remove every container and volume labelled with this owner."""
    containers, volumes = owned(owner)
    if containers:
        subprocess.run(["docker", "rm", "-f", *containers], capture_output=True)
    if volumes:
        subprocess.run(["docker", "volume", "rm", "-f", *volumes], capture_output=True)


def release_volumes(data_dir: Path) -> None:
    """Unmount the bounded volumes' filesystems (claude-cage mounts them as root)."""
    from claude_cage import quota

    quota.release_all(data_dir)


def runsc_registered() -> bool:
    out = subprocess.run(
        ["docker", "info", "--format", "{{json .Runtimes}}"], capture_output=True, text=True
    )
    return out.returncode == 0 and '"runsc"' in out.stdout


@pytest.fixture(scope="module")
def runtime(request: pytest.FixtureRequest) -> str:
    """The container runtime this module's sessions use: runc unless the module is
    parametrised over runtimes (tests/integration/conftest.py: RUNTIME_MODULES)."""
    name = getattr(request, "param", "runc")
    if name == "runsc" and ON_PODMAN:
        pytest.skip("gVisor is refused on Podman (test_podman.py::test_gvisor_on_podman_...)")
    if name == "runsc" and not runsc_registered():
        message = "gVisor (runsc) is not registered with the engine: run scripts/ensure-docker"
        if REQUIRE_RUNSC:
            pytest.fail(message)
        pytest.skip(message)
    return name


def ensure_egress_network() -> None:
    if (
        subprocess.run(
            ["docker", "network", "inspect", isolation.EGRESS_NETWORK], capture_output=True
        ).returncode
        != 0
    ):
        subprocess.run(
            [
                "docker",
                "network",
                "create",
                "--label",
                "managed-by=claude-cage",
                "--label",
                "cage.role=network",
                isolation.EGRESS_NETWORK,
            ],
            capture_output=True,
        )


@functools.cache
def egress_subnets() -> str:
    """The egress network's subnets: the tests' own hosts live there, at private
    addresses the address guard refuses unless allowed_address_ranges holds them."""
    if not _engine_answers():
        return ""
    ensure_egress_network()
    out = subprocess.run(
        [
            "docker",
            "network",
            "inspect",
            "--format",
            "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
            isolation.EGRESS_NETWORK,
        ],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def _isolated_cage(base: Path, monkeypatch: pytest.MonkeyPatch, runtime: str = "runc") -> Cage:
    """A Cage whose data and config dirs live under `base`, set in this process too."""
    data, conf = base / "data", base / "config"
    conf.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAGE_", "ANTHROPIC_"))}
    env.pop("MONGODB_URI", None)
    cage_env = {
        **isolation.cage_env(),
        "CAGE_RUNTIME": runtime,
        "CAGE_ALLOWED_ADDRESS_RANGES": egress_subnets(),
        # Never the Claude Code setup of whoever runs the tests (test_user_config).
        "CAGE_CLAUDE_CONFIG": "off",
    }
    env.update(CAGE_DATA_DIR=str(data), CAGE_CONFIG_DIR=str(conf), **cage_env)
    for key, value in cage_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CAGE_DATA_DIR", str(data))
    monkeypatch.setenv("CAGE_CONFIG_DIR", str(conf))
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("MONGODB_URI", raising=False)
    return Cage(data, conf, env, prefix=f"t{uuid.uuid4().hex[:6]}-")


@pytest.fixture
def cage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runtime: str) -> Iterator[Cage]:
    """A claude-cage with its own data dir; removes everything it made at teardown."""
    instance = _isolated_cage(tmp_path, monkeypatch, runtime)
    yield instance
    remove_owned(instance.owner())
    release_volumes(instance.data_dir)


@pytest.fixture(scope="module")
def cage_module(tmp_path_factory: pytest.TempPathFactory, runtime: str) -> Iterator[Cage]:
    """Like `cage`, shared by one module's tests: for sessions those tests only read.

    One test may use both for subprocess runs; code run in-process then sees the
    directories of `cage`, which is set up last.
    """
    with pytest.MonkeyPatch.context() as monkeypatch:
        instance = _isolated_cage(tmp_path_factory.mktemp("cage"), monkeypatch, runtime)
        try:
            yield instance
        finally:
            remove_owned(instance.owner())
            release_volumes(instance.data_dir)
