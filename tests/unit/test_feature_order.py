"""The features' install order: dependsOn (pulled in, installed first), installsAfter
(among the features present), overrideFeatureInstallOrder, and the refusals (a cycle, a
missing dependency, too many features), each in one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from claude_cage import devcontainer
from claude_cage.errors import BadInput, CageError
from claude_cage.feature_order import Node, order, resource
from claude_cage.ociclient import FeatureNotFound

INSIDE = "/workspace/proj"


def write_feature(folder: Path, **meta: Any) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "install.sh").write_text("#!/bin/sh\n")
    (folder / "devcontainer-feature.json").write_text(json.dumps({"id": folder.name, **meta}))


def project(tmp_path: Path, features: dict[str, Any], **config: Any) -> Path:
    root = tmp_path / "proj"
    (root / ".devcontainer").mkdir(parents=True, exist_ok=True)
    text = json.dumps({"image": "x", "features": features, **config})
    (root / ".devcontainer" / "devcontainer.json").write_text(text)
    return root


def ids(root: Path, fetch: devcontainer.Fetch | None = None) -> list[str]:
    file = root / ".devcontainer" / "devcontainer.json"
    found = devcontainer.read(file, root, INSIDE, {}, fetch)
    return [f.id for f in found.features]


def test_depends_on_is_pulled_in_and_installed_first_recursively(tmp_path: Path) -> None:
    root = project(tmp_path, {"./app": {}, "./zz-tool": {}})
    dc = root / ".devcontainer"
    write_feature(dc / "app", dependsOn={"./runtime": {"version": "2"}})
    write_feature(dc / "runtime", dependsOn={"./base": {}})
    write_feature(dc / "base")
    write_feature(dc / "zz-tool")
    # in rounds: each feature as soon as what it waits for is in; a round by name
    assert ids(root) == ["./base", "./zz-tool", "./runtime", "./app"]
    file = dc / "devcontainer.json"
    runtime = devcontainer.read(file, root, INSIDE, {}).features[2]
    assert runtime.options == {"VERSION": "2"}  # the options dependsOn gives


def test_the_order_does_not_follow_the_json_object(tmp_path: Path) -> None:
    root = project(tmp_path, {"./c": {}, "./a": {}, "./b": {}})
    for name in "abc":
        write_feature(root / ".devcontainer" / name)
    assert ids(root) == ["./a", "./b", "./c"]


def test_installs_after_orders_only_the_features_present(tmp_path: Path) -> None:
    root = project(tmp_path, {"./a": {}, "./b": {}, "./c": {}})
    dc = root / ".devcontainer"
    write_feature(dc / "a", installsAfter=["./c", "ghcr.io/o/f/absent"])
    write_feature(dc / "b")
    write_feature(dc / "c", installsAfter=["./b"])
    assert ids(root) == ["./b", "./c", "./a"]  # absent: ignored, never pulled in


def test_a_feature_named_twice_with_the_same_options_is_installed_once(tmp_path: Path) -> None:
    root = project(tmp_path, {"./a": {}, "./b": {}, "./lib": {}})
    dc = root / ".devcontainer"
    write_feature(dc / "a", dependsOn={"./lib": {}})
    write_feature(dc / "b", dependsOn={"./lib/": {}, "./lib/../lib": {"flag": "x"}})
    write_feature(dc / "lib")
    names = ids(root)
    assert names[:2] == ["./lib", "./lib/../lib"] and sorted(names[2:]) == ["./a", "./b"]


def test_override_feature_install_order_pulls_forward_but_never_past_a_dependency(
    tmp_path: Path,
) -> None:
    root = project(
        tmp_path,
        {"./a": {}, "./b": {}, "./c": {}},
        overrideFeatureInstallOrder=["./c", "./b"],
    )
    dc = root / ".devcontainer"
    write_feature(dc / "a")
    write_feature(dc / "b")
    write_feature(dc / "c", dependsOn={"./a": {}})
    assert ids(root) == ["./b", "./a", "./c"]  # c first if it could be; b before a


@pytest.mark.parametrize("key", ["dependsOn", "installsAfter"])
def test_a_cycle_is_refused_in_one_line_naming_it(tmp_path: Path, key: str) -> None:
    root = project(tmp_path, {"./a": {}, "./b": {}, "./c": {}})
    dc = root / ".devcontainer"
    cyclic = (lambda n: {f"./{n}": {}}) if key == "dependsOn" else (lambda n: [f"./{n}"])
    write_feature(dc / "a", **{key: cyclic("b")})
    write_feature(dc / "b", **{key: cyclic("c")})
    write_feature(dc / "c", **{key: cyclic("a")})
    with pytest.raises(BadInput) as refused:
        ids(root)
    assert refused.value.message == (
        "devcontainer.json features form a cycle: ./a -> ./b -> ./c -> ./a "
        "(each installs after the next)"
    )
    assert "\n" not in refused.value.message and refused.value.hint


def test_a_feature_depending_on_itself_is_a_cycle(tmp_path: Path) -> None:
    root = project(tmp_path, {"./a": {}})
    write_feature(root / ".devcontainer" / "a", dependsOn={"./a": {}}, installsAfter=["./a"])
    with pytest.raises(BadInput, match=r"cycle: \./a -> \./a "):
        ids(root)


def test_a_missing_dependency_stops_the_start_in_one_line(tmp_path: Path) -> None:
    root = project(tmp_path, {"./a": {}})
    write_feature(root / ".devcontainer" / "a", dependsOn={"./nowhere": {}})
    with pytest.raises(BadInput) as refused:
        ids(root)
    assert refused.value.message.startswith("feature './a' dependsOn './nowhere': ")
    assert "\n" not in refused.value.message

    remote = "ghcr.io/o/f/lib:1"
    write_feature(root / ".devcontainer" / "a", dependsOn={remote: {}})
    with pytest.raises(BadInput, match=r"^feature './a' dependsOn 'ghcr.io/o/f/lib:1': .*registry"):
        ids(root)  # no registry to pull it from

    def not_there(ident: str) -> Path:
        raise FeatureNotFound(f"{ident}: the registry has no such feature (404)", "check it")

    with pytest.raises(CageError) as gone:
        ids(root, not_there)
    assert isinstance(gone.value, FeatureNotFound) and gone.value.hint == "check it"
    assert str(gone.value) == (
        "feature './a' dependsOn 'ghcr.io/o/f/lib:1': "
        "ghcr.io/o/f/lib:1: the registry has no such feature (404)"
    )


def test_a_remote_dependency_is_pulled_once_like_any_feature(tmp_path: Path) -> None:
    root = project(tmp_path, {"./a": {}, "./b": {}})
    cache = tmp_path / "cache"
    lib = "ghcr.io/o/f/lib:1"
    write_feature(root / ".devcontainer" / "a", dependsOn={lib: {}})
    write_feature(root / ".devcontainer" / "b", dependsOn={lib: {}}, installsAfter=["./a"])
    write_feature(cache / "lib")
    asked: list[str] = []

    def fetch(ident: str) -> Path:
        asked.append(ident)
        return cache / "lib"

    assert ids(root, fetch) == [lib, "./a", "./b"]
    assert asked == [lib]


def test_a_registry_cannot_make_a_start_pull_for_ever(tmp_path: Path) -> None:
    """Each pulled feature depends on a new one: refused past MAX_FEATURES."""
    root = project(tmp_path, {"ghcr.io/o/f/n0:1": {}})
    asked: list[str] = []

    def fetch(ident: str) -> Path:
        asked.append(ident)
        n = len(asked)
        folder = tmp_path / "cache" / f"n{n}"
        write_feature(folder, dependsOn={f"ghcr.io/o/f/n{n}:1": {}})
        return folder

    with pytest.raises(BadInput, match="more than 64 features"):
        ids(root, fetch)
    assert len(asked) == devcontainer.MAX_FEATURES + 1


def test_one_layer_under_many_tags_cannot_make_a_start_pull_for_ever(tmp_path: Path) -> None:
    """Thousands of tags of one layer are one feature but as many fetches: refused past
    MAX_REFERENCES references, before the rest are asked for."""
    root = project(tmp_path, {"ghcr.io/o/f/hub:1": {}})
    hub, leaf = tmp_path / "cache" / "hub", tmp_path / "cache" / "leaf"
    write_feature(hub, dependsOn={f"ghcr.io/o/f/x:{i}": {} for i in range(3000)})
    write_feature(leaf)
    asked: list[str] = []

    def fetch(ident: str) -> Path:
        asked.append(ident)
        return hub if ident.endswith("hub:1") else leaf

    with pytest.raises(BadInput, match="more than 256 references"):
        ids(root, fetch)
    assert len(asked) == devcontainer.MAX_REFERENCES


def test_a_feature_nested_too_deeply_is_one_line(tmp_path: Path) -> None:
    root = project(tmp_path, {"./deep": {}})
    folder = root / ".devcontainer" / "deep"
    folder.mkdir(parents=True)
    (folder / "devcontainer-feature.json").write_text("[" * 100_000 + "]" * 100_000)
    (folder / "install.sh").write_text("#!/bin/sh\n")
    with pytest.raises(BadInput, match="nested too deeply"):
        ids(root, None)


def test_damaged_ordering_keys_are_refused(tmp_path: Path) -> None:
    root = project(tmp_path, {"./a": {}})
    write_feature(root / ".devcontainer" / "a", installsAfter="./b")
    with pytest.raises(BadInput, match="installsAfter must be a list"):
        ids(root)
    write_feature(root / ".devcontainer" / "a", dependsOn=["./b"])
    with pytest.raises(BadInput, match="dependsOn must be an object"):
        ids(root)


def test_resource_drops_the_tag_and_digest_only() -> None:
    assert (
        resource("ghcr.io/devcontainers/features/node:1") == "ghcr.io/devcontainers/features/node"
    )
    assert resource("localhost:5000/o/f/x@sha256:" + "a" * 64) == "localhost:5000/o/f/x"
    assert resource("localhost:5000/o/f/x") == "localhost:5000/o/f/x"
    assert resource("./a/") == "./a" and resource("./a/../b") == "./b"
    assert resource("../shared/x") == "../shared/x"


def test_order_alone() -> None:
    nodes = [
        Node("b", "b", "{}"),
        Node("a", "a", "{}", depends=frozenset({0})),
        Node("c", "c", "{}", installs_after=frozenset({"a", "zz"})),
        Node("a2", "a", '{"X": "1"}', depends=frozenset({0})),
    ]
    assert order(nodes) == [0, 1, 3, 2]
    assert order([]) == []
