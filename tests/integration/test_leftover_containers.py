"""What a killed command leaves on the engine: `doctor`'s probe sessions (labelled
`cage.probe`), and a session's filler or export container. A killed doctor's probe never
counts towards max_sessions, is never adopted, and goes with `gc` or the next `doctor`;
`destroy --force` and `gc` remove every container labelled for a session before its
volumes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from claude_cage import names
from claude_cage.operations.doctor import PROBE_URL
from tests.conftest import Cage
from tests.integration.stalling import proxy_socket, stalled_within

pytestmark = pytest.mark.engine


def owned(cage: Cage, *filters: str, kind: str = "container") -> list[str]:
    args = ["docker", "ps", "-a"] if kind == "container" else ["docker", "volume", "ls"]
    fmt = "{{.Names}}" if kind == "container" else "{{.Name}}"
    every = ["--filter", f"label=cage.owner={cage.owner()}"]
    for f in filters:
        every += ["--filter", f]
    out = subprocess.run([*args, *every, "--format", fmt], capture_output=True, text=True)
    return sorted(out.stdout.split())


def kill_doctor_with_its_probe_running(cage: Cage) -> str:
    """Run `doctor`, SIGKILL it while its probe session runs; the probe's name. The
    doctor's engine stalls when it asks the probe for the denied host: the probe runs
    then, and stays, however long the doctor took to get there."""
    with proxy_socket(stall_at=PROBE_URL) as (proxy, listen):
        doctor = subprocess.Popen(
            [sys.executable, "-m", "claude_cage", "doctor", "--json"],
            env={**cage.env, "DOCKER_HOST": f"unix://{listen}"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert stalled_within(proxy, 180), f"the doctor never probed (exit {doctor.poll()})"
            doctor.kill()
            doctor.wait()
        finally:
            if doctor.poll() is None:
                doctor.kill()
                doctor.wait()
    running = owned(cage, "label=cage.probe", "label=cage.role=session", "status=running")
    probes = [n.removeprefix("cage-") for n in running if n.startswith("cage-doctor-probe-")]
    assert len(probes) == 1, running
    return probes[0]


def test_a_killed_doctors_probe_never_counts_is_never_adopted_and_goes(cage: Cage) -> None:
    probe = kill_doctor_with_its_probe_running(cage)
    assert owned(cage, f"label=cage.session={probe}", "status=running")  # it is still there

    # it does not count towards max_sessions
    name = cage.name()
    started = cage("start", "--name", name, "--detach", env={"CAGE_MAX_SESSIONS": "1"})
    assert started.code == 0, started.output

    # gc removes it, record and all; it never adopts it
    done = cage("gc", "--yes", "--json")
    assert done.code == 0, done.output
    items = [i for i in done.json()["items"] if i["session"] == probe]
    assert items and all(i["outcome"] == "removed" for i in items), items
    assert ("metadata", probe) in {(i["kind"], i["target"]) for i in items}
    assert owned(cage, f"label=cage.session={probe}") == []
    assert owned(cage, f"label=cage.session={probe}", kind="volume") == []
    shown = {s["name"] for s in cage("list", "--json").json()["sessions"]}
    assert shown == {name}
    assert not (cage.data_dir / "sessions" / probe).exists()
    assert owned(cage, f"label=cage.session={name}", "status=running")  # the user's stays

    # a following doctor removes what a killed one left
    assert cage("destroy", "--force", name).code == 0
    left = kill_doctor_with_its_probe_running(cage)
    after = cage("doctor", "--json")
    assert "Traceback" not in after.output
    checks = {c["check"]: c for c in after.json()["checks"]}
    assert checks["filtered network"]["status"] == "ok", checks["filtered network"]
    assert owned(cage, "label=cage.probe") == []
    assert owned(cage, "label=cage.probe", kind="volume") == []
    assert not (cage.data_dir / "sessions" / left).exists()
    assert cage("list", "--json").json()["sessions"] == []


def leave_a_filler(cage: Cage, name: str, role: str, container: str) -> None:
    """The container a killed clone upload (or export) leaves: the session's labels with
    its role, mounting the session's workspace volume."""
    info = subprocess.run(
        ["docker", "inspect", "--format", "{{json .Config.Labels}}", f"cage-{name}"],
        capture_output=True,
        text=True,
        check=True,
    )
    found = json.loads(info.stdout)
    found["cage.role"] = role
    label_args = [arg for key, value in found.items() for arg in ("--label", f"{key}={value}")]
    image = subprocess.run(
        ["docker", "inspect", "--format", "{{.Config.Image}}", f"cage-{name}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    subprocess.run(
        ["docker", "create", "--name", container, *label_args, "--network", "none",
         "-v", f"{names.workspace_volume(name)}:/fill/workspace", image, "true"],
        capture_output=True,
        check=True,
    )  # fmt: skip


@pytest.mark.parametrize(("role", "prefix"), [("fill", "fill-cage-"), ("export", "export-cage-")])
def test_destroy_force_removes_a_filler_or_export_left_by_a_kill(
    cage: Cage, role: str, prefix: str, tmp_path
) -> None:
    name = cage.name()
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    (repo / "a.txt").write_text("a\n")
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "a"],
        check=True,
    )
    started = cage("start", "--name", name, "--detach", "--clone", str(repo))
    assert started.code == 0, started.output
    leave_a_filler(cage, name, role, prefix + name)
    destroyed = cage("destroy", "--force", "--discard", name)
    assert destroyed.code == 0, destroyed.output
    assert owned(cage, f"label=cage.session={name}") == []
    assert owned(cage, f"label=cage.session={name}", kind="volume") == []


def test_gc_removes_a_filler_that_holds_a_removed_sessions_volume(cage: Cage, tmp_path) -> None:
    name = cage.name()
    started = cage("start", "--name", name, "--detach")
    assert started.code == 0, started.output
    subprocess.run(
        ["docker", "volume", "create", "--label", "managed-by=claude-cage",
         "--label", f"cage.owner={cage.owner()}", "--label", f"cage.session={name}",
         "--label", "cage.role=volume", names.workspace_volume(name)],
        capture_output=True,
        check=True,
    )  # fmt: skip
    leave_a_filler(cage, name, "fill", f"fill-cage-{name}")
    subprocess.run(["docker", "rm", "-f", f"cage-{name}"], capture_output=True, check=True)
    done = cage("gc", "--yes", "--json")
    assert done.code == 0, done.output
    items = [i for i in done.json()["items"] if i["session"] == name]
    # The record is archived first, as destroy does; everything else is removed.
    archived = [i for i in items if i["kind"] == "archive"]
    assert [i["outcome"] for i in archived] == ["archived"], items
    removed = [i for i in items if i["kind"] != "archive"]
    assert removed and all(i["outcome"] == "removed" for i in removed), items
    assert owned(cage, f"label=cage.session={name}") == []
    assert owned(cage, f"label=cage.session={name}", kind="volume") == []
    assert cage("list", "--json").json()["sessions"] == []
