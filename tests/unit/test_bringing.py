"""A start's bring-up when another start takes the desktop's port between the check and
the bind: it undoes what it made, picks another port, and tries again, three times."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from claude_cage import policy
from claude_cage.context import Context
from claude_cage.engine.answers import Container
from claude_cage.errors import PortAllocated
from claude_cage.kinds import Mode
from claude_cage.operations import bringup, clone, desktop
from claude_cage.operations.bringup import Bringing
from tests.unit.fake_engine import UnusedEngine


class Engine(UnusedEngine):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def list_containers(self, labels: list[str] | None = None) -> list[Container]:
        return []

    def remove(self, name: str) -> bool:
        self.calls.append(f"remove {name}")
        return True

    def stop(self, name: str, timeout: int = 10) -> None:
        self.calls.append(f"stop {name}")


def plan(port: int) -> desktop.DesktopPlan:
    return desktop.DesktopPlan(bind="127.0.0.1", port=port, password="p", token="t")


@pytest.fixture
def bringing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Bringing, list[int]]:
    """A desktop start whose bring-up fails on every port in `taken` (shared list)."""
    monkeypatch.setenv("CAGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CAGE_CONFIG_DIR", str(tmp_path / "config"))
    taken: list[int] = []
    ports = iter(range(6081, 6100))

    def bring_up(
        ctx: Context, engine: Any, cfg: Any, req: policy.SessionRequest, *args: Any
    ) -> None:
        created = args[3]
        created.append(f"container:companion-cage-{req.name}")
        if req.desktop_port in taken:
            raise PortAllocated("Bind for 127.0.0.1 failed: port is already allocated")

    monkeypatch.setattr(bringup, "bring_up", bring_up)
    monkeypatch.setattr(desktop, "prepare", lambda *args: plan(next(ports)))
    monkeypatch.setattr(desktop, "finish", lambda *args: None)
    req = policy.SessionRequest(name="demo", owner="0123456789ab", mode=Mode.DESKTOP)
    req.desktop_port = 6080
    ctx = Context(engine=Engine())
    made = Bringing(
        ctx,
        ctx.local_engine(),
        ctx.config,
        ctx.store,
        req,
        None,
        False,
        contextlib.ExitStack(),
        plan(6080),
    )
    monkeypatch.setattr(clone, "own_data_volume", lambda *args: None)
    return made, taken


def test_a_taken_port_is_undone_and_tried_again_on_another(
    bringing: tuple[Bringing, list[int]],
) -> None:
    made, taken = bringing
    taken.append(6080)
    created, used = made.up(None, [], None)
    assert used is not None and used.port == 6081 and made.req.desktop_port == 6081
    assert created == ["container:companion-cage-demo"]
    engine = made.engine
    assert isinstance(engine, Engine)
    assert engine.calls == ["remove companion-cage-demo"]  # the first attempt's, undone


def test_three_taken_ports_give_up_with_nothing_left(
    bringing: tuple[Bringing, list[int]],
) -> None:
    made, taken = bringing
    taken += [6080, 6081, 6082]
    with pytest.raises(PortAllocated):
        made.up(None, [], None)
    engine = made.engine
    assert isinstance(engine, Engine)
    assert engine.calls == ["remove companion-cage-demo"] * 3
