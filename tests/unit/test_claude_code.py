"""Claude Code releases: resolving `latest` against a registry, comparing releases, and
doctor's advice, against a local HTTP server standing in for the npm registry."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest

from claude_cage import claude_code
from claude_cage import config as config_mod
from claude_cage.errors import BadInput
from claude_cage.operations.doctor import OK, WARN, check_claude_code
from tests.unit.fake_engine import UnusedEngine


class Registry(http.server.BaseHTTPRequestHandler):
    latest = "2.1.332"
    paths: ClassVar[list[str]] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        Registry.paths.append(self.path)
        body = json.dumps({"name": claude_code.PACKAGE, "version": Registry.latest}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[Registry]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("NPM_CONFIG_REGISTRY", f"http://127.0.0.1:{server.server_port}/")
    Registry.latest, Registry.paths = "2.1.332", []
    yield Registry
    server.shutdown()


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry address where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("NPM_CONFIG_REGISTRY", f"http://127.0.0.1:{port}")


def test_latest_is_asked_of_the_registry(registry: type[Registry]) -> None:
    assert claude_code.resolve("latest") == "2.1.332"
    assert registry.paths == ["/@anthropic-ai/claude-code/latest"]
    assert claude_code.resolve("2.1.300") == "2.1.300"  # a release needs no question
    assert len(registry.paths) == 1


def test_a_registry_answer_that_is_not_a_release_is_ignored(registry: type[Registry]) -> None:
    registry.latest = "2.1.332; rm -rf /"
    assert claude_code.latest_release() is None


@pytest.mark.usefixtures("offline")
def test_offline_latest_is_a_bad_input_with_a_pin_hint() -> None:
    assert claude_code.latest_release() is None
    with pytest.raises(BadInput) as error:
        claude_code.resolve("latest")
    assert "--claude-code-version" in error.value.hint


def test_not_a_release_is_refused() -> None:
    with pytest.raises(BadInput):
        claude_code.resolve("2.1")
    with pytest.raises(ValueError):
        config_mod.VALIDATORS["claude_code_version"]("next; curl x")
    assert config_mod.VALIDATORS["claude_code_version"]("latest") == "latest"


def test_releases_compare_as_numbers() -> None:
    assert claude_code.older("2.1.99", "2.1.100")
    assert not claude_code.older("2.1.332", "2.1.332")
    assert not claude_code.older("3.0.0", "2.9.999")


class Images(UnusedEngine):
    """Just enough of the engine for the check: one image's labels."""

    def __init__(self, labels: dict[str, str] | None) -> None:
        self.labels = labels

    def image_labels(self, image: str) -> dict[str, str] | None:
        return self.labels


def cfg(**values: str) -> config_mod.Config:
    return config_mod.Config({**config_mod.DEFAULTS, **values}, {}, [])


def check(labels: dict[str, str] | None, **values: str):
    return check_claude_code(Images(labels), cfg(**values))


def test_doctor_says_when_a_newer_release_is_out(registry: type[Registry]) -> None:
    [result] = check({claude_code.LABEL: "2.1.330"})
    assert result.status == WARN
    assert "2.1.330" in result.detail and "2.1.332 is out" in result.detail
    assert result.fix == "claude-cage build cli"
    [pinned] = check({claude_code.LABEL: "2.1.330"}, claude_code_version="2.1.330")
    assert pinned.fix == "claude-cage build cli --claude-code-version latest"
    [current] = check({claude_code.LABEL: "2.1.332"})
    assert current.status == OK and "newest" in current.detail


@pytest.mark.usefixtures("offline")
def test_doctor_does_not_fail_offline() -> None:
    [result] = check({claude_code.LABEL: "2.1.330"})
    assert result.status == OK and "not compared" in result.detail


def test_doctor_asks_for_a_rebuild_when_the_image_records_no_release() -> None:
    [result] = check({"cage.version": "0.1.0"})
    assert result.status == WARN and result.fix == "claude-cage build cli"
    assert check(None) == []  # no image: the image check already says so
