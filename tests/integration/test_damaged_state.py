"""Fault injection: each file of claude-cage's state, damaged in each way, under every
command. Whatever the damage, a command answers with one `error:` line naming the file
(plus a hint), exits with a documented code, never shows a traceback, and leaves the
other session alone. `list` shows the others and marks a damaged record `damaged`;
`destroy --force` removes a session whose record is damaged, from the engine's labels.

"unreadable" runs the CLI without the capabilities that let root read any file
(CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so that a mode 000 file is unreadable to it.

The commands that only read state (list, status, gc --dry-run, events, log, config,
reap --dry-run) meet every other damage in tests/unit/test_damaged_state.py, in-process
over a fake engine; here they run for "unreadable" only, and the commands that act on
the engine run for every damage.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Cage, Result, owned
from tests.damage import DAMAGES, DOCUMENTED, FILES, GOOD_CONFIG

pytestmark = pytest.mark.engine


def without_dac_override(cage: Cage) -> Callable[..., Result]:
    """Run the CLI bound by file permissions, as any user is (root is not by default)."""
    prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        done = subprocess.run(
            [*prefix, sys.executable, "-m", "claude_cage", *args],
            capture_output=True,
            text=True,
            timeout=300,
            env={**cage.env, **(env or {})},
        )
        return Result(done.returncode, done.stdout, done.stderr)

    return run


def target(cage: Cage, which: str, victim: str) -> Path:
    return {
        "metadata": cage.data_dir / "sessions" / victim / "metadata",
        "config": cage.config_dir / "config.yaml",
        "events": cage.data_dir / "events.sqlite3",
        "lock": cage.data_dir / "locks" / f"{victim}.lock",
    }[which]


def commands(victim: str, good: str, damage: str) -> list[list[str]]:
    """Every command that reads or writes state, the state-changing ones last; for a
    damage other than "unreadable", only those that act on the engine (the unit test
    runs the readers)."""
    if damage != "unreadable":
        return acting(victim)
    return [*reading(victim, good), *acting(victim)]


def reading(victim: str, good: str) -> list[list[str]]:
    """The commands that read state and change nothing on the engine: the same list as
    tests/unit/test_damaged_state.py's."""
    return [
        ["list"],
        ["list", "--json"],
        ["status", good],
        ["status", victim],
        ["status", victim, "--json"],
        ["gc", "--dry-run"],
        ["events", "--limit", "5"],
        ["events", "--status"],
        ["log", "session", f"check:{victim}", '{"status": "ok"}'],
        ["config", "show"],
        ["config", "validate"],
        ["reap", "--dry-run"],
    ]


def acting(victim: str) -> list[list[str]]:
    return [
        ["exec", victim, "--", "true"],
        ["logs", victim, "--tail", "1"],
        ["allow", victim, "example.org"],
        ["stop", victim],
        ["start", "--name", victim, "--detach"],
        ["destroy", "--force", victim],
        ["gc", "--yes"],
    ]


def assert_well_behaved(result: Result, args: list[str], damaged: Path) -> None:
    what = f"claude-cage {' '.join(args)} -> {result.code}\n{result.output}"
    assert "Traceback" not in result.output, what
    assert result.code in DOCUMENTED, what
    if result.code == 0:
        return
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, what
    if args[:2] != ["config", "validate"]:  # validate names each problem on its own line
        others = [
            line
            for line in result.stderr.splitlines()
            if not line.startswith(("error:", "hint:", "warning:", "claude-cage: warning:"))
        ]
        assert others == [], what


def container_running(name: str) -> bool:
    out = subprocess.run(
        ["docker", "inspect", "--format", "{{.State.Running}}", f"cage-{name}"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() == "true"


@pytest.mark.slow
@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("which", FILES)
def test_every_command_survives_a_damaged_file(cage: Cage, which: str, damage: str) -> None:
    run = without_dac_override(cage) if damage == "unreadable" else cage
    good, victim = cage.name("good"), cage.name("victim")
    (cage.config_dir / "config.yaml").write_text(GOOD_CONFIG)
    for name in (good, victim):
        started = run("start", "--name", name, "--network", "none", "--detach")
        assert started.code == 0, started.output
    good_record = (cage.data_dir / "sessions" / good / "metadata").read_bytes()
    path = target(cage, which, victim)
    assert path.exists(), path
    before = path.read_bytes()
    DAMAGES[damage](path)
    damaged_bytes = path.read_bytes() if path.is_file() and damage != "unreadable" else None

    results = {}
    for args in commands(victim, good, damage):
        result = run(*args)
        assert_well_behaved(result, args, path)
        results[" ".join(args[:2])] = result
        if args[0] == "list" and "--json" in args:
            entries = {s["name"]: s for s in result.json()["sessions"]}
            assert good in entries and not entries[good]["damaged"]
            if which == "metadata":
                assert entries[victim]["damaged"], entries[victim]

    # The damage is noticed, and the file named, wherever a command fails because of
    # it. Harmless: any content in a lock file (flock needs only to open it), and an
    # empty config file (an empty YAML document: no settings).
    blocking = damage in ("directory", "unreadable")
    harmless = (which == "lock" and not blocking) or (which == "config" and damage == "empty")
    failed = [r for r in results.values() if r.code != 0]
    if which in ("metadata", "config", "lock") and not harmless:
        assert any(str(path) in r.stderr for r in failed), [r.stderr for r in failed]
    if harmless:
        assert not [r for r in failed if str(path) in r.output], failed
    if which == "metadata":  # destroy --force works from the engine's labels alone
        assert results["destroy --force"].code == 0, results["destroy --force"].output
        assert owned(cage.owner()) == (
            [f"cage-{good}"],
            [f"cage-data-{good}", f"cage-scratch-{good}"],
        ), "destroy --force left something of the damaged session"
    if which == "events" and damage != "empty":  # moved aside, nothing deleted, a new log
        aside = sorted(cage.data_dir.glob("events.sqlite3.damaged-*"))
        assert aside, list(cage.data_dir.iterdir())
        moved = aside[0]
        if damaged_bytes is not None:
            assert moved.read_bytes() == damaged_bytes
        assert any("moved it aside" in r.stderr for r in results.values())
        if "log session" in results:
            assert results["log session"].code == 0, results["log session"].output
        assert before  # the log had events before the damage
    # the other session is untouched
    assert container_running(good)
    assert (cage.data_dir / "sessions" / good / "metadata").read_bytes() == good_record
    assert run("status", good).code == 0


# --- a damaged value in a record that parses ----------------------------------------

DAMAGED_VALUES = {  # field -> a value that parses as text but does not fit the field
    "mounts": ['[{"x":1}]', "[[]]"],
    "memory": ["abc"],
    "cpus": ["1e309"],
    "seccomp_profile": ["/etc/p\x00x"],
}


def set_value(path: Path, key: str, value: str) -> None:
    """Put `key=value` in a metadata file as it is, before its last (schema) line."""
    lines = [line for line in path.read_text().splitlines() if not line.startswith(f"{key}=")]
    path.write_text("\n".join([*lines[:-1], f"{key}={value}", lines[-1]]) + "\n")


def test_a_damaged_value_is_named_under_every_command(cage: Cage) -> None:
    """Each value the fault runs found: `list` marks that session damaged and shows the
    other, `status` names the field, `stop` stops it, `start` refuses naming the file,
    `gc` reports it, and `destroy --force` removes all of it by the engine's labels."""
    good = cage.name("good")
    assert cage("start", "--name", good, "--network", "none", "--detach").code == 0
    for key, values in DAMAGED_VALUES.items():
        for value in values:
            victim = cage.name("victim")
            started = cage("start", "--name", victim, "--network", "none", "--detach")
            assert started.code == 0, started.output
            path = cage.data_dir / "sessions" / victim / "metadata"
            set_value(path, key, value)
            results = {}
            for args in (
                ["list", "--json"], ["status", victim], ["stop", victim],
                ["start", "--name", victim, "--detach"], ["gc", "--dry-run"],
                ["destroy", "--force", victim], ["gc", "--yes"],
            ):  # fmt: skip
                result = cage(*args)
                assert_well_behaved(result, args, path)
                results[args[0] + (" --yes" if "--yes" in args else "")] = result
            entries = {s["name"]: s for s in results["list"].json()["sessions"]}
            assert not entries[good]["damaged"], entries[good]
            assert entries[victim]["damaged"].startswith(f"{key} "), entries[victim]
            assert f"{key} " in results["status"].output, results["status"].output
            assert results["stop"].code == 0, results["stop"].output  # by the engine's labels
            assert results["start"].code == 1, results["start"].output
            assert str(path) in results["start"].stderr, results["start"].output
            assert victim in results["gc"].output, results["gc"].output
            assert results["destroy"].code == 0, results["destroy"].output
            scratch = [f"cage-data-{good}", f"cage-scratch-{good}"]
            assert owned(cage.owner()) == ([f"cage-{good}"], scratch)
            assert not (cage.data_dir / "sessions" / victim).exists()
    assert container_running(good)


def test_a_damaged_credential_is_named_and_start_refuses(cage: Cage) -> None:
    """A credential file for all sessions that is not JSON: `secret list` shows it as
    damaged, a filtered start refuses naming it and leaves nothing, `secret rm` removes
    it, and the start then runs."""
    folder = cage.data_dir / "credentials"
    folder.mkdir(parents=True)
    path = folder / "github.json"
    path.write_text('{"name": "github", "kind": "github", "hosts": ["github.com"], "val')
    listed = cage("secret", "list")
    assert listed.code == 0 and "(damaged)" in listed.stdout, listed.output
    assert str(path) in listed.stderr, listed.output
    name = cage.name()
    started = cage("start", "--name", name, "--detach")
    assert_well_behaved(started, ["start"], path)
    assert started.code == 1 and str(path) in started.stderr, started.output
    assert "secret rm github" in started.stderr, started.output
    assert owned(cage.owner()) == ([], [])
    assert not (cage.data_dir / "sessions" / name).exists()
    removed = cage("secret", "rm", "github")
    assert removed.code == 0 and not path.exists(), removed.output
    assert cage("start", "--name", name, "--detach").code == 0


# --- a full disk, a read-only data directory ----------------------------------------


@contextlib.contextmanager
def mounted(path: Path, *options: str) -> Iterator[None]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", *options, str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def fill(directory: Path, leave_pages: int) -> None:
    """Fill the filesystem of `directory`, leaving `leave_pages` pages free."""
    filler = directory / "filler"
    filler.unlink(missing_ok=True)
    stat = os.statvfs(directory)
    pages = stat.f_bavail * stat.f_frsize // 4096 - leave_pages
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(pages, 0) * 4096)


def nothing_of(cage: Cage, name: str) -> None:
    containers, volumes = owned(cage.owner())
    assert not [c for c in containers if c.endswith(f"cage-{name}")], containers
    assert not [v for v in volumes if v.endswith(f"-{name}")], volumes
    assert not (cage.data_dir / "sessions" / name).exists()


def test_a_start_on_a_full_disk_leaves_nothing(cage: Cage, tmp_path: Path) -> None:
    """Whichever write the disk runs out at (the record, the API key, the final record),
    the start fails with one line and nothing it made stays; other sessions go on."""
    key = tmp_path / "key"
    key.write_text("sk-ant-test-0123456789abcdef\n")
    # plain volumes: size-limited ones keep their images in the data directory
    plain = {"CAGE_WORKSPACE_SIZE": "0", "CAGE_DATA_SIZE": "0", "CAGE_SOCKET_SIZE": "0"}
    cage.env.update(plain)
    with mounted(cage.data_dir, "-t", "tmpfs", "-o", "size=512k", "tmpfs"):
        other = cage.name("other")
        assert cage("start", "--name", other, "--network", "none", "--detach").code == 0
        failures = 0
        for pages in range(4):
            fill(cage.data_dir, pages)
            name = cage.name(f"full{pages}")
            result = cage(
                "start", "--name", name, "--network", "filtered", "--api-key-file", str(key),
                "--detach",
            )  # fmt: skip
            assert_well_behaved(result, ["start"], cage.data_dir)
            if result.code != 0:
                failures += 1
                assert "No space left on device" in result.stderr, result.stderr
                assert "hint: free some space" in result.stderr
                assert "a file" not in result.stderr  # the file is named
                nothing_of(cage, name)
        assert failures >= 2  # out of space at the first write, and at a later one
        for args in (["list"], ["status", other], ["gc", "--dry-run"], ["stop", other]):
            assert_well_behaved(cage(*args), args, cage.data_dir)
        logged = cage("log", "session", "full:disk", "{}")
        assert logged.code == 1 and "not recorded" in logged.stderr, logged.output
        for args in (["events", "--json"], ["events", "--status"]):  # reading needs no space
            read = cage(*args)
            assert read.code == 0 and "Traceback" not in read.output, read.output
        assert f"start:{other}" in {e["key"] for e in cage("events", "--json").json()["events"]}
        doctor = cage("doctor", "--no-probe")  # a report, with the directory as a FAIL
        assert doctor.code == 1 and "Traceback" not in doctor.output, doctor.output
        assert any(
            line.startswith("FAIL") and "data directory" in line and "No space left" in line
            for line in doctor.stdout.splitlines()
        ), doctor.output
        assert not list(cage.data_dir.glob("*.tmp")) and not list(cage.data_dir.glob(".doctor-*"))
        (cage.data_dir / "filler").unlink()
        assert cage("log", "session", "free:disk", "{}").code == 0
        assert cage("destroy", "--force", other).code == 0


def test_a_read_only_data_directory(cage: Cage) -> None:
    """Every command answers in one line; nothing is created, nothing half-removed."""
    running, stopped = cage.name("run"), cage.name("stop")
    for name in (running, stopped):
        assert cage("start", "--name", name, "--network", "none", "--detach").code == 0
    assert cage("stop", stopped).code == 0
    before = owned(cage.owner())
    with mounted(cage.data_dir, "--bind", str(cage.data_dir)):
        subprocess.run(["mount", "-o", "remount,ro,bind", str(cage.data_dir)], check=True)
        new = cage.name("new")
        for args in (
            ["start", "--name", new, "--network", "none", "--detach"],
            ["start", "--name", stopped, "--detach"],
            ["list"],
            ["status", running],
            ["stop", running],
            ["destroy", "--force", running],
            ["gc", "--dry-run"],
            ["gc", "--yes"],
            ["reap", "--dry-run"],
            ["events"],
            ["exec", running, "--", "true"],
        ):
            result = cage(*args)
            assert_well_behaved(result, args, cage.data_dir)
            if result.code != 0:
                assert "read-only" in result.stderr.lower(), result.output
        logged = cage("log", "session", "ro:dir", "{}")
        assert logged.code == 1, logged.output
        assert owned(cage.owner()) == before  # nothing made, nothing removed
        assert container_running(running)
    assert cage("stop", running).code == 0
