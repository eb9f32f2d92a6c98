"""Engine errors keep their HTTP status, with a class where a caller needs one, so no
caller has to match a message text."""

from __future__ import annotations

import json

import pytest

from claude_cage import errors
from claude_cage.engine.transport import api_error as _api_error


def answer(message: str) -> bytes:
    return json.dumps({"message": message}).encode()


@pytest.mark.parametrize(
    ("status", "message", "kind", "exit_code"),
    [
        (400, "invalid memory", errors.EngineRefusedSetting, errors.EXIT_BAD_INPUT),
        (404, "No such container: cage-x", errors.EngineNotFound, errors.EXIT_NOT_FOUND),
        (404, "No such image: claude-cage-cli:x", errors.ImageMissing, errors.EXIT_FAILED),
        (409, "removal already in progress", errors.EngineConflict, errors.EXIT_FAILED),
        (500, "Bind for 127.0.0.1:6080 failed: port is already allocated",
         errors.PortAllocated, errors.EXIT_FAILED),
        (500, "cannot listen on the TCP port: listen tcp4 127.0.0.1:6081: bind: address "
         "already in use", errors.PortAllocated, errors.EXIT_FAILED),  # Podman's words
        (500, "something else", errors.EngineError, errors.EXIT_FAILED),
    ],
)  # fmt: skip
def test_status_and_class(status: int, message: str, kind: type, exit_code: int) -> None:
    error = _api_error(status, answer(message))
    assert type(error) is kind
    assert isinstance(error, errors.EngineError) and error.status == status
    assert error.exit_code == exit_code


def test_a_refused_setting_is_bad_input_with_the_hint() -> None:
    error = _api_error(400, answer("invalid memory"))
    assert isinstance(error, errors.BadInput)
    assert error.message == "the engine refused a setting: invalid memory"
    assert error.hint is not None and "--memory" in error.hint


def test_an_answer_that_is_not_json() -> None:
    error = _api_error(502, b"Bad Gateway")
    assert error.status == 502 and "Bad Gateway" in error.message


def test_podmans_500_for_a_container_removed_as_it_answered_is_not_found() -> None:
    # What Podman 4.3 answers an inspect of an auto-removed container in that instant.
    data = json.dumps(
        {
            "cause": "no such container",
            "message": "container 2923 does not exist in database: no such container",
            "response": 500,
        }
    ).encode()
    error = _api_error(500, data)
    assert type(error) is errors.EngineNotFound and error.status == 404
    still_500 = _api_error(500, json.dumps({"cause": "disk full", "message": "x"}).encode())
    assert type(still_500) is errors.EngineError and still_500.status == 500


def test_podmans_500_for_a_host_file_it_cannot_open_stays_a_refusal() -> None:
    """What Podman 4.3 answers a create whose seccomp profile it cannot open (the same
    cause for a bind mount's missing source at start): read as not found, a create's
    answer was None, and `start` ended in a TypeError traceback."""
    data = json.dumps(
        {
            "cause": "no such file or directory",
            "message": "container create: opening seccomp profile failed: open "
            "/x/seccomp/ab.json: no such file or directory",
            "response": 500,
        }
    ).encode()
    error = _api_error(500, data)
    assert type(error) is errors.EngineError and error.status == 500
    assert "opening seccomp profile failed" in error.message
