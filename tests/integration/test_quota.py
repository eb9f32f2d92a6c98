"""Volume size limits: the clone, Claude Code's data and the socket volume are bounded
filesystems; writing past a limit gives ENOSPC and the host keeps its space."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Cage, inspect
from tests.integration.workspace_helpers import make_repo

pytestmark = [pytest.mark.engine, pytest.mark.podman]

MIB = 1024 * 1024


@pytest.fixture
def bounded(cage: Cage) -> Cage:
    if os.geteuid() != 0:
        pytest.skip("volume limits need root")
    (cage.config_dir / "config.yaml").write_text(
        "workspace_size: 64m\ndata_size: 32m\nsocket_size: 16m\n"
    )
    return cage


def fill(cage: Cage, name: str, directory: str) -> str:
    """Write 200 MiB into a directory of the session; dd's last words."""
    script = f"dd if=/dev/zero of={directory}/fill bs=1M count=200 2>&1; echo exit=$?"
    run = cage("exec", name, "--", "sh", "-c", script)
    return run.stdout


@pytest.mark.slow
def test_writing_past_a_limit_gives_enospc(bounded: Cage, tmp_path: Path) -> None:
    cage = bounded
    repo = make_repo(tmp_path / "proj")
    name = cage.name()
    started = cage("start", "--name", name, "-d", "--clone", str(repo))
    assert started.code == 0, started.output
    assert "unbounded" not in started.stderr
    mounts = {m["Destination"]: m for m in inspect(f"cage-{name}")["Mounts"]}
    assert mounts["/workspace/proj"]["Type"] == "volume"
    sizes = cage(
        "exec",
        name,
        "--",
        "sh",
        "-c",
        "df -B1M --output=size /workspace/proj ~/.claude /sock | tail -n +2",
    ).stdout
    totals = [int(s) for s in sizes.split()]
    assert totals[0] <= 64 and totals[1] <= 32 and totals[2] <= 16, sizes
    for directory in ("/workspace/proj", "/home/claude/.claude", "/sock/in"):
        out = fill(cage, name, directory)
        assert "No space left on device" in out and "exit=1" in out, (directory, out)
    # The clone still works (git keeps its files). On the host, the session's writes sit
    # in the sparse images, which hold at most their sizes (the host disk is shared with
    # other writers, so its free space is no measure).
    assert cage("exec", name, "--", "git", "status", "--short").code == 0
    images = list((cage.data_dir / "volumes").glob("*/fs.img"))
    assert len(images) == 3
    assert sum(p.stat().st_blocks * 512 for p in images) <= (64 + 32 + 16 + 8) * MIB

    # A full socket volume would keep the companion from starting again: empty it.
    assert cage("exec", name, "--", "rm", "/sock/in/fill").code == 0
    # After a reboot the filesystems are not mounted: the next start mounts them again.
    assert cage("stop", name).code == 0
    for mnt in (cage.data_dir / "volumes").glob("*/mnt"):
        subprocess.run(["umount", str(mnt)], check=True)
    assert cage("start", "--name", name, "-d").code == 0
    assert cage("exec", name, "--", "sh", "-c", "test -s fill && git status --short").code == 0

    # The fill is uncommitted work in the clone: destroying it needs --discard.
    assert cage("destroy", "--force", "--discard", name).code == 0
    assert not list((cage.data_dir / "volumes").iterdir())
    mounted = Path("/proc/self/mounts").read_text()
    assert str(cage.data_dir) not in mounted


def test_zero_means_a_plain_volume(cage: Cage, tmp_path: Path) -> None:
    (cage.config_dir / "config.yaml").write_text(
        "workspace_size: 0\ndata_size: 0\nsocket_size: 0\n"
    )
    name = cage.name()
    started = cage("start", "--name", name, "--network", "none", "-d",
                   "--clone", str(make_repo(tmp_path / "proj")))  # fmt: skip
    assert started.code == 0, started.output
    volume = subprocess.run(["docker", "volume", "inspect", f"cage-work-{name}"],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert '"Options": null' in volume or '"Options": {}' in volume, volume
    assert not (cage.data_dir / "volumes").exists() or not list(
        (cage.data_dir / "volumes").iterdir()
    )


def test_bad_sizes_are_refused(cage: Cage) -> None:
    (cage.config_dir / "config.yaml").write_text("workspace_size: 1m\n")
    run = cage("start", "--name", cage.name(), "-d")
    assert run.code == 2 and "workspace_size" in run.stderr, run.output


def test_gc_releases_a_filesystem_whose_volume_is_gone(bounded: Cage) -> None:
    from claude_cage import quota

    volume = f"cage-work-{bounded.name()}"  # as a start killed before the engine's volume
    assert quota.prepare(volume, "32m", 1000, 1000) is not None
    mnt = bounded.data_dir / "volumes" / volume / "mnt"
    assert os.path.ismount(mnt)
    run = bounded("gc", "--yes")
    assert run.code == 0, run.output
    assert not os.path.ismount(mnt) and not mnt.parent.exists()


def test_another_local_user_cannot_reach_a_volumes_socket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The socket volume's sockets are 0666 (the companion must connect): a desktop's
    x11vnc waits there for the token-checked websockify alone. A data directory others
    can walk through (`CAGE_DATA_DIR=/srv/cage`, 0755) must not let another local user,
    nor the host account with the session's uid, walk down to them: `volumes/<volume>/`
    is 0700, also when an older version left it 0755."""
    import shutil
    import socket
    import sys
    import tempfile

    from claude_cage import quota

    if os.geteuid() != 0 or not quota.available():
        pytest.skip("volume limits need root")
    open_dir = Path(tempfile.mkdtemp(prefix="cage-open-", dir="/tmp"))
    open_dir.chmod(0o755)
    monkeypatch.setenv("CAGE_DATA_DIR", str(open_dir / "data"))
    volume = f"cage-sock-{os.getpid()}"
    server = socket.socket(socket.AF_UNIX)

    def connect_as(uid: int, path: Path) -> subprocess.CompletedProcess[str]:
        probe = "import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])"
        return subprocess.run(
            ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
             sys.executable, "-I", "-c", probe, str(path)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip

    try:
        options = quota.prepare(volume, "16m", 0, 0)
        assert options is not None
        inbox = Path(options["device"]) / "in"
        inbox.mkdir(mode=0o755)
        os.chown(inbox, 1000, 1000)
        vnc = inbox / "vnc.sock"  # as x11vnc leaves it: 0666, in a 0755 in/
        server.bind(str(vnc))
        vnc.chmod(0o666)
        server.listen()
        (open_dir / "data").chmod(0o755)
        for uid in (65534, 1000):
            refused = connect_as(uid, vnc)
            assert refused.returncode != 0, uid
            assert "PermissionError" in refused.stderr, refused.stderr
        # A volume an older version left walkable is closed at the next start's mount check.
        for directory in (vnc.parents[2], vnc.parents[3]):
            directory.chmod(0o755)
        assert connect_as(65534, vnc).returncode == 0  # the attack, on the old layout
        quota.ensure_mounted(volume)
        assert "PermissionError" in connect_as(65534, vnc).stderr
    finally:
        server.close()
        quota.release(volume)
        shutil.rmtree(open_dir, ignore_errors=True)
