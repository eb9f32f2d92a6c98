"""What every section gets: the workspace, the repetitions, and the commands it runs."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import floor_api
from harness import run
from workspace import DOCKER, Workspace, claude_cage_executable

BENCH_DIR = Path(__file__).resolve().parent


@dataclass
class Context:
    ws: Workspace
    reps: int
    sessions: list[int]
    baseline: str | None = None  # a revision whose src/ some sections run beside this one
    cage: str = field(default_factory=claude_cage_executable)
    python: str = sys.executable
    docker: str = DOCKER
    bench_dir: Path = BENCH_DIR

    def start(self, env: dict[str, str], name: str, *flags: str) -> None:
        """Start a detached session (untimed setup)."""
        run([self.cage, "start", "--detach", "--name", name, *flags], env)

    def destroy(self, env: dict[str, str], name: str) -> None:
        run([self.cage, "destroy", "--force", name], env)

    def config(self, env: dict[str, str]) -> dict[str, Any]:
        return json.loads(run([self.cage, "config", "show", "--json"], env))["config"]

    @staticmethod
    def inspect(name: str) -> dict[str, Any] | None:
        return floor_api.get(f"/containers/{name}/json")

    @staticmethod
    def image_exists(image: str) -> bool:
        return floor_api.get(f"/images/{image}/json") is not None
