"""review_max_size and review_timeout: the count, the deadline, the stops it calls."""

from __future__ import annotations

import threading

import pytest

from claude_cage import config
from claude_cage.bounds import Bounds, ReviewLimit


def test_defaults_serve_real_repositories() -> None:
    bounds = Bounds.from_config("web", config.DEFAULTS)
    assert (bounds.max_size, bounds.timeout) == (2 * 1024**3, 600)


def test_past_the_size_cap_it_stops_with_one_line() -> None:
    with Bounds("web", 100, 60) as bounds:
        bounds.count(100)
        with pytest.raises(ReviewLimit) as caught:
            bounds.count(1)
    assert caught.value.exit_code == 1
    assert "more than 100 bytes (review_max_size)" in str(caught.value)
    assert "\n" not in str(caught.value) and "CAGE_REVIEW_MAX_SIZE" in (caught.value.hint or "")


def test_at_the_deadline_every_registered_stop_runs() -> None:
    stopped = threading.Event()
    with Bounds("web", 100, 0.05) as bounds, bounds.stopping(stopped.set):
        assert stopped.wait(5)
        with pytest.raises(ReviewLimit, match=r"after 0.05 s \(review_timeout\)"):
            bounds.check()


def test_a_stop_registered_late_runs_at_once_and_none_after_its_block() -> None:
    calls: list[str] = []
    with Bounds("web", 100, 0.01) as bounds:
        with bounds.stopping(lambda: calls.append("early")):
            threading.Event().wait(0.2)
        with bounds.stopping(lambda: calls.append("late")):
            pass
    assert calls == ["early", "late"]


@pytest.mark.parametrize(("key", "value"), [("review_max_size", "0"), ("review_timeout", 0)])
def test_bounds_cannot_be_switched_off(key: str, value: object) -> None:
    with pytest.raises(ValueError):
        config.VALIDATORS[key](value)
