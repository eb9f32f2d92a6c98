"""Desktop mode without an engine: URLs, secrets, port choice, the bind warning."""

from __future__ import annotations

import socket
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from claude_cage import config as config_mod
from claude_cage import paths
from claude_cage.context import Context
from claude_cage.engine.answers import Container
from claude_cage.errors import BadInput, CageError
from claude_cage.metadata import SessionStore
from claude_cage.operations import desktop
from tests.unit.fake_engine import UnusedEngine, container


def complete(name: str) -> dict[str, str]:
    """The keys every record has."""
    return {
        "name": name,
        "status": "stopped",
        "created": "2026-01-01T00:00:00Z",
        "container": f"cage-{name}",
    }


class ListingEngine(UnusedEngine):
    """Only what port choice asks of the engine: the container list."""

    def __init__(self, containers: list[Container] | None = None) -> None:
        self.containers = containers or []

    def list_containers(self, labels: list[str] | None = None) -> list[Container]:
        return self.containers


def published(session: str, port: int) -> Container:
    owner = paths.owner_id()
    found = {
        "managed-by": "claude-cage",  # the engine lists only these
        "cage.session": session,
        "cage.role": "companion",
        "cage.owner": owner,
    }
    return container(f"companion-cage-{session}", labels=found, public_ports=(port,))


@pytest.fixture
def store(tmp_path: Path) -> SessionStore:
    return SessionStore(tmp_path / "sessions")


@pytest.fixture
def free_base() -> int:
    """A port with the next few free on 127.0.0.1 (asked of the kernel, then released)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base < 65000 and all(desktop._bindable("127.0.0.1", base + i) for i in range(6)):
            return base
    pytest.skip("no run of free ports found")


def cfg(**values: Any) -> config_mod.Config:
    config = config_mod.Config()
    config.apply(values, "test")
    config.raise_problems()
    return config


def test_password_is_exactly_what_vnc_compares() -> None:
    passwords = {desktop.new_password() for _ in range(200)}
    assert {len(p) for p in passwords} == {8}
    assert len(passwords) == 200


def test_secrets_ride_in_the_fragment_only() -> None:
    url = desktop.connect_url("127.0.0.1", 6081, "tok-en_1", "pass-wd_")
    page, _, fragment = url.partition("#")
    assert page == "http://127.0.0.1:6081/vnc.html"
    params = dict(urllib.parse.parse_qsl(fragment))
    assert params["password"] == "pass-wd_"
    assert params["path"] == "websockify?token=tok-en_1"
    assert params["autoconnect"] == "1"
    assert "password" not in desktop.connect_url("127.0.0.1", 6081, "t")


def test_urls_for_ipv6_and_wildcard_binds() -> None:
    assert desktop.url_for("::1", 6080) == "http://[::1]:6080/vnc.html"
    # a wildcard bind is opened on loopback (browsers refuse 0.0.0.0)
    assert desktop.url_for("0.0.0.0", 6080) == "http://127.0.0.1:6080/vnc.html"
    assert desktop.url_for("::", 6080) == "http://[::1]:6080/vnc.html"


def test_the_logged_in_url_is_at_the_sessions_own_bind(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`open` and the dashboard's desktop view open the address the session's port is
    published on (its recorded desktop_bind), not always 127.0.0.1."""
    monkeypatch.setenv("CAGE_DATA_DIR", str(tmp_path / "data"))
    local = SessionStore()
    desk = {**complete("desk"), "mode": "desktop", "desktop_port": 6090}
    local.write("desk", {**desk, "desktop_bind": "127.0.0.2"})
    local.write_secret("desk", desktop.PASSWORD_SECRET, "abcdefgh")
    local.write_secret("desk", desktop.TOKEN_SECRET, "tok")
    url = desktop.session_url(Context(), "desk")
    assert url.startswith("http://127.0.0.2:6090/vnc.html#") and "password=abcdefgh" in url


def test_port_skips_recorded_published_and_bound(store: SessionStore, free_base: int) -> None:
    store.write("stopped", {**complete("stopped"), "mode": "desktop", "desktop_port": free_base})
    engine = ListingEngine([published("other", free_base + 1)])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", free_base + 2))
        busy.listen(1)
        port = desktop.pick_port(engine, cfg(desktop_port=free_base), store, "new")
    assert port == free_base + 3


def test_port_reuses_the_sessions_own_record(store: SessionStore, free_base: int) -> None:
    store.write("mine", {**complete("mine"), "mode": "desktop", "desktop_port": free_base + 4})
    engine = ListingEngine([published("mine", free_base + 4)])  # its own old companion
    port = desktop.pick_port(engine, cfg(desktop_port=free_base), store, "mine", free_base + 4)
    assert port == free_base + 4


def test_no_free_port_says_what_to_do(store: SessionStore, free_base: int) -> None:
    engine = ListingEngine([published(f"s{i}", free_base + i) for i in range(100)])
    with pytest.raises(CageError) as error:
        desktop.pick_port(engine, cfg(desktop_port=free_base), store, "new")
    assert "no free port" in error.value.message and error.value.hint


def test_non_loopback_bind_warns(store: SessionStore, free_base: int) -> None:
    quiet = desktop.prepare(ListingEngine(), cfg(desktop_port=free_base), store, "a", None)
    assert quiet.warnings == []
    loud = desktop.prepare(
        ListingEngine(),
        cfg(desktop_port=free_base, desktop_bind="0.0.0.0"),
        store,
        "b",
        None,
    )
    assert any("8 characters" in w and "0.0.0.0" in w for w in loud.warnings)


def test_a_restart_makes_new_secrets(store: SessionStore, free_base: int) -> None:
    """An old tab's secrets (its URL, noVNC's local storage) open nothing after a restart,
    so a local user who takes over a stopped session's port gains nothing from them."""
    store.write("s", {**complete("s"), "mode": "desktop", "desktop_port": free_base})
    store.write_secret("s", desktop.PASSWORD_SECRET, "abcdefgh")
    store.write_secret("s", desktop.TOKEN_SECRET, "the-token")
    plan = desktop.prepare(ListingEngine(), cfg(desktop_port=free_base), store, "s", free_base)
    assert plan.port == free_base
    assert plan.password != "abcdefgh" and len(plan.password) == 8
    assert plan.token != "the-token" and len(plan.token) >= 20


def test_credentials_only_for_desktop_sessions(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CAGE_DATA_DIR", str(tmp_path / "data"))
    local = SessionStore()
    local.write("term", {**complete("term"), "mode": "cli"})
    with pytest.raises(BadInput):
        desktop.credentials(Context(), "term")
    local.write("desk", {**complete("desk"), "mode": "desktop", "desktop_port": 6080})
    local.write_secret("desk", desktop.PASSWORD_SECRET, "abcdefgh")
    local.write_secret("desk", desktop.TOKEN_SECRET, "tok")
    assert desktop.credentials(Context(), "desk") == {"password": "abcdefgh", "token": "tok"}
    assert (local.dir("desk") / desktop.PASSWORD_SECRET).stat().st_mode & 0o777 == 0o600


def test_restart_moves_off_a_port_taken_meanwhile(store: SessionStore, free_base: int) -> None:
    store.write("s", {**complete("s"), "mode": "desktop", "desktop_port": free_base})
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", free_base))
        busy.listen(1)
        plan = desktop.prepare(ListingEngine(), cfg(desktop_port=free_base), store, "s", free_base)
    assert plan.port == free_base + 1
    assert any("was taken" in w for w in plan.warnings)


# --- a desktop that does not come up, and the socket directory's owner -------------------


class ExecEngine(UnusedEngine):
    """Answers the execs of a desktop start: the handovers work, wait-ready fails."""

    def __init__(self, said: bytes) -> None:
        self.said = said

    def exec_run(
        self,
        name: str,
        cmd: list[str],
        stdin: bytes | None = None,
        user: str | None = None,
        limit: int | None = None,
    ) -> tuple[int, bytes]:
        return (1, self.said) if cmd[-1] == "wait-ready" else (0, b"")


def test_a_desktop_that_does_not_come_up_says_why_and_not_to_read_its_logs(
    store: SessionStore,
) -> None:
    """A new session whose desktop fails is removed again: no `logs NAME` in the hint."""
    said = b"x11vnc cannot listen: /sock/in is not writable by uid 1234\n"
    plan = desktop.DesktopPlan(bind="127.0.0.1", port=6080, password="p", token="t")
    with pytest.raises(CageError) as raised:
        desktop.finish(ExecEngine(said), store, "demo", plan)
    assert raised.value.message == (
        "the desktop did not start: x11vnc cannot listen: /sock/in is not writable by uid 1234"
    )
    assert "logs" not in (raised.value.hint or "")
    assert "claude-cage build all" in (raised.value.hint or "")


class FillEngine(UnusedEngine):
    """Records what a fill makes: the container and the archive it uploads."""

    def __init__(self) -> None:
        self.created: list[Any] = []
        self.archives: list[tuple[str, bytes]] = []

    def remove(self, name: str) -> bool:
        return True

    def create(self, spec: Any) -> str:
        self.created.append(spec)
        return spec.name

    def put_archive(self, name: str, path: str, archive: Any) -> None:
        self.archives.append((path, b"".join(archive)))


@pytest.mark.parametrize(
    ("mode", "ports", "uid", "fills"),
    [
        ("desktop", [], 1234, True),
        ("cli", [(8080, 3000)], 1234, True),
        ("cli", [], 1234, False),  # nothing of the session's listens in in/
        ("desktop", [], 1000, False),  # the image's owner already
    ],
)
def test_the_socket_inbox_belongs_to_the_sessions_user(
    mode: str, ports: list[tuple[int, int]], uid: int, fills: bool
) -> None:
    import io
    import tarfile

    from claude_cage import policy
    from claude_cage.kinds import Mode
    from claude_cage.operations import clone

    req = policy.SessionRequest(
        name="demo", owner="0123456789ab", mode=Mode(mode), ports=tuple(ports)
    )
    engine = FillEngine()
    clone.own_socket_inbox(engine, req, policy.Decisions(uid=uid, gid=uid + 1))
    if not fills:
        assert engine.created == [] and engine.archives == []
        return
    (spec,) = engine.created
    assert spec.volumes == [{"source": "cage-sock-demo", "target": "/fill/sock"}]
    ((path, data),) = engine.archives
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        (entry,) = archive.getmembers()
    assert (path, entry.name, entry.isdir()) == ("/fill/sock", "in", True)
    assert (entry.uid, entry.gid, entry.mode) == (uid, uid + 1, 0o755)
