"""A start's bring-up when another start takes the desktop's port between the check and
the bind: it undoes what it made, picks another port, and tries again, three times."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from claude_cage import metadata, policy
from claude_cage.context import Context
from claude_cage.engine.answers import Container
from claude_cage.errors import EngineStalled, PortAllocated
from claude_cage.kinds import Mode
from claude_cage.operations import bringup, clone, desktop
from claude_cage.operations.bringup import Bringing, Undo
from claude_cage.record import SessionRecord
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
        ctx: Context,
        engine: Any,
        cfg: Any,
        req: policy.SessionRequest,
        decided: policy.Decisions,
        *args: Any,
    ) -> None:
        undo = args[3]
        undo.made("container", f"companion-cage-{req.name}")
        if decided.desktop_port in taken:
            raise PortAllocated("Bind for 127.0.0.1 failed: port is already allocated")

    monkeypatch.setattr(bringup, "bring_up", bring_up)
    monkeypatch.setattr(desktop, "prepare", lambda *args: plan(next(ports)))
    monkeypatch.setattr(desktop, "finish", lambda *args: None)
    req = policy.SessionRequest(name="demo", owner="0123456789ab", mode=Mode.DESKTOP)
    ctx = Context(engine=Engine())
    made = Bringing(
        ctx,
        ctx.local_engine(),
        ctx.config,
        ctx.store,
        req,
        policy.Decisions(desktop_port=6080),
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
    engine = made.engine
    assert isinstance(engine, Engine)
    undo = Undo(engine)
    decided, used = made.up(undo, None, [], None)
    assert used is not None and used.port == 6081 and decided.desktop_port == 6081
    assert made.req.desktop_port is None  # the request stays as it was asked
    assert engine.calls == ["remove companion-cage-demo"]  # the first attempt's, undone
    # The start's one undo still holds what the last attempt made: a later failure of
    # the start takes it back too.
    undo.unwind()
    assert engine.calls == ["remove companion-cage-demo"] * 2


def test_three_taken_ports_give_up_with_nothing_left(
    bringing: tuple[Bringing, list[int]],
) -> None:
    made, taken = bringing
    taken += [6080, 6081, 6082]
    engine = made.engine
    assert isinstance(engine, Engine)
    with pytest.raises(PortAllocated), Undo(engine) as undo:
        made.up(undo, None, [], None)
    assert engine.calls == ["remove companion-cage-demo"] * 3


class Lost(Engine):
    """An engine that lets nothing go: the rollback cannot remove what was made."""

    def remove(self, name: str) -> bool:
        raise EngineStalled("the engine", 30, "engine_call_timeout")


def test_the_undo_takes_back_everything_newest_first_on_ctrl_c(tmp_path: Path) -> None:
    engine = Engine()
    forgotten: list[str] = []
    with pytest.raises(KeyboardInterrupt), Undo(engine) as undo:
        undo.callback(forgotten.append, "record")
        undo.made("container", "companion-cage-demo")
        undo.stopped("cage-demo")
        raise KeyboardInterrupt
    assert engine.calls == ["stop cage-demo", "remove companion-cage-demo"]
    assert forgotten == ["record"] and undo.left == []


def test_a_start_that_ends_well_keeps_everything() -> None:
    engine = Engine()
    with Undo(engine) as undo:
        undo.made("container", "cage-demo")
    undo.unwind()  # nothing is left to take back
    assert engine.calls == []


def test_what_the_engine_keeps_keeps_the_record(tmp_path: Path) -> None:
    """A container the engine does not let go keeps a new session's record, for
    destroy and gc; with nothing left, the record goes."""
    store = metadata.SessionStore(tmp_path)
    for engine, stays in ((Lost(), True), (Engine(), False)):
        store.save(SessionRecord(name="demo"))
        with pytest.raises(RuntimeError), Undo(engine) as undo:
            undo.callback(undo.forget_record, store, "demo")
            undo.made("container", "cage-demo")
            raise RuntimeError("the companion did not start")
        assert store.dir("demo").exists() == stays
        assert undo.left == (["container:cage-demo"] if stays else [])
