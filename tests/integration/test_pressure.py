"""A session that pushes against its limits. By default it gets the host's cores minus
one and half its memory (at most 4g), so a CPU loop leaves the host a core; and
`status` reads its resource use from the host side, so it stays right while a fork
bomb fills the session to its pids limit and no probe can start inside."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from claude_cage import cgroups, config
from claude_cage.engine import answers
from tests.conftest import Cage, inspect

pytestmark = [pytest.mark.engine, pytest.mark.slow]

PIDS = 48
# A bounded fork bomb: for HOLD seconds, fork whenever the kernel lets it (so the
# session stays full while its other tasks come and go), then kill every child.
HOLD = 12
FORK_BOMB = f"""
my @kids; my $end = time + {HOLD};
while (time < $end) {{
    my $pid = fork;
    if (!defined $pid) {{ select(undef, undef, undef, 0.01); next }}
    if (!$pid) {{ sleep {HOLD}; exit 0 }}
    push @kids, $pid;
}}
print "forked=", scalar(@kids), "\\n"; kill 9, @kids; waitpid($_, 0) for @kids;
"""


def status(cage: Cage, name: str) -> dict:
    result = cage("status", name, "--json")
    assert result.code == 0, result.output
    return result.json()["session"]


def test_status_sees_a_fork_bomb_from_outside(cage: Cage) -> None:
    name = cage.name("bomb")
    started = cage("start", "--name", name, "--network", "none", "--detach",
                   "--pids", str(PIDS), "--memory", "256m")  # fmt: skip
    assert started.code == 0, started.output
    bomb = subprocess.Popen(
        [sys.executable, "-m", "claude_cage", "exec", name, "--", "perl", "-e", FORK_BOMB],
        env=cage.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline, session, human = time.monotonic() + HOLD, {}, ""
        while time.monotonic() < deadline:
            session = status(cage, name)
            if session["resources"]["pids"] == PIDS:
                human = cage("status", name).stdout
                break
            time.sleep(0.2)
        use = session["resources"]
        assert use["pids"] == PIDS and use["pids_limit"] == PIDS, use
        assert use["memory_used"] > 0 and use["memory_limit"] == 256 * 1024**2
        assert use["cpu_seconds"] > 0
        # A probe inside needs processes of its own: when it found no room, status says
        # so rather than passing the check.
        [inside] = [c for c in session["sandbox"]["checks"] if c["check"] == "inside"]
        if not inside["ok"]:
            assert "no probe could run inside" in inside["detail"], inside
        # The human view, a moment later: still (about) full, never 0.
        [line] = [row.split() for row in human.splitlines() if row.startswith("pids ")]
        assert PIDS - 4 <= int(line[1]) <= PIDS and line[3] == str(PIDS), human
        assert "memory       0 B" not in human and "pids         0 /" not in human
    finally:
        out, _err = bomb.communicate(timeout=HOLD + 60)
    assert b"forked=" in out
    # Once it is over, the session is usable and status sees it calm again.
    assert cage("exec", name, "--", "true").code == 0
    assert status(cage, name)["resources"]["pids"] < PIDS


def test_default_limits_leave_the_host_a_core_and_room(cage: Cage) -> None:
    cores = len(os.sched_getaffinity(0))
    host_memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    name = cage.name("share")
    assert cage("start", "--name", name, "--network", "none", "--detach").code == 0
    host = inspect(f"cage-{name}")["HostConfig"]
    assert host["NanoCpus"] == max(1, cores - 1) * 10**9
    assert host["Memory"] == config.parse_size(config.default_memory(host_memory))
    assert host["Memory"] <= max(host_memory // 2, 512 * 1024**2)
    # config show: KEY, FROM (the layer), VALUE
    shown = {row.split()[0]: row.split()[1] for row in cage("config", "show").stdout.splitlines()}
    assert shown["cpus"] == "machine" and shown["memory"] == "machine"
    assert shown["max_sessions"] == "machine"

    # The attack: a busy loop on every core of the host, for a few seconds.
    loops = " & ".join(["timeout 4 sh -c 'while :; do :; done'"] * cores) + " & wait"
    info = answers.from_docker_inspect(inspect(f"cage-{name}"))

    def cpu_seconds() -> float:  # the session's cgroup, read on the host right now
        facts = cgroups.read(info)
        assert facts and facts["cpu_ns"], facts
        return int(facts["cpu_ns"]) / 1e9

    # Both readings sit right beside the clock readings, so no command's own time (such
    # as a status probe) stretches the interval the CPU time is measured over.
    before, began = cpu_seconds(), time.monotonic()
    assert cage("exec", name, "--", "sh", "-c", loops).code == 0
    used, wall = cpu_seconds() - before, time.monotonic() - began
    # CFS quota holds the session to cores - 1 (a little slack for the quota period).
    assert used / wall <= max(1, cores - 1) + 0.2, (used, wall)
