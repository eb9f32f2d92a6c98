"""Podman's differences, written in the engine layer: a create request as its
compatible API needs it, and its inspect answers in Docker's words."""

from __future__ import annotations

import http.server
import json
import socketserver
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def test_under_a_read_only_root_podmans_own_writable_tmpfs_are_read_only() -> None:
    sent = podman.create_body(
        body(ReadonlyRootfs=True, Tmpfs={"/tmp": "rw,size=512m,mode=1777"}), LOCAL
    )
    tmpfs = sent["HostConfig"]["Tmpfs"]
    assert tmpfs["/tmp"] == "rw,size=512m,mode=1777,notmpcopyup"  # the session's own
    for target in ("/run", "/var/tmp"):  # Podman would mount them writable, of no size
        assert tmpfs[target].startswith("ro,") and "size=4k" in tmpfs[target]
    assert podman.create_body(body(Tmpfs={}), LOCAL)["HostConfig"]["Tmpfs"] == {}


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


class _Refusing:
    def ping(self) -> dict:
        from claude_cage.errors import EngineUnavailable

        raise EngineUnavailable("no answer", "start it")


def _doctor_podman(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: object, *, sock: bool, binary: bool
):
    from claude_cage.context import Context
    from claude_cage.operations import doctor

    rootful = tmp_path / "podman.sock"
    if sock:
        rootful.touch()
    monkeypatch.setattr(podman, "ROOTFUL_SOCKET", str(rootful))
    monkeypatch.setattr(podman, "installed", lambda: binary)
    return doctor.check_podman(Context(engine=engine, environ={}))  # type: ignore[arg-type]


def test_doctor_names_a_podman_that_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Answering:
        def ping(self) -> dict:
            return {"Components": [{"Name": "Podman Engine"}]}

    found = _doctor_podman(tmp_path, monkeypatch, Answering(), sock=True, binary=True)
    assert found is not None and found.status == "ok"
    assert f"--engine unix://{tmp_path}/podman.sock" in found.detail


def test_doctor_says_how_to_start_a_silent_podman(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for sock in (True, False):
        found = _doctor_podman(tmp_path, monkeypatch, _Refusing(), sock=sock, binary=True)
        assert found is not None and found.status == "warn", found
        assert found.fix is not None and "podman system service" in found.fix


def test_doctor_says_nothing_of_podman_where_there_is_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _doctor_podman(tmp_path, monkeypatch, _Refusing(), sock=False, binary=False) is None


def test_gvisor_is_refused_rather_than_started_on_runc() -> None:
    with pytest.raises(BadInput, match="runtime 'runsc' on Podman"):
        podman.create_body(body(Runtime="runsc"), LOCAL)
    assert podman.create_body(body(Runtime="runc"), LOCAL)["HostConfig"]["Runtime"] == "runc"


# What a rootless Podman 4.3 on cgroup v1 says of itself (libpod /info, trimmed).
ROOTLESS_INFO = {
    "host": {
        "security": {"rootless": True},
        "cgroupVersion": "v1",
        "cgroupControllers": [],
        "idMappings": {
            "uidmap": [
                {"container_id": 0, "host_id": 1001, "size": 1},
                {"container_id": 1, "host_id": 100000, "size": 65536},
            ]
        },
    }
}
DELEGATED = {"host": {**ROOTLESS_INFO["host"], "cgroupVersion": "v2",
                      "cgroupControllers": ["cpu", "memory", "pids"]}}  # fmt: skip
LIMITED = {"Memory": 1 << 30, "NanoCpus": 10**9, "PidsLimit": 512}


def project(source: str = "/home/u/proj", read_only: bool = False) -> dict:
    return {"Type": "bind", "Source": source, "Target": "/workspace/proj", "ReadOnly": read_only}


def test_the_service_says_whether_it_is_rootless_and_whose_it_is() -> None:
    host = podman.host_from_info(ROOTLESS_INFO)
    assert (host.rootless, host.uid, host.missing_controllers) == (
        True, 1001, ("memory", "pids", "cpu"),
    )  # fmt: skip
    assert podman.host_from_info(DELEGATED).missing_controllers == ()
    damaged_host = {
        "security": "x",
        "idMappings": {"uidmap": [{"container_id": 0, "host_id": "x"}]},
    }
    assert podman.host_from_info({"host": damaged_host}) == podman.Host()
    assert podman.host_from_info({"host": {"idMappings": {"uidmap": 3}}}) == podman.Host()
    for damaged in (None, {}, {"host": []}, {"host": {"security": "x", "idMappings": 3}}):
        assert podman.host_from_info(damaged) == podman.Host()  # rootful, nothing refused


def test_rootless_without_cgroup_controllers_refuses_limits_unless_accepted() -> None:
    host = podman.host_from_info(ROOTLESS_INFO)
    with pytest.raises(BadInput, match="cannot limit memory, CPUs or processes") as refused:
        podman.create_body(body(**LIMITED), LOCAL, host)
    assert "memory/pids/cpu" in refused.value.message and "cgroup v1" in refused.value.message
    asked = []
    sent = podman.create_body(body(**LIMITED), LOCAL, host, lambda: asked.append(1) or True)
    assert asked == [1] and sent["HostConfig"]["Memory"] == 1 << 30
    # Delegated controllers, or a rootful service: nothing to ask.
    podman.create_body(body(**LIMITED), LOCAL, podman.host_from_info(DELEGATED))
    podman.create_body(body(**LIMITED), LOCAL, podman.Host())


def test_a_session_running_as_the_user_keeps_its_uid() -> None:
    host = podman.host_from_info(DELEGATED)
    mine = {**body(Mounts=[project()]), "User": "1001:1001"}
    assert podman.create_body(mine, LOCAL, host)["HostConfig"]["UsernsMode"] == "keep-id"
    other = podman.create_body(body(), LOCAL, host)  # uid 1000, no mount: a subordinate id
    assert "UsernsMode" not in other["HostConfig"]
    assert "UsernsMode" not in podman.create_body(mine, LOCAL)["HostConfig"]  # rootful


def test_a_writable_mount_of_another_uid_is_refused_on_rootless() -> None:
    host = podman.host_from_info(DELEGATED)
    with pytest.raises(BadInput, match="writes there as uid 1000") as refused:
        podman.create_body(body(Mounts=[project()]), LOCAL, host)
    assert "uid 1001" in refused.value.hint
    podman.create_body(body(Mounts=[project(read_only=True)]), LOCAL, host)  # read-only: fine


class _Answers(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def _json_engine(
    tmp_path: Path, server: str, answer: Callable[[str], Any], timeout: int
) -> tuple[list[str], object]:
    """An engine on a unix socket whose answers carry `server` as their Server header,
    each GET answered with `answer(path)` as JSON (None: no answer at all): (the paths
    it was asked for, the Engine)."""
    from claude_cage.engine.client import Engine

    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def version_string(self) -> str:
            return server

        def do_GET(self) -> None:
            asked.append(self.path)
            found = answer(self.path)
            if found is None:
                return
            body = json.dumps(found).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    path = tmp_path / "engine.sock"
    answers = _Answers(str(path), Handler)
    threading.Thread(target=answers.serve_forever, daemon=True).start()
    return asked, Engine(Endpoint("", f"unix://{path}"), timeout=timeout)


def _engine_answering_as(server: str, tmp_path: Path) -> tuple[list[str], object]:
    """An engine whose answers carry `server` as their Server header: (the paths it was
    asked for, the Engine)."""
    version = {"Components": [{"Name": "Engine"}]}
    return _json_engine(tmp_path, server, lambda _path: version, timeout=5)


@pytest.mark.parametrize(
    ("server", "podman", "asks_version"),
    [
        ("Libpod/4.3.1 (linux)", True, False),
        ("Docker/20.10.24+dfsg1 (linux)", False, False),
        ("some-proxy/1.0", False, True),  # neither: the engine's /version says
    ],
)
def test_the_engine_kind_comes_from_an_answers_server_header(
    tmp_path: Path, server: str, podman: bool, asks_version: bool
) -> None:
    asked, engine = _engine_answering_as(server, tmp_path)
    engine._http.call("GET", "/containers/json")  # type: ignore[attr-defined]
    assert engine.is_podman is podman  # type: ignore[attr-defined]
    assert any(p.endswith("/version") for p in asked) is asks_version, asked


STARTED = "2026-12-07T10:00:00.123456789Z"  # 1796637600.123 s
CHECK = {"Test": ["CMD", "/usr/local/bin/desktop-session", "health"], "Interval": 5_000_000_000}


def running(log: list | None, check: dict | None = CHECK, alive: bool = True) -> dict:
    health = {"Status": "starting", "FailingStreak": 0, "Log": log}
    return {
        "State": {"Running": alive, "StartedAt": STARTED, "Health": health},
        "Config": {"Healthcheck": check},
    }


@pytest.mark.parametrize(
    ("answer", "seconds_after_start", "unchecked"),
    [
        (running(None), 9, False),  # within two intervals of its start
        (running(None), 11, True),  # no check ran since (no systemd timer)
        (running([{"End": "2026-12-07T10:00:30.5Z"}]), 35, False),  # a timer runs it
        (running([{"End": "2026-12-07T10:00:30.5Z"}]), 41, True),
        (running(None, check={**CHECK, "Interval": 0}), 59, False),  # the 30 s default
        (running(None, check={**CHECK, "Interval": 0}), 61, True),
        (running(None, alive=False), 600, False),  # stopped: nothing to check
        (running(None, check=None), 600, False),  # the image has no health check
        (running(None, check={"Test": ["NONE"]}), 600, False),
        ({"State": {"Running": True, "StartedAt": "garbage"}}, 600, False),  # damaged
        (running([{"End": 12}, "x"]), 11, True),  # a damaged log: the start counts
    ],
)
def test_a_health_check_no_timer_ran_is_run_when_inspected(
    answer: dict, seconds_after_start: float, unchecked: bool
) -> None:
    start = podman._epoch(STARTED)
    assert start is not None and abs(start - 1796637600.123456) < 1e-3
    assert podman.health_unchecked(answer, start + seconds_after_start) is unchecked


def test_the_checks_verdict_replaces_the_stale_one() -> None:
    answer = running(None)
    checked = podman.with_health(answer, {"Status": "healthy", "FailingStreak": 0, "Log": None})
    assert checked["State"]["Health"] == {"Status": "healthy", "FailingStreak": 0, "Log": None}
    assert checked["State"]["Running"] is True and answer["State"]["Health"]["Status"] == "starting"
    assert podman.with_health(answer, {"cause": "no healthcheck"}) == answer  # not an answer
    assert podman.with_health(answer, None) == answer


def test_a_reader_of_a_stopped_containers_volumes_only_sleeps_without_network() -> None:
    stopped = {
        "Id": "abc123",
        "Image": "sha256:feed",
        "Config": {"User": "1000:1000", "Labels": {"cage.session": "s", "cage.role": "session"}},
    }
    body = podman.reader_body(stopped)
    host = body["HostConfig"]
    assert host["VolumesFrom"] == ["abc123:ro"]  # read-only: the reader writes nothing
    assert (host["NetworkMode"], host["CapDrop"], host["ReadonlyRootfs"]) == ("none", ["ALL"], True)
    assert body["Entrypoint"] == ["/bin/sleep"] and body["User"] == "1000:1000"
    assert body["Labels"] == {"cage.session": "s", "cage.role": "export"}
    assert body["Image"] == "sha256:feed"  # the session's own image, by id


LONG_AGO = "2026-01-01T00:00:00Z"


def _podman_whose_check_never_ends(tmp_path: Path) -> tuple[list[str], object]:
    """A Libpod engine on a unix socket: one running container, `web`, whose health
    check no timer ran, and whose check, when asked for, never answers (stopped by the
    session, or an image's check that does not end: Podman before 5.5 waits for it)."""
    never = threading.Event()
    compat = {
        "Name": "/web",
        "State": {"Running": True, "StartedAt": LONG_AGO, "Health": {"Status": "starting"}},
        "Config": {"Healthcheck": {"Test": ["CMD", "true"], "Interval": 1_000_000_000}},
    }

    def answer(path: str) -> Any:
        if path.endswith("/healthcheck"):
            never.wait(30)
            return None
        return [] if "/containers/json" in path else compat

    return _json_engine(tmp_path, "Libpod/4.3.1 (linux)", answer, timeout=20)


def test_a_health_check_that_never_ends_does_not_stall_inspect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check runs in the session: its agent can stop it (SIGSTOP, as the same user).
    `inspect` then waits HEALTH_CHECK_WAIT once a command, keeps the health as it was,
    and the engine is not taken for stalled: status, stop and destroy go on."""
    import time

    from claude_cage.engine import client

    monkeypatch.setattr(client, "HEALTH_CHECK_WAIT", 0.5)
    asked, engine = _podman_whose_check_never_ends(tmp_path)
    began = time.monotonic()
    found = engine.inspect("web")  # type: ignore[attr-defined]
    again = engine.inspect("web")  # type: ignore[attr-defined]
    assert found is not None and found.running and again is not None and again.running
    assert engine.list_containers() == []  # type: ignore[attr-defined]
    assert time.monotonic() - began < 5
    assert [p for p in asked if p.endswith("/healthcheck")] == [
        "/v4.0.0/libpod/containers/web/healthcheck"
    ], asked


@pytest.mark.parametrize(
    ("service", "refused"),
    [
        (podman.Host(rootless=True, cgroup_version="v1", controllers=()), True),
        (podman.Host(rootless=True, cgroup_version="v2"), False),
        (podman.Host(rootless=False, cgroup_version="v1"), False),
    ],
)
def test_only_a_rootless_podman_on_cgroup_v1_refuses_a_pause(
    service: podman.Host, refused: bool
) -> None:
    if refused:
        with pytest.raises(BadInput, match="cannot pause a container") as caught:
            podman.check_pause(service)
        assert "claude-cage stop" in (caught.value.hint or "")
    else:
        podman.check_pause(service)
