"""`events export`: the event log (and, on request, the transcript turns) for a SIEM or
a tracing backend, as JSON lines or as OpenTelemetry log records in OTLP JSON.

Records come from the event log, from a destroyed session's archive (history.py) for
what the log no longer holds, and, with `transcripts`, from each session's transcript,
live or archived. Every value goes through `redaction.redact` once more on the way out.

OTLP: one `ExportLogsServiceRequest` in the JSON mapping of the OpenTelemetry protocol
(opentelemetry-proto's `logs.proto`): resourceLogs -> scopeLogs -> logRecords, the
record's value as the body (a kvlist), the session, type, key and id as attributes;
`tests/integration/test_history.py` parses it with the protobuf schema itself.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from claude_cage import __version__
from claude_cage.errors import SessionNotFound
from claude_cage.eventlog.redaction import redact
from claude_cage.operations import history, logs

if TYPE_CHECKING:
    from claude_cage.context import Context

SERVICE = "claude-cage"
INFO, WARN, ERROR = (9, "INFO"), (13, "WARN"), (17, "ERROR")  # OTLP severity numbers


@dataclass(frozen=True)
class Record:
    """One exported line: an event (`kind` "event") or a transcript turn ("transcript")."""

    kind: str
    time: str  # ISO 8601 UTC ("" when the source gave none)
    session: str | None
    type: str
    key: str
    id: str
    value: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "time": self.time,
            "session": self.session,
            "type": self.type,
            "key": self.key,
            "id": self.id,
            "value": self.value,
        }


def _session_of(key: str) -> str | None:
    _kind, _, name = key.partition(":")
    return name if name and name != "-" else None


def _event(event: dict[str, Any], session: str | None) -> Record:
    value = event.get("value")
    return Record(
        "event",
        str(event.get("_ts") or ""),
        session or _session_of(str(event.get("key", ""))),
        str(event.get("type", "")),
        str(event.get("key", "")),
        str(event.get("id", "")),
        redact(value) if isinstance(value, dict) else {"value": redact(value)},
    )


def _after(time: str, since: datetime | None) -> bool:
    if since is None:
        return True
    when = parse_time(time)
    return when is not None and when >= since


def parse_time(text: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _transcript_records(ctx: Context, name: str) -> list[Record]:
    try:
        batches = logs.read_transcript(ctx, name).batches
        found = [event for batch in batches for event in batch]
    except SessionNotFound:
        return []
    return [
        Record(
            "transcript",
            event.timestamp,
            name,
            "transcript",
            f"{event.data.get('type', '')}:{name}",
            str(event.data.get("uuid") or f"{event.source}#{event.order}"),
            redact(event.data),
        )
        for event in found
    ]


def collect(
    ctx: Context,
    session: str | None = None,
    since: datetime | None = None,
    transcripts: bool = False,
) -> list[Record]:
    """The records to export, in time order."""
    records = [_event(e, session) for e in ctx.events.query(session=session, since=since)]
    seen = {r.id for r in records}
    archives = history.entries(session)
    store = ctx.store
    if session is not None and not archives and not records and store.load(session) is None:
        raise SessionNotFound(session)
    for archived in archives:  # what the event log pruned since the session was destroyed
        with contextlib.suppress(history.DamagedArchive):
            for event in history.read(archived, frozenset({"events"})).events:
                record = _event(event, archived.name)
                if record.id not in seen and _after(record.time, since):
                    seen.add(record.id)
                    records.append(record)
    if transcripts:
        named = [session] if session else sorted(set(store.names()) | {a.name for a in archives})
        for name in named:
            records += [r for r in _transcript_records(ctx, name) if _after(r.time, since)]
    return sorted(records, key=lambda r: parse_time(r.time) or datetime.min.replace(tzinfo=UTC))


# --- OTLP JSON ------------------------------------------------------------------------


def any_value(value: Any) -> dict[str, Any]:
    """A JSON value as an OTLP AnyValue (64-bit integers are strings in OTLP JSON)."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": [_kv(str(k), v) for k, v in value.items()]}}
    if isinstance(value, list | tuple):
        return {"arrayValue": {"values": [any_value(v) for v in value]}}
    return {}  # null: an empty AnyValue


def _kv(key: str, value: Any) -> dict[str, Any]:
    return {"key": key, "value": any_value(value)}


def _nanos(time: str) -> str:
    """Nanoseconds since the epoch, a fixed64; "0" (unknown) for a time it cannot hold.
    A transcript's times are the session's to write: one before 1970 or past 2554 would
    make the whole request out of range for an OTLP collector, every record with it."""
    when = parse_time(time)
    nanos = int(when.timestamp() * 1_000_000) * 1000 if when else 0
    return str(nanos) if 0 <= nanos < 2**64 else "0"


def _severity(record: Record) -> tuple[int, str]:
    if record.value.get("status") == "error":
        return ERROR
    if record.type == "egress":
        return WARN
    return INFO


def _log_record(record: Record, observed: str) -> dict[str, Any]:
    number, text = _severity(record)
    attributes = [
        _kv("cage.record.kind", record.kind),
        _kv("cage.event.type", record.type),
        _kv("cage.event.key", record.key),
        _kv("cage.event.id", record.id),
    ]
    if record.session:
        attributes.insert(0, _kv("cage.session", record.session))
    return {
        "timeUnixNano": _nanos(record.time),
        "observedTimeUnixNano": observed,
        "severityNumber": number,
        "severityText": text,
        "eventName": f"claude_cage.{record.kind}.{record.type}",
        "body": any_value(record.value),
        "attributes": attributes,
    }


def to_otlp(records: list[Record]) -> dict[str, Any]:
    """The records as one OTLP/JSON ExportLogsServiceRequest."""
    observed = str(int(datetime.now(UTC).timestamp() * 1_000_000) * 1000)
    host = ""
    with contextlib.suppress(OSError):
        host = socket.gethostname()
    return {
        "resourceLogs": [
            {
                "resource": {"attributes": [_kv("service.name", SERVICE), _kv("host.name", host)]},
                "scopeLogs": [
                    {
                        "scope": {"name": "claude_cage", "version": __version__},
                        "logRecords": [_log_record(r, observed) for r in records],
                    }
                ],
            }
        ]
    }
