"""Everything the benchmark creates, and its removal, even after Ctrl-C or a failure.

claude-cage runs with data directories in a temporary folder, so everything it makes
carries one of their `cage.owner` labels. Containers the benchmark runs itself (raw
`docker run` floors, test hosts) carry `cage-bench=<run id>`, and the volumes they make
are named with the run's prefix. `cleanup()` removes all three kinds, then the folder.
The shared egress network is left in place: sessions of other data dirs use it too.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from harness import run

from claude_cage import paths

DOCKER = shutil.which("docker") or "docker"


ISOLATION = ("CAGE_IMAGE_CLI", "CAGE_IMAGE_DESKTOP", "CAGE_IMAGE_COMPANION", "CAGE_EGRESS_NETWORK")


def claude_cage_executable() -> str:
    """The console script next to this interpreter (no version-manager shim in between)."""
    beside = Path(sys.executable).parent / "claude-cage"
    return str(beside) if beside.exists() else shutil.which("claude-cage") or "claude-cage"


class Workspace:
    def __init__(self) -> None:
        self.run_id = uuid.uuid4().hex[:6]
        self.root = Path(tempfile.mkdtemp(prefix=f"cage-bench-{self.run_id}-"))
        self.owners: list[str] = []
        self.label = f"cage-bench={self.run_id}"
        self.prefix = f"cbench-{self.run_id}-"  # names of raw containers and volumes
        self._count = 0
        self._released = 0  # owners before this index were released already

    def unique(self, stem: str = "") -> str:
        """A container or volume name of this run."""
        self._count += 1
        return f"{self.prefix}{stem}{self._count}"

    def session_name(self, stem: str) -> str:
        """A session name no one else on this engine uses."""
        self._count += 1
        return f"b{self.run_id}-{stem}{self._count}"

    def cage_env(self, tag: str) -> dict[str, str]:
        """Environment for `claude-cage` with its own data and config directories."""
        data, conf = self.root / tag / "data", self.root / tag / "config"
        data.mkdir(parents=True)
        conf.mkdir(parents=True)
        self.owners.append(paths.owner_id(data))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CAGE_", "ANTHROPIC_"))}
        env.pop("MONGODB_URI", None)
        # As a user runs it: byte-compiled modules (written by the untimed warm-up) and
        # stdout buffered, whatever the shell running the benchmark sets.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.pop("PYTHONUNBUFFERED", None)
        # The images and network of a tagged checkout (tests/isolation.py), when set.
        env.update({k: os.environ[k] for k in ISOLATION if k in os.environ})
        env.update(
            CAGE_DATA_DIR=str(data),
            CAGE_CONFIG_DIR=str(conf),
            CAGE_MAX_SESSIONS="10000",
            # The run's test hosts live on the egress network, at private addresses that
            # the proxy's address guard refuses unless this config holds them.
            CAGE_ALLOWED_ADDRESS_RANGES=self.egress_subnets(
                env.get("CAGE_EGRESS_NETWORK", "cage-filtered")
            ),
        )
        return env

    @functools.cache  # noqa: B019 (one workspace per run)
    def egress_subnets(self, network: str) -> str:
        """The egress network's subnets, made with claude-cage's labels when missing."""
        if subprocess.run([DOCKER, "network", "inspect", network], capture_output=True).returncode:
            labels = ["--label", "managed-by=claude-cage", "--label", "cage.role=network"]
            subprocess.run([DOCKER, "network", "create", *labels, network], capture_output=True)
        subnets = "{{range .IPAM.Config}}{{.Subnet}} {{end}}"
        return run([DOCKER, "network", "inspect", "--format", subnets, network]).strip()

    def owner_of(self, env: dict[str, str]) -> str:
        return paths.owner_id(Path(env["CAGE_DATA_DIR"]))

    def remove_containers(self, label: str) -> None:
        ids = run([DOCKER, "ps", "-aq", "--filter", f"label={label}"]).split()
        if ids:
            subprocess.run([DOCKER, "rm", "-f", *ids], capture_output=True)

    def remove_volumes(self, *filters: str) -> None:
        for flt in filters:
            names = run([DOCKER, "volume", "ls", "-q", "--filter", flt]).split()
            if flt.startswith("name="):  # docker's name filter matches substrings
                names = [n for n in names if n.startswith(flt[len("name=") :])]
            if names:
                subprocess.run([DOCKER, "volume", "rm", "-f", *names], capture_output=True)

    def release(self) -> None:
        """Remove what was made since the last release (run between sections)."""
        self.remove_containers(self.label)
        for owner in self.owners[self._released :]:
            self.remove_containers(f"cage.owner={owner}")
        self.remove_volumes(
            f"name={self.prefix}",
            *(f"label=cage.owner={o}" for o in self.owners[self._released :]),
        )
        self._released = len(self.owners)

    def cleanup(self) -> None:
        """Remove every container and volume this run made, then its folder."""
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for _ in range(3):  # again if an interrupted engine call created something late
                self.remove_containers(self.label)
                for owner in self.owners:
                    self.remove_containers(f"cage.owner={owner}")
                self.remove_volumes(
                    f"name={self.prefix}", *(f"label=cage.owner={o}" for o in self.owners)
                )
                if not self.leftovers():
                    break
                time.sleep(1)
            from claude_cage import quota

            for data in self.root.glob("*/data"):
                quota.release_all(data)  # bounded volumes are mounted filesystems
            shutil.rmtree(self.root, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, previous)

    def leftovers(self) -> list[str]:
        """Anything of this run still on the engine (empty after cleanup)."""
        found = run([DOCKER, "ps", "-aq", "--filter", f"label={self.label}"]).split()
        for owner in self.owners:
            found += run([DOCKER, "ps", "-aq", "--filter", f"label=cage.owner={owner}"]).split()
            found += run(
                [DOCKER, "volume", "ls", "-q", "--filter", f"label=cage.owner={owner}"]
            ).split()
        found += [
            v
            for v in run([DOCKER, "volume", "ls", "-q", "--filter", f"name={self.prefix}"]).split()
            if v.startswith(self.prefix)
        ]
        return found

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.cleanup()
        except Exception as exc:  # report, and let the original error (if any) through
            print(f"bench: cleanup failed: {exc}; look for label {self.label}", file=sys.stderr)
        else:
            if exc_info[0] is not None:
                print(f"bench: interrupted; removed what run {self.run_id} made", file=sys.stderr)
