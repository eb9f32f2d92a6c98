"""An engine named by a Podman connection (`podman system connection add`), as Podman
4.3 keeps them in containers.conf and 4.5+ in podman-connections.json; a Docker context
of the same name comes first."""

from __future__ import annotations

from pathlib import Path

import pytest

from claude_cage.engine import endpoints
from claude_cage.errors import BadInput

# What `podman system connection add` (4.3.1) wrote, connections of both kinds.
CONF = """[containers]

[engine]
  active_service = "mine"
  [engine.service_destinations]
    [engine.service_destinations.far]
      uri = "ssh://me@192.0.2.250:2222/run/user/1000/podman/podman.sock"
      identity = "/home/me/.ssh/id_ed25519"
    [engine.service_destinations.mine]
      uri = "unix:///run/user/1001/podman/podman.sock"
"""


@pytest.fixture
def conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.delenv("CONTAINERS_CONF", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("PODMAN_CONNECTIONS_CONF", raising=False)
    monkeypatch.setattr(endpoints.os, "geteuid", lambda: 1000)  # a user's own files
    path = tmp_path / "config" / "containers" / "containers.conf"
    path.parent.mkdir(parents=True)
    path.write_text(CONF)
    return path


def test_a_connection_name_is_its_socket(conf: Path) -> None:
    found = endpoints.resolve("mine")
    assert found.host == "unix:///run/user/1001/podman/podman.sock" and found.is_local
    assert found.podman_connection
    assert found.unreachable_hint == "check it with 'podman --connection mine info'"


def test_containers_conf_names_another_file(
    conf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other.conf"
    other.write_text(CONF.replace("/run/user/1001/", "/srv/"))
    monkeypatch.setenv("CONTAINERS_CONF", str(other))
    assert endpoints.resolve("mine").host == "unix:///srv/podman/podman.sock"


def test_an_ssh_connection_is_refused_with_its_reason(conf: Path) -> None:
    with pytest.raises(BadInput, match="over ssh") as refused:
        endpoints.resolve("far")
    hint = refused.value.hint or ""
    assert "dial-stdio" in refused.value.message and " -L $XDG_RUNTIME_DIR/" in hint
    assert "ExitOnForwardFailure=yes" in hint  # a squatted /tmp path is never suggested


def test_an_unknown_name_says_where_it_looked(conf: Path) -> None:
    with pytest.raises(BadInput, match="no Docker context or Podman connection named 'nope'"):
        endpoints.resolve("nope")


@pytest.mark.parametrize(
    "text",
    ["[engine\n", "[engine.service_destinations.mine]\nidentity = 'x'\n", "engine = 3\n"],
)
def test_a_damaged_file_is_one_line(conf: Path, text: str) -> None:
    conf.write_text(text)
    with pytest.raises(BadInput, match=r"connections file .* is damaged"):
        endpoints.resolve("mine")


def test_a_docker_context_of_the_same_name_comes_first(conf: Path, tmp_path: Path) -> None:
    import hashlib
    import json

    meta = tmp_path / "docker" / "contexts" / "meta" / hashlib.sha256(b"mine").hexdigest()
    meta.mkdir(parents=True)
    docker = {"Endpoints": {"docker": {"Host": "unix:///var/run/docker.sock"}}}
    (meta / "meta.json").write_text(json.dumps(docker))
    assert endpoints.resolve("mine").host == "unix:///var/run/docker.sock"


def test_a_connections_file_nested_too_deeply_is_one_line(conf: Path) -> None:
    conf.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(BadInput, match="damaged"):
        endpoints.resolve("mine")


# What `podman system connection add` writes from Podman 4.5 on (containers/common's
# ConnectionsFile, encoded as JSON).
CONNECTIONS = {
    "Connection": {
        "Default": "mine",
        "Connections": {
            "mine": {"URI": "unix:///run/user/1001/podman/new.sock", "IsMachine": False},
            "json-only": {"URI": "unix:///srv/json/podman.sock"},
        },
    },
    "Farm": {},
}


def test_the_connections_json_of_podman_4_5_comes_first(conf: Path) -> None:
    import json

    (conf.parent / "podman-connections.json").write_text(json.dumps(CONNECTIONS))
    assert endpoints.resolve("mine").host == "unix:///run/user/1001/podman/new.sock"
    assert endpoints.resolve("json-only").host == "unix:///srv/json/podman.sock"
    with pytest.raises(BadInput, match="over ssh"):  # still found in containers.conf
        endpoints.resolve("far")


def test_podman_connections_conf_names_the_json_file(
    conf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    other = tmp_path / "elsewhere.json"
    other.write_text(json.dumps(CONNECTIONS).replace("/srv/json/", "/srv/other/"))
    monkeypatch.setenv("PODMAN_CONNECTIONS_CONF", str(other))
    assert endpoints.resolve("json-only").host == "unix:///srv/other/podman.sock"


def test_roots_connections_json_is_in_etc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PODMAN_CONNECTIONS_CONF", raising=False)
    monkeypatch.setattr(endpoints.os, "geteuid", lambda: 0)
    assert endpoints.connections_json() == Path("/etc/containers/podman-connections.json")


@pytest.mark.parametrize(
    "text",
    ["{", '{"Connection": 3}', '{"Connection": {"Connections": {"mine": {}}}}', "[1]"],
)
def test_a_damaged_connections_json_is_one_line(conf: Path, text: str) -> None:
    (conf.parent / "podman-connections.json").write_text(text)
    with pytest.raises(BadInput, match=r"podman-connections.json is damaged"):
        endpoints.resolve("mine")
