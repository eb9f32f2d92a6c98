"""Sessions on a rootless Podman (`scripts/ensure-podman --rootless USER`), run by its
user as that user runs claude-cage, against the same user's own floors:

- `start --detach` (cli, network none) against `podman run -d` of the same image;
- `list` of one session against `podman ps -a` with the same label filter;
- `exec NAME true` against `podman exec`.

Every command, the floors too, goes through `runuser -u USER -- env -i ...`, so the cost
of becoming the user weighs on both sides alike. This machine's cgroups are v1, where
rootless Podman cannot limit a container, so the sessions start with
`rootless_without_limits` (docs/configuration.md).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import uuid
from pathlib import Path

from harness import BenchError, Ratio, Row, SectionResult, paired, paired_ratios, timed
from harness import run as run_command

NAME = "podman-rootless"
TITLE = "Rootless Podman: start, list and exec against the user's own floors"
ROOT = Path(__file__).resolve().parents[2]
USER = os.environ.get("CAGE_ROOTLESS_USER", "cage-rootless")
IMAGE = os.environ.get("CAGE_IMAGE_CLI", "claude-cage-cli:latest")
COMPANION = os.environ.get("CAGE_IMAGE_COMPANION", "claude-cage-companion:latest")
LIMITS = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]


class AsUser:
    """Commands run as the rootless user, with a data directory of the run's own."""

    def __init__(self, url: str, python: str, run_id: str) -> None:
        account = pwd.getpwnam(USER)
        self.url, self.python = url, python
        self.home = Path(account.pw_dir)
        self.base = self.home / f"cage-bench-{run_id}"
        self.src = self.base / "src"  # this checkout may be unreadable to the user
        shutil.copytree(ROOT / "src", self.src, ignore=shutil.ignore_patterns("__pycache__"))
        for path in (self.base, self.base / "data", self.base / "config"):
            path.mkdir(exist_ok=True)
        subprocess.run(["chown", "-R", f"{account.pw_uid}:{account.pw_gid}", str(self.base)])
        self.runtime = f"/run/user/{account.pw_uid}"

    def _as_user(self, variables: dict[str, str], *argv: str) -> list[str]:
        base = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(self.home)}
        everything = {**base, "XDG_RUNTIME_DIR": self.runtime, **variables}
        pairs = [f"{k}={v}" for k, v in everything.items()]
        return ["runuser", "-u", USER, "--", "env", "-i", *pairs, *argv]

    def cage(self, *args: str) -> list[str]:
        variables = {
            "PYTHONPATH": str(self.src),
            "CAGE_DATA_DIR": str(self.base / "data"),
            "CAGE_CONFIG_DIR": str(self.base / "config"),
            "CAGE_CLAUDE_CONFIG": "off",
            "CAGE_ROOTLESS_WITHOUT_LIMITS": "true",
            "CAGE_MAX_SESSIONS": "10000",
        }
        return self._as_user(variables, self.python, "-m", "claude_cage", *args)

    def podman(self, *args: str) -> list[str]:
        return self._as_user({}, "podman", *args)

    def owner(self) -> str:
        import hashlib

        return hashlib.sha256(str((self.base / "data").resolve()).encode()).hexdigest()[:12]

    def remove(self) -> None:
        """Every container and volume of the run's data directory, then the directory."""
        label = f"label=cage.owner={self.owner()}"
        for kind in ("ps", "volume"):
            listing = ["ps", "-a", "-q"] if kind == "ps" else ["volume", "ls", "-q"]
            found = subprocess.run(
                self.podman(*listing, "--filter", label), capture_output=True, text=True, cwd="/"
            ).stdout.split()
            if found:
                remove = ["rm", "-f"] if kind == "ps" else ["volume", "rm", "-f"]
                subprocess.run(self.podman(*remove, *found), capture_output=True, cwd="/")
        shutil.rmtree(self.base, ignore_errors=True)


def run(ctx) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    found = run_command(
        [str(ROOT / "scripts/ensure-podman"), "--rootless", USER, IMAGE, COMPANION], timeout=1800
    )
    url, python = found.split()
    user = AsUser(url, python, ctx.ws.run_id)
    counter = iter(range(100_000))
    os.chdir("/")  # runuser keeps the working directory, which the user may not reach

    def start_one() -> float:
        name = f"rl{ctx.ws.run_id}x{next(counter)}"
        argv = user.cage("start", "--detach", "--name", name, "--network", "none")
        took = timed([*argv, "--no-persist", "--engine", url])
        run_command(user.cage("destroy", "--force", name))
        return took

    def bare_one() -> float:
        name = f"rl{ctx.ws.run_id}bare{next(counter)}"
        argv = user.podman("run", "-d", "--name", name, "--label", f"cage.owner={user.owner()}")
        try:
            return timed([*argv, *LIMITS, "--entrypoint", "sleep", IMAGE, "infinity"])
        finally:  # also when it failed: a created container stays until removed
            subprocess.run(user.podman("rm", "-f", "-t", "0", name), capture_output=True)

    try:
        starts = paired({"start, rootless": start_one, "podman run -d": bare_one}, ctx.reps)
        for label, values in starts.items():
            result.rows.append(Row(NAME, label, values))
        result.ratios.append(
            Ratio(
                NAME,
                "start, rootless",
                "podman run -d",
                paired_ratios(starts["start, rootless"], starts["podman run -d"]),
            )
        )

        session = f"rl{ctx.ws.run_id}{uuid.uuid4().hex[:4]}"
        start = user.cage("start", "--detach", "--name", session, "--network", "none")
        run_command([*start, "--no-persist", "--engine", url])
        listing = user.podman("ps", "-a", "--filter", f"label=cage.owner={user.owner()}")
        samples = paired(
            {
                "list --engine, rootless": lambda: timed(user.cage("list", "--engine", url)),
                "podman ps -a (same filter)": lambda: timed(listing),
                "exec true, rootless": lambda: timed(user.cage("exec", session, "--", "true")),
                "podman exec true": lambda: timed(user.podman("exec", f"cage-{session}", "true")),
            },
            ctx.reps,
        )
        for label_, values in samples.items():
            result.rows.append(Row(NAME, label_, values))
        for candidate, floor in (
            ("list --engine, rootless", "podman ps -a (same filter)"),
            ("exec true, rootless", "podman exec true"),
        ):
            result.ratios.append(
                Ratio(NAME, candidate, floor, paired_ratios(samples[candidate], samples[floor]))
            )
    finally:
        with contextlib.suppress(BenchError, OSError):
            user.remove()
    return result
