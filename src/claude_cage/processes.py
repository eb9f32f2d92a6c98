"""Whether a process of this machine is gone: what a killed command left (a doctor's
probe, a clone's snapshot, a review's quarantine) is named by the pid that made it, and
removed once that process no longer runs."""

from __future__ import annotations

import os


def gone(pid: int) -> bool:
    """No process with this pid runs here (one of another user's still counts)."""
    try:
        os.kill(pid, 0)
    except PermissionError:
        return False
    except (ProcessLookupError, OverflowError, ValueError):
        return True
    return pid <= 0  # 0 and negative pids name process groups, never a process
