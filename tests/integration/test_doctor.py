"""`doctor` on the real engine: every check, its fix, the exit code, and a probe
session that proves the filtered network and leaves nothing behind."""

from __future__ import annotations

import json
import subprocess

import pytest

from claude_cage import __version__
from tests.conftest import Cage
from tests.isolation import IMAGE_CLI, IMAGE_COMPANION


def checks_of(result) -> dict[str, dict]:
    return {c["check"]: c for c in result.json()["checks"]}


def image_version(image: str) -> str | None:
    out = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", image],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        return None
    return (json.loads(out.stdout) or {}).get("cage.version")


@pytest.mark.engine
def test_doctor_checks_everything_and_proves_the_filtered_network(cage: Cage) -> None:
    result = cage("doctor", "--json")
    assert "Traceback" not in result.output
    report = result.json()
    checks = checks_of(result)
    for name in ("engine", "seccomp", "apparmor", "disk", "config", "filtered network"):
        assert name in checks, name
    assert checks["engine"]["status"] == "ok" and "Docker" in checks["engine"]["detail"]
    assert checks["seccomp"]["status"] == "ok"
    assert checks["config"]["status"] == "ok"
    assert checks["filtered network"]["status"] == "ok", checks["filtered network"]
    assert "403" in checks["filtered network"]["detail"]
    assert "mongodb" not in checks  # not configured
    for image in (IMAGE_CLI, IMAGE_COMPANION):
        wanted = "ok" if image_version(image) == __version__ else "fail"
        assert checks[f"image {image}"]["status"] == wanted
    failed = [c for c in report["checks"] if c["status"] == "fail"]
    assert all(c["fix"] for c in failed)
    assert report["ok"] == (not failed)
    assert result.code == (1 if failed else 0)

    # the probe is gone, with everything it made
    owner = f"label=cage.owner={cage.owner()}"
    left = subprocess.run(
        ["docker", "ps", "-aq", "--filter", owner], capture_output=True, text=True
    ).stdout.split()
    volumes = subprocess.run(
        ["docker", "volume", "ls", "-q", "--filter", owner], capture_output=True, text=True
    ).stdout.split()
    assert left == [] and volumes == []
    assert cage("list", "--json").json()["sessions"] == []


@pytest.mark.engine
def test_doctor_names_the_fix_for_a_missing_image_and_a_bad_config(cage: Cage) -> None:
    env = {"CAGE_IMAGE_CLI": "claude-cage-missing:nope", "CAGE_MAX_SESSIONS": "many"}
    result = cage("doctor", "--json", env=env)
    assert result.code == 1, result.output
    checks = checks_of(result)
    image = checks["image claude-cage-missing:nope"]
    assert image["status"] == "fail" and image["fix"] == "claude-cage build cli"
    assert checks["config"]["status"] == "fail"
    assert checks["config"]["fix"] == "claude-cage config validate"
    assert checks["filtered network"]["status"] == "fail"  # not probed with a bad config

    human = cage("doctor", env=env)
    assert human.code == 1
    assert "fix config: claude-cage config validate" in human.stderr
    assert "Traceback" not in human.output


@pytest.mark.engine
def test_doctor_reports_mongodb_without_its_password(cage: Cage) -> None:
    env = {"MONGODB_URI": "mongodb://cage:s3cret-pw@127.0.0.1:9/claude_cage"}
    result = cage("doctor", "--json", "--no-probe", env=env)
    assert result.code == 1, result.output
    mongo = checks_of(result)["mongodb"]
    assert mongo["status"] == "fail" and mongo["fix"]
    assert "s3cret-pw" not in result.output
    assert "****" in mongo["detail"]


def test_doctor_with_no_engine_says_how_to_start_one(cage: Cage) -> None:
    result = cage("doctor", "--json", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert result.code == 1, result.output
    checks = checks_of(result)
    assert checks["engine"]["status"] == "fail"
    assert "ensure-docker" in checks["engine"]["fix"]
    assert checks["filtered network"]["status"] == "fail"
    assert "Traceback" not in result.output
