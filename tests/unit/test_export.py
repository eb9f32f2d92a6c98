"""`events export --format otlp`: what the session writes cannot spoil the request."""

from __future__ import annotations

import json

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from claude_cage.operations.export import Record, to_otlp


@pytest.mark.parametrize(
    "stamp", ["0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "9999-12-31T23:59:59Z", "junk"]
)
def test_a_transcript_time_out_of_range_does_not_spoil_the_request(stamp: str) -> None:
    """A transcript's timestamp is the session's to write: one before 1970 or past 2554
    once made timeUnixNano out of a fixed64's range, and a collector refused the whole
    request, the blocked requests in it too. It is 0 (unknown) now."""
    blocked = Record("event", "2026-12-06T10:00:00Z", "s", "egress", "blocked:s", "1", {})
    forged = Record("transcript", stamp, "s", "transcript", "user:s", "u", {"x": 1})
    parsed = json_format.Parse(json.dumps(to_otlp([forged, blocked])), ExportLogsServiceRequest())
    records = parsed.resource_logs[0].scope_logs[0].log_records
    assert [r.time_unix_nano for r in records] == [0, 1796551200000000000]
