"""Runtimes: which combinations are refused, process limits on gVisor, the registration
doctor recommends, and start's refusals, without an engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from claude_cage import config, policy, runtimes
from claude_cage.context import Context
from claude_cage.engine.answers import EngineInfo, from_docker_info
from claude_cage.errors import BadInput
from claude_cage.operations import gvisor
from claude_cage.operations.inputs import StartOptions, load_config
from tests.unit.fake_engine import UnusedEngine


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CAGE_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("CAGE_RUNTIME", raising=False)


def test_host_network_is_refused_on_gvisor_only() -> None:
    error, hint = runtimes.refusal("runsc", "host") or ("", "")
    assert "gVisor" in error and "--runtime runc" in hint
    for network in ("none", "filtered"):
        assert runtimes.refusal("runsc", network) is None
    assert runtimes.refusal("runc", "host") is None
    error, hint = runtimes.refusal("runsc", "filtered", "desktop") or ("", "")
    assert "desktop" in error and "--runtime runc" in hint
    assert runtimes.refusal("runc", "filtered", "desktop") is None


def test_process_limits_on_gvisor() -> None:
    assert runtimes.limits("runc", 512, 1024) == (512, 1024)
    host, nproc = runtimes.limits("runsc", 512, 1024)
    assert nproc == 512  # enforced by gVisor's kernel
    assert host >= 512 * 11.6  # room for gVisor's own host tasks per process
    assert runtimes.limits("runsc", 64, 32)[1] == 32  # the smaller of the two


def test_the_plan_puts_the_session_on_its_runtime_and_the_companion_on_runc() -> None:
    cfg = config.Config().values
    host = policy.HostFacts(seccomp_profile="{}", apparmor=False)
    req = policy.SessionRequest(name="web", runtime="runsc", pids=100)  # type: ignore[arg-type]
    plan = policy.plan(cfg, req, policy.Decisions(), host)
    assert plan.session.runtime == "runsc" and plan.session.labels["cage.runtime"] == "runsc"
    assert plan.companion is not None and plan.companion.runtime == "runc"
    assert plan.session.pids_limit == 100 * runtimes.RUNSC_HOST_TASKS_PER_PROCESS + 256
    assert ("nproc", 100, 100) in plan.session.ulimits


def test_runtime_comes_from_config_and_flags() -> None:
    assert load_config(Context(), StartOptions())["runtime"] == "runc"
    assert load_config(Context(), StartOptions(runtime="runsc"))["runtime"] == "runsc"
    with pytest.raises(BadInput):
        load_config(Context(), StartOptions(runtime="kata"))


def test_the_recommended_registration_is_what_sessions_need() -> None:
    entry = json.loads(runtimes.daemon_json_entry())["runtimes"]["runsc"]
    found = gvisor.registration(from_docker_info({"Runtimes": {"runsc": entry}}))
    assert found.registered and found.problems == []
    assert "kill -HUP" in runtimes.ENABLE_HINT and "restart" not in runtimes.ENABLE_HINT
    bare = gvisor.registration(EngineInfo(runtimes={"runsc": ()}))
    assert len(bare.problems) == 2
    assert not gvisor.registration(from_docker_info({"Runtimes": {"runc": {}}})).registered


class Engine(UnusedEngine):
    def __init__(self, runtimes_: dict[str, Any], labels: dict[str, str]) -> None:
        self.runtimes, self.labels = runtimes_, labels

    def info(self) -> EngineInfo:
        return from_docker_info({"Runtimes": self.runtimes})

    def image_labels(self, image: str) -> dict[str, str]:
        return self.labels


def test_start_on_gvisor_is_refused_when_it_is_not_registered() -> None:
    with pytest.raises(BadInput) as error:
        gvisor.check_start(Engine({"runc": {}}, {}), "img")
    assert "not registered" in error.value.message and "daemon.json" in error.value.hint


def test_start_on_gvisor_is_refused_for_a_release_doctor_found_broken() -> None:
    engine = Engine({"runsc": {}}, {"cage.claude-code-version": "2.1.400"})
    gvisor.check_start(engine, "img")  # no verdict: allowed
    gvisor._remember("2.1.400", False, "exit 134: panic(main thread): abort() called")
    with pytest.raises(BadInput) as error:
        gvisor.check_start(engine, "img")
    assert "2.1.400 does not run on gVisor" in error.value.message
    assert "--runtime runc" in error.value.hint
    gvisor._remember("2.1.400", True, "2.1.400 (Claude Code)")
    gvisor.check_start(engine, "img")


def test_a_project_image_is_asked_itself_once_and_kept_by_image_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A project's image (cage.from) runs the stock release on another system: its own
    verdict, asked on its first start on gVisor and kept by image id, decides."""

    class ProjectEngine(Engine):
        def image_id(self, image: str) -> str | None:
            return "sha256:project"

    asked: list[str] = []

    def probe(engine: Any, image: str, key: str | None = None) -> tuple[bool, str]:
        asked.append(image)
        assert key is not None
        gvisor._remember(key, False, "exit 127: not found")
        return False, "exit 127: not found"

    monkeypatch.setattr(gvisor, "probe", probe)
    labels = {"cage.claude-code-version": "2.1.400", "cage.from": "my-project:1"}
    gvisor._remember("2.1.400", True, "2.1.400 (Claude Code)")  # the stock image's
    engine = ProjectEngine({"runsc": {}}, labels)
    for _ in range(2):
        with pytest.raises(BadInput) as error:
            gvisor.check_start(engine, "my-project-cage:1")
        assert "does not run on gVisor in my-project-cage:1" in error.value.message
    assert asked == ["my-project-cage:1"]  # asked once, then its kept verdict
