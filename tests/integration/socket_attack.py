"""The session's attack on the socket volume it shares with its companion, run as the
session's own user: replace the companion's out/ with a directory of its own, and
plant a link where the companion writes at its next start (out/ca-bundle.pem.new),
pointing into the companion's own filesystem. Each step prints what it managed."""

from __future__ import annotations

PLANTED = "/tmp/cage-planted"  # in the companion: made only by a write through the link

ATTACK = f"""
stat -c 'owner %n %u' /sock /sock/out /sock/in
mv /sock/out /sock/taken 2>/dev/null && echo took-out && mkdir /sock/out
ln -s {PLANTED} /sock/out/ca-bundle.pem.new 2>/dev/null && echo planted
true
"""

# After a restart, from the session: the companion's files, as they must be.
OUTCOME = "stat -c '%F %u' /sock/out /sock/out/ca.pem /sock/out/ca-bundle.pem"

# In the companion: whether anything was written through the link.
WRITTEN_THROUGH = f"if [ -e {PLANTED} ]; then echo written; else echo intact; fi"


def owners(output: str) -> dict[str, int]:
    """The `owner PATH UID` lines of the attack's output."""
    found = {}
    for line in output.splitlines():
        if line.startswith("owner "):
            _, path, uid = line.split()
            found[path] = int(uid)
    return found
