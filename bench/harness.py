"""Timing and statistics: paired, rotated repetitions; medians with min and max.

Every measurement in a group runs once per repetition, in an order rotated by one each
repetition, so a machine that slows down or speeds up during the run weighs on the
candidate and on its floor alike. Ratios are taken within a repetition (paired), then
summarised by their median.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field


class BenchError(RuntimeError):
    """A command the benchmark relies on failed."""


def run(argv: Sequence[str], env: Mapping[str, str] | None = None, **kwargs) -> str:
    """Run a command to completion; its stdout, or BenchError with its stderr."""
    done = subprocess.run(list(argv), env=env, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(argv[:4])} ... exited {done.returncode}: {done.stderr[-400:]}")
    return done.stdout


def timed(argv: Sequence[str], env: Mapping[str, str] | None = None) -> float:
    """Wall-clock seconds of one command, from spawn to exit (output captured)."""
    start = time.perf_counter()
    run(argv, env)
    return time.perf_counter() - start


def paired(
    runs: Mapping[str, Callable[[], float]], reps: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Run each measurement `reps` times, rotating the order every repetition."""
    labels = list(runs)
    for _ in range(warmup):
        for label in labels:
            runs[label]()
    samples: dict[str, list[float]] = {label: [] for label in labels}
    for rep in range(reps):
        shift = rep % len(labels)
        for label in labels[shift:] + labels[:shift]:
            samples[label].append(runs[label]())
    return samples


@dataclass
class Row:
    """One measured quantity: its samples, shown as median [min-max] in `unit`."""

    section: str
    label: str
    samples: list[float]
    unit: str = "ms"
    scale: float = 1000.0  # samples are in seconds (or bytes, req/s...): shown * scale

    @property
    def median(self) -> float:
        return statistics.median(self.samples) * self.scale

    @property
    def low(self) -> float:
        return min(self.samples) * self.scale

    @property
    def high(self) -> float:
        return max(self.samples) * self.scale


@dataclass
class Ratio:
    """candidate / floor, per repetition when both were measured in the same ones."""

    section: str
    candidate: str
    floor: str
    values: list[float]
    target: float | None = None  # met when the median is at most this
    paired: bool = True

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.median <= self.target


def paired_ratios(candidate: list[float], floor: list[float]) -> list[float]:
    return [c / f for c, f in zip(candidate, floor, strict=True)]


@dataclass
class SectionResult:
    name: str
    title: str
    rows: list[Row] = field(default_factory=list)
    ratios: list[Ratio] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    markdown: str = ""  # extra detail for docs/benchmarks.md only
