"""The socket volume a session shares with its companion (/sock): the session's user
can neither replace the companion's out/ nor plant a link where the companion writes,
and the companion writes nothing through one (the attack: socket_attack.py; on
rootless Podman: test_podman_rootless.py)."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import Cage
from tests.integration.socket_attack import ATTACK, OUTCOME, WRITTEN_THROUGH, owners
from tests.isolation import IMAGE_COMPANION

pytestmark = pytest.mark.engine

COMPANION_UID = 13


def run(container: str, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "exec", container, "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
    )


def as_root_on_volume(name: str, *command: str) -> str:
    """A command as root in a throwaway container with the socket volume at /s."""
    return subprocess.run(
        ["docker", "run", "--rm", "--user", "0", "--network", "none", "--entrypoint",
         command[0], "-v", f"cage-sock-{name}:/s", IMAGE_COMPANION, *command[1:]],
        check=True, capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip


def test_the_session_cannot_replace_the_companions_files(cage: Cage) -> None:
    name = cage.name("sockv")
    assert cage("start", name, "-d").code == 0

    attack = run(f"cage-{name}", ATTACK)
    assert attack.returncode == 0, attack.stderr
    session_uid = int(run(f"cage-{name}", "id -u").stdout)
    found = owners(attack.stdout)
    assert found["/sock"] not in (session_uid,) and found["/sock/out"] == COMPANION_UID, found
    assert "took-out" not in attack.stdout and "planted" not in attack.stdout, attack.stdout

    # The companion writes out/ again at its next start: nothing goes through a link.
    assert cage("stop", name).code == 0
    assert cage("start", name, "-d").code == 0
    assert run(f"companion-cage-{name}", WRITTEN_THROUGH).stdout == "intact\n"
    kinds = run(f"cage-{name}", OUTCOME).stdout.splitlines()
    assert kinds == ["directory 13", "regular file 13", "regular file 13"], kinds


@pytest.mark.parametrize("replacement", ["directory", "link"])
def test_a_companion_refuses_an_outbox_the_session_replaced(cage: Cage, replacement: str) -> None:
    """A socket volume whose top the session owns (one made before the companion owned
    it, under keep-id): the session replaces out/ with its own directory holding a
    planted link, or with a link into the companion. The companion's next start
    refuses it, and writes nothing there."""
    name = cage.name("sockold")
    assert cage("start", name, "-d").code == 0
    session_uid = run(f"cage-{name}", "id -u").stdout.strip()
    as_root_on_volume(name, "chown", session_uid, "/s")
    replace = {
        "directory": "mkdir /sock/out && ln -s /tmp/cage-planted /sock/out/ca-bundle.pem.new",
        "link": "ln -s /run/cage /sock/out",  # the companion's tmpfs: its own, too
    }[replacement]
    moved = run(f"cage-{name}", f"mv /sock/out /sock/taken && {replace} && echo replaced")
    assert moved.stdout == "replaced\n", moved.stderr

    assert cage("stop", name).code == 0
    restarted = cage("start", name, "-d")
    assert restarted.code != 0 and "Traceback" not in restarted.output
    assert "/sock/out is not the companion's own directory" in restarted.stderr
    if replacement == "directory":  # nothing was written there, through the link or not
        assert as_root_on_volume(name, "ls", "-A", "/s/out/").split() == ["ca-bundle.pem.new"]
