"""Engine names: Docker contexts, URLs and the local default."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from claude_cage.engine import endpoints
from claude_cage.errors import BadInput


def make_context(config: Path, name: str, host: str, skip_verify: bool = False) -> Path:
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = config / "contexts" / "meta" / digest
    meta.mkdir(parents=True)
    endpoint = {"Host": host, "SkipTLSVerify": skip_verify}
    (meta / "meta.json").write_text(
        json.dumps({"Name": name, "Metadata": {}, "Endpoints": {"docker": endpoint}})
    )
    return config / "contexts" / "tls" / digest / "docker"


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    return tmp_path


def test_the_local_engine_is_docker_host_or_the_default_socket(
    docker_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert endpoints.resolve(None).host == "unix:///var/run/docker.sock"
    assert endpoints.resolve("").is_local and endpoints.resolve("").label == "local"
    monkeypatch.setenv("DOCKER_HOST", "ssh://me@far")
    assert endpoints.resolve("").host == "ssh://me@far"
    assert not endpoints.resolve("").is_local
    assert endpoints.resolve("default").host == "ssh://me@far"


def test_a_context_is_read_from_dockers_own_store(docker_config: Path) -> None:
    tls = make_context(docker_config, "big-box", "ssh://root@10.0.0.5:2222")
    found = endpoints.resolve("big-box")
    assert (found.name, found.host, found.scheme) == ("big-box", "ssh://root@10.0.0.5:2222", "ssh")
    assert found.tls_dir is None and not found.is_local
    tls.mkdir(parents=True)
    make_context(docker_config, "secure", "tcp://box:2376", skip_verify=True)
    assert endpoints.resolve("secure").tls_verify is False


@pytest.mark.parametrize("url", ["ssh://u@h", "tcp://h:2376", "unix:///run/x.sock"])
def test_urls_are_engines(url: str, docker_config: Path) -> None:
    assert endpoints.resolve(url).host == url


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("nope", "no Docker context or Podman connection named 'nope'"),
        ("http://h", "not an engine address"),
        ("ssh://", "names no host"),
        ("unix://", "names no socket"),
    ],
)
def test_bad_engine_names_say_what_to_do(name: str, words: str, docker_config: Path) -> None:
    with pytest.raises(BadInput) as caught:
        endpoints.resolve(name)
    assert words in caught.value.message
    assert caught.value.hint


def test_a_damaged_context_is_named(docker_config: Path) -> None:
    make_context(docker_config, "broken", "ssh://h")
    digest = hashlib.sha256(b"broken").hexdigest()
    (docker_config / "contexts" / "meta" / digest / "meta.json").write_bytes(b"\xff{")
    with pytest.raises(BadInput) as caught:
        endpoints.resolve("broken")
    assert "damaged" in caught.value.message and "docker context rm broken" in caught.value.hint


@pytest.mark.parametrize(
    "url", ["tcp://10.1.2.3:2375", "tcp://box.example:2376", "tcp://[2001:db8::1]:2375"]
)
def test_a_tcp_engine_on_another_host_without_tls_is_refused_before_any_connection(
    url: str,
) -> None:
    """Everything sent to it (a session's key on an exec's stdin) would cross the network
    in clear: refused in one line, with the ways that are safe."""
    from claude_cage.engine import dial

    endpoint = endpoints.resolve(url)
    with pytest.raises(BadInput, match="has no TLS") as refused:
        dial.connect(endpoint, 1)
    assert "ssh://" in (refused.value.hint or "")
    with pytest.raises(BadInput, match="has no TLS"):
        endpoint.require_tls()


@pytest.mark.parametrize("url", ["tcp://127.0.0.1:2375", "tcp://localhost:2375", "tcp://[::1]:1"])
def test_a_tcp_engine_on_loopback_needs_no_tls(url: str) -> None:
    endpoints.resolve(url).require_tls()  # a port forwarded by hand


def test_a_tcp_engine_with_tls_files_is_taken(tmp_path: Path) -> None:
    endpoints.Endpoint("box", "tcp://box.example:2376", str(tmp_path)).require_tls()
