"""Sessions on gVisor (runsc): they really run on gVisor's kernel, the choice is recorded
and shown, combinations that make no sense are refused, and a Claude Code release that
does not run on gVisor is named by doctor and refused by `start --runtime runsc`.

Skipped where runsc is not registered with the engine; a failure in CI (tests/conftest.py).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Cage, inspect
from tests.isolation import IMAGE_CLI

pytestmark = [pytest.mark.engine, pytest.mark.slow]

# A Claude Code that starts on the host's kernel and crashes on gVisor's, as a release
# whose runtime needs something gVisor lacks would.
BROKEN_ON_GVISOR = f"""FROM {IMAGE_CLI}
USER 0
RUN rm /usr/local/bin/claude && printf '%s\\n' '#!/bin/sh' \\
    'if dmesg 2>/dev/null | grep -q gVisor; then' \\
    '  echo "panic(main thread): abort() called" >&2; exit 134; fi' \\
    'echo "9.9.9 (Claude Code)"' > /usr/local/bin/claude && chmod 0755 /usr/local/bin/claude
USER 1000:1000
LABEL cage.claude-code-version=9.9.9
"""


def kernel_facts(cage: Cage, name: str) -> str:
    return cage("exec", name, "--", "sh", "-c", "cat /proc/version; dmesg 2>&1 | head -1").stdout


@pytest.mark.parametrize("runtime", ["runsc"], indirect=True)
def test_a_runsc_session_runs_on_gvisors_kernel(cage: Cage, runtime: str) -> None:
    gvisor_session, runc_session = cage.name("gv"), cage.name("rc")
    assert cage("start", "--name", gvisor_session, "--network", "none", "--detach").code == 0
    started = cage(
        "start", "--name", runc_session, "--runtime", "runc", "--network", "none", "--detach"
    )
    assert started.code == 0, started.output
    assert inspect(f"cage-{gvisor_session}")["HostConfig"]["Runtime"] == "runsc"
    assert inspect(f"cage-{runc_session}")["HostConfig"]["Runtime"] == "runc"

    host_kernel = os.uname().release
    inside = kernel_facts(cage, gvisor_session)
    assert "Starting gVisor" in inside and host_kernel not in inside, inside
    # On runc the host's kernel answers, and refuses its log (syslog(2) is not allowed).
    inside = kernel_facts(cage, runc_session)
    assert host_kernel in inside and "Operation not permitted" in inside, inside

    listed = {s["name"]: s for s in cage("list", "--json").json()["sessions"]}
    assert listed[gvisor_session]["runtime"] == "runsc"
    assert listed[runc_session]["runtime"] == "runc"
    meta = (cage.data_dir / "sessions" / gvisor_session / "metadata").read_text()
    assert "runtime=runsc" in meta.splitlines()
    for name, wanted in (
        (gvisor_session, "runsc: gVisor's kernel"),
        (runc_session, "runc: the host"),
    ):
        status = cage("status", name, "--json").json()["session"]
        assert status["runtime"] == wanted.split(":")[0]
        [check] = [c for c in status["sandbox"]["checks"] if c["check"] == "runtime"]
        assert check["ok"] and check["detail"].startswith(wanted), check
        assert status["sandbox"]["ok"], status["sandbox"]

    # Stopped and started again, a session keeps its runtime, whatever the config says.
    assert cage("stop", gvisor_session).code == 0
    again = cage("start", "--name", gvisor_session, env={"CAGE_RUNTIME": "runc"})
    assert again.code == 0, again.output
    assert inspect(f"cage-{gvisor_session}")["HostConfig"]["Runtime"] == "runsc"


@pytest.mark.parametrize("runtime", ["runsc"], indirect=True)
def test_an_idle_session_on_gvisor_leaves_the_cpu_alone(cage: Cage, runtime: str) -> None:
    """tmux's epoll and poll loops spin under gVisor: an idle session burned most of a
    core. cage-agent runs tmux on select(2); its server now sleeps while nothing happens."""
    name = cage.name("idle")
    assert cage("start", "--name", name, "--network", "none", "--detach").code == 0
    # The server's CPU seconds, five seconds apart, as gVisor's kernel counts them.
    script = (
        "p=$(pgrep -f 'tmux.*new-session' | head -1); [ -n \"$p\" ] || exit 3; "
        "a=$(ps -o cputimes= -p $p); sleep 5; b=$(ps -o cputimes= -p $p); echo $a $b; "
        "tr '\\0' ' ' < /proc/$p/environ | grep -c EVENT_NOPOLL=1; "
        "tr '\\0' ' ' < /proc/$(pgrep -x claude | head -1)/environ | grep -c EVENT_ || true"
    )
    run = cage("exec", name, "--", "sh", "-c", script)
    assert run.code == 0, run.output
    times, server, claude = run.stdout.split("\n")[:3]
    before, after = (int(t) for t in times.split())
    assert after - before <= 1, run.stdout  # a spinning server uses all five
    assert server == "1" and claude == "0", run.stdout  # select for tmux, not Claude Code


@pytest.mark.parametrize("runtime", ["runsc"], indirect=True)
def test_host_network_and_desktop_on_gvisor_are_refused_and_nothing_is_made(
    cage: Cage, runtime: str
) -> None:
    name = cage.name("host")
    result = cage("start", "--name", name, "--network", "host", "--detach")
    assert result.code == 2
    assert result.stderr.startswith("error: --network host cannot run on gVisor"), result.stderr
    assert "hint: " in result.stderr and "Traceback" not in result.output
    assert not (cage.data_dir / "sessions" / name).exists()
    desktop = cage("start", "--name", name, "--mode", "desktop", "--detach")
    assert desktop.code == 2, desktop.output
    assert desktop.stderr.startswith("error: desktop sessions cannot run on gVisor")
    assert "hint: use --runtime runc for --mode desktop" in desktop.stderr
    assert not (cage.data_dir / "sessions" / name).exists()
    assert cage("list", "--json").json()["sessions"] == []
    bad = cage("start", "--runtime", "kata", "--detach")
    assert bad.code == 2 and "kata" in bad.stderr


@pytest.fixture
def broken_image(tmp_path: Path) -> Iterator[str]:
    tag = f"cage-test-broken-gvisor:{uuid.uuid4().hex[:8]}"
    (tmp_path / "Dockerfile").write_text(BROKEN_ON_GVISOR)
    built = subprocess.run(
        ["docker", "build", "-q", "-t", tag, str(tmp_path)], capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr
    yield tag
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


@pytest.mark.parametrize("runtime", ["runsc"], indirect=True)
def test_a_release_that_does_not_run_on_gvisor_is_named_and_refused(
    cage: Cage, runtime: str, broken_image: str
) -> None:
    env = {"CAGE_IMAGE_CLI": broken_image, "CAGE_RUNTIME": "runc"}
    report = cage("doctor", "--json", env=env).json()
    [check] = [c for c in report["checks"] if c["check"] == "gvisor"]
    assert check["status"] == "warn", check  # runc is the configured runtime
    assert "does not run on gVisor" in check["detail"] and "panic" in check["detail"]
    assert "runc" in check["fix"]

    on_gvisor = {**env, "CAGE_RUNTIME": "runsc"}
    refused = cage("start", "--image", broken_image, "--network", "none", "--detach", env=on_gvisor)
    assert refused.code == 2, refused.output
    assert "Claude Code 9.9.9 does not run on gVisor" in refused.stderr
    assert "--runtime runc" in refused.stderr
    assert cage("list", "--json").json()["sessions"] == []
    # The same image on runc is fine.
    ok = cage("start", "--image", broken_image, "--network", "none", "--detach", env=env)
    assert ok.code == 0, ok.output
    # With runsc configured, the same finding fails doctor.
    failing = cage(
        "doctor", "--json", env={"CAGE_IMAGE_CLI": broken_image, "CAGE_RUNTIME": "runsc"}
    )
    [check] = [c for c in failing.json()["checks"] if c["check"] == "gvisor"]
    assert check["status"] == "fail" and failing.code == 1, check
