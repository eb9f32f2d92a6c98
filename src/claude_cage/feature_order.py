"""The order a dev container's features are installed in: the spec's round-based sort
(devcontainers/spec, docs/specs/feature-dependencies.md).

A feature waits for every feature it names in `dependsOn` (hard: they were added to the
set by devcontainer.py) and for those it names in `installsAfter` that are in the set
(soft: an absent one is ignored). In each round, every feature whose wait is over is
ready; of those, the ones with the highest priority (`overrideFeatureInstallOrder`:
the first named gets the highest) are installed, sorted by their resource name (the
reference without its tag or digest), then as written, then by their options, so the
order never depends on the order of a JSON object. A round with nothing ready is a
cycle, refused in one line that names it. Pure.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass

from claude_cage.errors import BadInput

HINT = "remove one of those dependsOn or installsAfter entries, or one of the features"


@dataclass(frozen=True)
class Node:
    name: str  # the reference as written
    resource: str  # what installsAfter and overrideFeatureInstallOrder name (resource())
    options: str  # canonical JSON of its options: the last tie-breaker
    depends: frozenset[int] = frozenset()  # positions of its dependsOn features
    installs_after: frozenset[str] = frozenset()  # resources
    priority: int = 0


def resource(ident: str) -> str:
    """A feature reference without its tag or digest (`ghcr.io/o/f/node:1` ->
    `ghcr.io/o/f/node`; a registry's port is kept); a local one normalized (`./a/`
    -> `./a`)."""
    if ident.startswith(("./", "../")):
        normal = posixpath.normpath(ident)
        return normal if normal.startswith("../") else f"./{normal}"
    name = ident.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    last = last.split(":", 1)[0]
    return f"{head}/{last}" if head else last


def priorities(names: Sequence[str]) -> dict[str, int]:
    """overrideFeatureInstallOrder's resources, each with its round priority (n - i)."""
    found: dict[str, int] = {}
    for i, name in enumerate(names):
        found.setdefault(resource(name), len(names) - i)
    return found


def order(nodes: Sequence[Node]) -> list[int]:
    """The positions of `nodes` in install order."""
    present: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        present.setdefault(node.resource, []).append(i)
    waits = [
        set(node.depends) | {j for r in node.installs_after for j in present.get(r, []) if j != i}
        for i, node in enumerate(nodes)
    ]
    done: list[int] = []
    placed: set[int] = set()
    left = set(range(len(nodes)))
    while left:
        ready = [i for i in left if waits[i] <= placed]
        if not ready:
            cycle = _cycle(nodes, waits, left)
            raise BadInput(
                f"devcontainer.json features form a cycle: {cycle} (each installs after the next)",
                HINT,
            )
        top = max(nodes[i].priority for i in ready)
        chosen = sorted(
            (i for i in ready if nodes[i].priority == top),
            key=lambda i: (nodes[i].resource, nodes[i].name, nodes[i].options),
        )
        done += chosen
        placed.update(chosen)
        left.difference_update(chosen)
    return done


def _cycle(nodes: Sequence[Node], waits: Sequence[set[int]], left: set[int]) -> str:
    """One cycle among the features left, as `a -> b -> a` (each waits for the next)."""
    path: list[int] = []
    at = min(left)
    while at not in path:
        path.append(at)
        at = min(waits[at] & left)  # a feature left waits for another left: else it is ready
    loop = [*path[path.index(at) :], at]
    return " -> ".join(nodes[i].name for i in loop)
