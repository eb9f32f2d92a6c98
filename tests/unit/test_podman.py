"""Podman's differences, written in the engine layer: a create request as its
compatible API needs it, and its inspect answers in Docker's words."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from claude_cage.engine import podman
from claude_cage.engine.endpoints import Endpoint
from claude_cage.errors import BadInput

LOCAL = Endpoint("unix:///run/podman/podman.sock", "unix:///run/podman/podman.sock")
PROFILE = json.dumps({"defaultAction": "SCMP_ACT_ERRNO"})


def body(**host: object) -> dict:
    return {"User": "1000:1000", "HostConfig": {"SecurityOpt": [], "Tmpfs": {}, **host}}


def test_the_seccomp_profile_becomes_a_file_the_engine_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAGE_DATA_DIR", str(tmp_path))
    sent = podman.create_body(
        body(SecurityOpt=["no-new-privileges:true", f"seccomp={PROFILE}"]), LOCAL
    )
    nnp, seccomp = sent["HostConfig"]["SecurityOpt"]
    assert nnp == "no-new-privileges:true"
    path = Path(seccomp.removeprefix("seccomp="))
    assert path.read_text() == PROFILE and path.stat().st_mode & 0o777 == 0o644
    again = podman.create_body(body(SecurityOpt=[f"seccomp={PROFILE}"]), LOCAL)
    assert again["HostConfig"]["SecurityOpt"] == [seccomp]  # one file per profile


def test_a_remote_podman_cannot_take_the_profile() -> None:
    far = Endpoint("ssh://me@far", "ssh://me@far")
    with pytest.raises(BadInput, match="Podman on another host"):
        podman.create_body(body(SecurityOpt=[f"seccomp={PROFILE}"]), far)


def test_a_tmpfs_owned_by_the_user_is_podmans_U_and_never_copied_up() -> None:
    sent = podman.create_body(
        body(Tmpfs={"/run": "rw,nosuid,uid=1000,gid=1000", "/tmp": "rw,mode=1777"}), LOCAL
    )
    assert sent["HostConfig"]["Tmpfs"] == {
        "/run": "rw,nosuid,U,notmpcopyup",
        "/tmp": "rw,mode=1777,notmpcopyup",
    }
    with pytest.raises(BadInput, match="tmpfs owned by"):
        podman.create_body(body(Tmpfs={"/run": "rw,uid=13,gid=13"}), LOCAL)


def test_every_create_names_both_limits() -> None:
    given = [{"Name": "nofile", "Soft": 64, "Hard": 64}]
    limits = podman.create_body(body(Ulimits=given), LOCAL)["HostConfig"]["Ulimits"]
    assert {limit["Name"]: limit["Hard"] for limit in limits} == {"nofile": 64, "nproc": 4096}


def test_inspect_answers_in_dockers_words() -> None:
    compat = {
        "HostConfig": {
            "CapDrop": ["CHOWN", "KILL"],
            "CapAdd": [],
            "Runtime": "oci",
            "Ulimits": [{"Name": "RLIMIT_NOFILE", "Soft": 1, "Hard": 1}],
            "PidMode": "private",
            "IpcMode": "shareable",
        }
    }
    host = podman.inspect(compat, {"BoundingCaps": None, "OCIRuntime": "runc"})["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and host["Runtime"] == "runc"
    assert host["Ulimits"][0]["Name"] == "nofile"
    assert host["PidMode"] == "" and host["IpcMode"] == "private"


def test_a_capability_left_in_the_bounding_set_is_not_called_all_dropped() -> None:
    compat = {"HostConfig": {"CapDrop": ["CHOWN"], "CapAdd": []}}
    host = podman.inspect(compat, {"BoundingCaps": ["CAP_NET_RAW"]})["HostConfig"]
    assert host["CapDrop"] == ["CHOWN"]
