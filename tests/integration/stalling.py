"""A stalled engine for the tests: a proxy in front of the engine's socket
(stall_proxy.py) that answers nothing once stopped with SIGSTOP, or once it has seen
a request holding given bytes."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

PROXY = Path(__file__).with_name("stall_proxy.py")


def engine_socket() -> str:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    assert host.startswith("unix://"), "the stalled-engine tests need a local engine"
    return host[len("unix://") :]


@contextlib.contextmanager
def proxy_socket(stall_at: str = "") -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """The proxy (stop it with SIGSTOP, or have it stall at the first request holding
    `stall_at`) and its socket; continued and ended at exit."""
    place = Path(tempfile.mkdtemp(prefix="cage-stall-", dir="/tmp"))  # a short socket path
    listen = place / "engine.sock"
    args = [sys.executable, str(PROXY), str(listen), engine_socket()]
    proxy = subprocess.Popen(
        [*args, stall_at] if stall_at else args,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proxy.stdout is not None and proxy.stdout.readline().strip() == "ready"
        yield proxy, listen
    finally:
        os.kill(proxy.pid, signal.SIGCONT)
        proxy.kill()
        proxy.wait()
        listen.unlink(missing_ok=True)
        place.rmdir()


def stalled_within(proxy: subprocess.Popen[str], seconds: float) -> bool:
    """Whether the proxy, given `stall_at`, has stalled (or does within `seconds`)."""
    assert proxy.stdout is not None
    ready, _, _ = select.select([proxy.stdout], [], [], seconds)
    return bool(ready) and proxy.stdout.readline().strip() == "stalled"
