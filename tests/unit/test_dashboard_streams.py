"""The frames of the dashboard's live views have the shape its page reads (app.js)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from claude_cage.cancel import Cancel
from claude_cage.dashboard.app import Dashboard
from claude_cage.dashboard.guard import Guard

EVENT = {"type": "session", "key": "start:web", "value": {"status": "ok"}}


class Log:
    def follow(self, **query: Any) -> Any:
        assert query["session"] == "web" and query["stop"] is not None
        yield dict(EVENT)


def test_an_event_frame_carries_the_event_under_its_key() -> None:
    ctx = SimpleNamespace(events=Log())
    frames = Dashboard(Guard(48124)).events_stream(ctx, {"session": ["web"]}, Cancel())  # type: ignore[arg-type]
    # eventsPage() reads d.error, else d.event: a bare event would show nothing.
    assert list(frames) == [{"event": EVENT}]
