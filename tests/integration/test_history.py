"""The flight recorder: `destroy` archives a session's transcripts, egress log and
events; `logs` and `egress` read a destroyed session from its archive; `--purge` keeps
nothing; `history_days` prunes old archives and `gc` says so; `events export` writes
JSON lines and OTLP, the latter parsed with the OpenTelemetry protobuf schema itself.
Secrets seen by the session appear in none of it."""

from __future__ import annotations

import gzip
import json
import os
import secrets
import subprocess
from pathlib import Path

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from tests.conftest import Cage, logs_bytes
from tests.integration.conftest import TestHost

pytestmark = [pytest.mark.engine, pytest.mark.podman]

TRANSCRIPT = "/home/claude/.claude/projects/-workspace/rec.jsonl"


def sh(cage: Cage, name: str, script: str):  # type: ignore[no-untyped-def]
    return cage("exec", name, "--", "bash", "-c", script, timeout=60)


def archives(cage: Cage) -> list[dict]:
    return cage("history", "--json").json()["archives"]


def test_destroy_archives_and_logs_egress_export_read_it(
    cage: Cage, test_hosts: dict[str, TestHost]
) -> None:
    name = cage.name("rec")
    key = f"sk-ant-test-{secrets.token_hex(12)}"
    password = f"pw{secrets.token_hex(8)}"
    started = cage(
        "start", "--name", name, "--detach", "--allow-host", "allowed.test",
        env={"ANTHROPIC_API_KEY": key},
    )  # fmt: skip
    assert started.code == 0, started.output
    # A turn whose tool input holds a secret-named field and a URI with a password.
    turn = {
        "type": "assistant",
        "timestamp": "2026-12-06T10:00:00Z",
        "message": {"content": [{"type": "text", "text": "flight recorded"}]},
        "toolInput": {"api_key": key, "url": f"https://bob:{password}@db.example/x"},
    }
    line = json.dumps(turn).replace("'", "'\\''")
    write = f"mkdir -p $(dirname {TRANSCRIPT}) && printf '%s\\n' '{line}' >> {TRANSCRIPT}"
    assert sh(cage, name, write).code == 0
    blocked = sh(cage, name, f"curl -s -o /dev/null -m 10 http://bob:{password}@denied.test/")
    assert blocked.code == 0, blocked.output
    live = cage("egress", name, "--json").json()["requests"]
    assert any(r["host"] == "denied.test" for r in live), live
    before = logs_bytes(cage, name).decode()
    assert "flight recorded" in before

    destroyed = cage("destroy", "--force", name, "--json")
    assert destroyed.code == 0, destroyed.output
    path = Path(destroyed.json()["archive"])
    assert path.parent == cage.data_dir / "history" and path.is_file()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert [a["name"] for a in archives(cage)] == [name]
    raw = gzip.decompress(path.read_bytes())
    assert b"flight recorded" in raw and b"denied.test" in raw
    assert key.encode() not in raw and password.encode() not in raw

    # logs and egress read it as they read a live session, marked destroyed
    shown = cage("logs", name)
    assert shown.code == 0, shown.output
    assert shown.stdout == before
    assert f"session {name} was destroyed at" in shown.stderr
    egress = cage("egress", name, "--json").json()
    assert egress["destroyed"] and any(r["host"] == "denied.test" for r in egress["requests"])
    assert "was destroyed at" in cage("egress", name).stderr

    # events export: JSON lines, and OTLP that the protobuf schema accepts
    lines = cage("events", "export", "--session", name, "--format", "jsonl", "--transcripts")
    assert lines.code == 0, lines.output
    records = [json.loads(x) for x in lines.stdout.splitlines()]
    kinds = {(r["kind"], r["type"]) for r in records}
    assert ("event", "session") in kinds and ("transcript", "transcript") in kinds
    assert any(r["key"] == f"start:{name}" for r in records)
    assert any(r["type"] == "egress" and r["value"].get("host") == "denied.test" for r in records)
    otlp = cage("events", "export", "--session", name, "--format", "otlp", "--transcripts")
    assert otlp.code == 0, otlp.output
    message = json_format.Parse(otlp.stdout, ExportLogsServiceRequest())
    logged = message.resource_logs[0].scope_logs[0].log_records
    assert len(logged) == len(records)
    attributes = {kv.key: kv.value.string_value for kv in logged[0].attributes}
    assert attributes["cage.session"] == name
    assert any(r.severity_text == "WARN" for r in logged)  # the blocked request
    assert all(r.time_unix_nano > 0 for r in logged)
    for text in (lines.stdout, otlp.stdout):
        assert key not in text and password not in text
    since = cage("events", "export", "--session", name, "--since", "1m", "--format", "jsonl")
    assert all(json.loads(x)["kind"] == "event" for x in since.stdout.splitlines())
    assert not any('"2026-12-06T10:00:00Z"' in x for x in since.stdout.splitlines())


def test_purge_keeps_nothing(cage: Cage) -> None:
    name = cage.name("purge")
    assert cage("start", "--name", name, "--detach", "--network", "none").code == 0
    gone = cage("destroy", "--force", "--purge", name, "--json")
    assert gone.code == 0, gone.output
    assert gone.json()["archive"] is None
    assert archives(cage) == []
    shown = cage("logs", name)
    assert shown.code != 0 and "no session" in shown.stderr.lower(), shown.output


def test_archives_past_history_days_are_pruned_and_gc_says_so(cage: Cage) -> None:
    old, new = cage.name("old"), cage.name("new")
    for name in (old, new):
        assert cage("start", "--name", name, "--detach", "--network", "none").code == 0
        assert cage("destroy", "--force", name).code == 0
    found = {a["name"]: Path(a["path"]) for a in archives(cage)}
    # the first destroyed 40 days ago: its file name carries the time
    aged = found[old].with_name(f"{old}@20200101T000000000000Z.tar.gz")
    os.rename(found[old], aged)
    assert cage("gc", "--json", env={"CAGE_HISTORY_DAYS": "0"}).json()["items"] == []
    assert aged.exists()  # 0: kept for ever
    dry = cage("gc", "--dry-run", "--json").json()["items"]
    assert [(i["kind"], i["target"], i["outcome"]) for i in dry] == [
        ("archive", str(aged), "planned")
    ]
    assert aged.exists()
    done = cage("gc", "--json")
    assert done.code == 0, done.output
    assert [(i["kind"], i["session"], i["outcome"]) for i in done.json()["items"]] == [
        ("archive", old, "removed")
    ]
    assert not aged.exists()
    assert [a["name"] for a in archives(cage)] == [new]


def test_a_damaged_archive_is_one_line_not_a_traceback(cage: Cage) -> None:
    history = cage.data_dir / "history"
    history.mkdir(parents=True)
    (history / "ghost@20261206T000000000000Z.tar.gz").write_bytes(b"not gzip at all")
    shown = cage("logs", "ghost")
    assert shown.code == 1 and "is damaged" in shown.stderr, shown.output
    assert "Traceback" not in shown.output


def write_turn(cage: Cage, name: str, text: str) -> None:
    turn = {"type": "user", "timestamp": "2026-12-06T10:00:00Z", "message": {"content": text}}
    line = json.dumps(turn).replace("'", "'\\''")
    write = f"mkdir -p $(dirname {TRANSCRIPT}) && printf '%s\\n' '{line}' >> {TRANSCRIPT}"
    assert sh(cage, name, write).code == 0


def read_back(cage: Cage, name: str, text: str) -> None:
    """`history` lists it, and `logs` reads its archive, marked destroyed."""
    assert name in [a["name"] for a in archives(cage)]
    shown = cage("logs", name)
    assert shown.code == 0, shown.output
    assert text in shown.stdout and f"session {name} was destroyed at" in shown.stderr


def test_an_ephemeral_session_removed_by_stop_or_gc_is_archived(cage: Cage) -> None:
    stopped, collected, purged = cage.name("eph"), cage.name("ephgc"), cage.name("ephp")
    for name in (stopped, collected, purged):
        started = cage("start", "--name", name, "--detach", "--network", "none", "--ephemeral")
        assert started.code == 0, started.output
        write_turn(cage, name, f"said in {name}")

    gone = cage("stop", stopped, "--json")  # removed as it stops: archived first
    assert gone.code == 0, gone.output
    assert gone.json()["removed"] == [stopped] and stopped in gone.json()["archives"]
    read_back(cage, stopped, f"said in {stopped}")

    # one whose container stopped by itself: gc removes it, archived first
    subprocess.run(["docker", "stop", "-t", "1", f"cage-{collected}"], check=True,
                   capture_output=True, timeout=60)  # fmt: skip
    done = cage("gc", "--json")
    assert done.code == 0, done.output
    items = done.json()["items"]
    assert ("archive", collected, "archived") in [(i["kind"], i["session"], i["outcome"])
                                                  for i in items]  # fmt: skip
    read_back(cage, collected, f"said in {collected}")
    assert cage("gc", "--yes").code == 0  # its record goes now, and no second archive
    assert [a["name"] for a in archives(cage)].count(collected) == 1

    assert cage("stop", purged, "--purge").code == 0
    assert purged not in [a["name"] for a in archives(cage)]
