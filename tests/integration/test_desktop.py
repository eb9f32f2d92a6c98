"""Desktop mode: a real headless Chromium logs in through noVNC and sees the terminal;
nothing without the secrets gets in; the session is as closed as a CLI session.

Screenshots go to test-output/ (ignored by git, kept by CI as artifacts).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REQUIRE_ENGINE, Cage, inspect
from tests.integration.conftest import TestHost, http_get
from tests.integration.model import ModelServer
from tests.integration.terminal import DETACH, Terminal, plain
from tests.polling import wait_until

pytestmark = [pytest.mark.engine, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUTPUT = Path(__file__).resolve().parents[2] / "test-output"
TERMINAL_BG = (0x1E, 0x1E, 0x2E)  # the xterm background the desktop image sets
TERMINAL_FG = (0xE6, 0xE6, 0xE6)


# --- helpers --------------------------------------------------------------------------


def start_desktop(cage: Cage, name: str, *args: str) -> dict[str, Any]:
    """Start a desktop session; return `status --json --show-password`'s session."""
    started = cage("start", "--mode", "desktop", "--name", name, "--detach", *args)
    assert started.code == 0, started.output
    return secrets_of(cage, name)


def secrets_of(cage: Cage, name: str) -> dict[str, Any]:
    shown = cage("status", name, "--json", "--show-password")
    assert shown.code == 0, shown.output
    return shown.json()["session"]


def connect_url(session: dict[str, Any], token: str | None, password: str | None) -> str:
    params = {"autoconnect": "1", "resize": "scale", "reconnect": "false"}
    params["path"] = f"websockify?token={token}" if token else "websockify"
    if password is not None:
        params["password"] = password
    return f"{session['url']}#{urllib.parse.urlencode(params)}"


def png_pixels(data: bytes) -> tuple[int, int, list[bytes], int]:
    """Decode an 8-bit, non-interlaced RGB(A) PNG: (width, height, rows, bytes/pixel)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", (0, 0, 0, 0, 0)
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBB2xB", body)
        elif kind == b"IDAT":
            idat += body
    width, height, depth, color, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0, header
    bpp = 3 if color == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif kind == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev, strict=True))
        elif kind == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif kind == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, rows, bpp


def show_desktop(page: Any, launcher: Path, shot: str) -> dict[str, float]:
    """The page `claude-cage open` hands the browser, loaded in `page` and connected,
    then screenshotted into OUTPUT/shot once the desktop is drawn (a terminal with
    text) or after 30 s: the screenshot's colour_stats."""
    page.goto(launcher.as_uri())
    page.wait_for_selector("html.noVNC_connected", state="attached", timeout=20_000)
    deadline = time.monotonic() + 30
    while True:
        image = page.screenshot()
        stats = colour_stats(image)
        if (stats["bg"] > 0.3 and stats["fg"] > 0.001) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    (OUTPUT / shot).write_bytes(image)
    return stats


def colour_stats(png: bytes) -> dict[str, float]:
    """Distinct colours, and the share of pixels near the terminal's two colours."""
    width, height, rows, bpp = png_pixels(png)
    colours: set[tuple[int, ...]] = set()
    near_bg = near_fg = 0
    for row in rows:
        for x in range(0, width * bpp, bpp):
            pixel = (row[x], row[x + 1], row[x + 2])
            colours.add(pixel)
            if max(abs(p - q) for p, q in zip(pixel, TERMINAL_BG, strict=True)) <= 8:
                near_bg += 1
            elif min(pixel) >= 200:
                near_fg += 1
    total = width * height
    return {"colours": len(colours), "bg": near_bg / total, "fg": near_fg / total}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright, with a fresh profile."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("the playwright package (pip install playwright)")
    if not Path(CHROMIUM).exists():
        missing(f"{CHROMIUM} (apt-get install chromium)")
    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 960, "height": 600},
        )
        try:
            yield context
        finally:
            context.close()


def missing(what: str) -> None:
    if REQUIRE_ENGINE:
        pytest.fail(f"{what} is needed for the desktop tests")
    pytest.skip(f"{what} is not installed")


def is_connected(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.classList.contains('noVNC_connected')"))


class WebSocket:
    """Just enough of a websocket client (RFC 6455) to speak RFB through websockify."""

    def __init__(self, port: int, path: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            byte = self.sock.recv(1)
            if not byte:
                break
            head += byte
        self.status = int(head.split()[1]) if head.startswith(b"HTTP/") else 0
        self.data = b""

    def _exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise EOFError("connection closed")
            out += chunk
        return out

    def send(self, payload: bytes) -> None:
        mask = os.urandom(4)
        size = len(payload)
        header = bytes([0x82, 0x80 | size]) if size < 126 else bytes([0x82, 0xFE])
        header += struct.pack(">H", size) if size >= 126 else b""
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def recv(self, n: int) -> bytes:
        """n bytes of binary payload; EOFError when the server closes first."""
        while len(self.data) < n:
            first, second = self._exact(2)
            size = second & 0x7F
            if size == 126:
                size = struct.unpack(">H", self._exact(2))[0]
            elif size == 127:
                size = struct.unpack(">Q", self._exact(8))[0]
            payload = self._exact(size)
            if first & 0x0F == 0x8:
                raise EOFError(f"closed by the server: {payload[2:].decode(errors='replace')}")
            if first & 0x0F in (0x0, 0x1, 0x2):
                self.data += payload
        out, self.data = self.data[:n], self.data[n:]
        return out

    def close(self) -> None:
        self.sock.close()


def rfb_security_types(port: int, token: str) -> tuple[WebSocket, list[int]]:
    ws = WebSocket(port, f"/websockify?token={token}")
    assert ws.status == 101
    assert ws.recv(12) == b"RFB 003.008\n"
    ws.send(b"RFB 003.008\n")
    count = ws.recv(1)[0]
    return ws, list(ws.recv(count))


def sh(cage: Cage, name: str, script: str) -> str:
    result = cage("exec", name, "--", "bash", "-c", script, timeout=60)
    return result.stdout + result.stderr


# --- one shared filtered desktop session for the read-only tests ----------------------


@pytest.fixture(scope="module")
def desktop(cage_module: Cage) -> dict[str, Any]:
    return start_desktop(cage_module, cage_module.name("desk"), "--allow-host", "allowed.test")


def test_browser_logs_in_and_shows_the_terminal(
    cage_module: Cage, desktop: dict[str, Any], browser: Any
) -> None:
    name, password, token = desktop["name"], desktop["password"], desktop["token"]
    opened = cage_module("open", name, "--no-browser")
    assert opened.code == 0, opened.output
    assert password not in opened.output  # the printed URL has the token only
    launcher = cage_module.data_dir / "sessions" / name / "open.html"
    assert launcher.stat().st_mode & 0o777 == 0o600
    handed = cage_module("open", name, env={"BROWSER": "/bin/echo"})  # echo shows its argv
    assert handed.code == 0, handed.output
    assert launcher.as_uri() in handed.stdout  # the browser gets the page's path, no secret
    assert password not in handed.output and token not in handed.output

    page = browser.new_page()
    stats = show_desktop(page, launcher, "desktop-logged-in.png")
    assert is_connected(page)
    assert stats["colours"] >= 32, stats  # not blank
    assert stats["bg"] > 0.3, stats  # the terminal fills the screen
    assert stats["fg"] > 0.001, stats  # ... and shows text
    page.close()

    # Neither secret is anywhere but its own 0600 files: not in inspect, logs, metadata.
    for container in (f"cage-{name}", f"companion-cage-{name}"):
        inspected = subprocess.run(["docker", "inspect", container], capture_output=True).stdout
        logs = subprocess.run(["docker", "logs", container], capture_output=True)
        for secret in (password, token):
            assert secret.encode() not in inspected
            assert secret.encode() not in logs.stdout + logs.stderr
    for path in cage_module.data_dir.rglob("*"):
        if path.is_file() and path.name not in ("vnc_password", "vnc_token", "open.html"):
            assert password.encode() not in path.read_bytes(), path
            assert token.encode() not in path.read_bytes(), path


@pytest.mark.parametrize(
    "case",
    ["no-password", "wrong-password", "no-token", "wrong-token"],
)
def test_browser_without_the_secrets_is_refused(
    desktop: dict[str, Any], browser: Any, case: str
) -> None:
    token, password = desktop["token"], desktop["password"]
    url = {
        "no-password": connect_url(desktop, token, None),
        "wrong-password": connect_url(desktop, token, "wrong-pw"),
        "no-token": connect_url(desktop, None, password),
        "wrong-token": connect_url(desktop, "x" + token[1:], password),
    }[case]
    page = browser.new_page()
    page.goto(url)
    if case == "no-password":  # noVNC asks for the password
        page.wait_for_selector("#noVNC_credentials_dlg.noVNC_open", timeout=20_000)
        status = ""
    else:  # refused by x11vnc, or by websockify before x11vnc is reached
        page.wait_for_selector("#noVNC_status.noVNC_status_error", timeout=20_000)
        status = page.inner_text("#noVNC_status")
    page.screenshot(path=str(OUTPUT / f"desktop-refused-{case}.png"), animations="disabled")
    if case != "no-password":
        expected = "rejected" if case == "wrong-password" else "Failed to connect"
        assert expected in status, status
    assert not is_connected(page)
    page.close()


def test_vnc_handshake_needs_token_and_password(desktop: dict[str, Any]) -> None:
    port, token = desktop["desktop_port"], desktop["token"]
    for path in ("/websockify", "/websockify?token=wrong"):  # no VNC server reached at all
        ws = WebSocket(port, path)
        with pytest.raises(EOFError):
            ws.recv(12)
        ws.close()

    ws, types = rfb_security_types(port, token)
    assert types == [2]  # VNC authentication is the only security type offered
    ws.send(bytes([2]))
    assert len(ws.recv(16)) == 16  # the DES challenge
    ws.send(bytes(16))  # a response made without the password
    assert struct.unpack(">I", ws.recv(4))[0] == 1  # SecurityResult: failed
    ws.close()

    ws, types = rfb_security_types(port, token)
    ws.send(bytes([1]))  # asks for "None", which is not on offer
    try:
        result = struct.unpack(">I", ws.recv(4))[0]
    except EOFError:
        result = None
    assert result != 0
    ws.close()


def test_published_port_is_on_loopback_only(cage_module: Cage, desktop: dict[str, Any]) -> None:
    label = f"label=cage.session={desktop['name']}"
    ids = subprocess.run(
        [
            "docker",
            "ps",
            "-q",
            "--filter",
            label,
            "--filter",
            f"label=cage.owner={cage_module.owner()}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(ids) == 2  # the session and its companion
    published = []
    for container in ids:
        info = inspect(container)
        for source in (info["HostConfig"]["PortBindings"], info["NetworkSettings"]["Ports"]):
            for bindings in (source or {}).values():
                for binding in bindings or []:
                    published.append((info["Name"], binding["HostIp"], binding["HostPort"]))
    assert published, "noVNC is published"
    assert {ip for _, ip, _ in published} == {"127.0.0.1"}, published
    assert {port for _, _, port in published} == {str(desktop["desktop_port"])}
    assert {name for name, _, _ in published} == {f"/companion-cage-{desktop['name']}"}


def test_desktop_session_passes_the_sandbox_checks(
    cage_module: Cage, desktop: dict[str, Any]
) -> None:
    deadline = time.monotonic() + 30
    while True:
        session = cage_module("status", desktop["name"], "--json").json()["session"]
        if session["health"] == "healthy" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert session["health"] == "healthy"
    assert session["sandbox"]["ok"], json.dumps(session["sandbox"], indent=1)
    assert "password" not in session and "token" not in session
    human = cage_module("status", desktop["name"])
    assert "health       healthy" in human.stdout
    assert desktop["password"] not in human.output
    tables = sh(cage_module, desktop["name"], "cat /proc/net/tcp /proc/net/tcp6")
    listening = {
        int(fields[1].rsplit(":", 1)[1], 16)
        for fields in (line.split() for line in tables.splitlines())
        if len(fields) > 3 and fields[3] == "0A"
    }
    assert listening == {3128}, listening  # the proxy bridge; no X (6000+) and no VNC port


def test_filtered_desktop_reaches_only_allowlisted_hosts(
    cage_module: Cage, desktop: dict[str, Any], test_hosts: dict[str, TestHost]
) -> None:
    name = desktop["name"]
    codes = sh(
        cage_module,
        name,
        "for h in allowed.test denied.test; do "
        "curl -s -o /dev/null -m 10 -w '%{http_code} ' http://$h/; done",
    )
    assert codes.split() == ["200", "403"], codes
    direct = sh(
        cage_module,
        name,
        f"timeout 5 bash -c 'echo > /dev/tcp/{test_hosts['allowed.test'].ip}/80' 2>&1; echo rc=$?",
    )
    assert "rc=0" not in direct and no_route(direct), direct


def no_route(output: str) -> bool:
    """A connection failed for want of a route (gVisor's kernel says "No route to host")."""
    return "unreachable" in output or "No route to host" in output


# --- tests with sessions of their own -------------------------------------------------


def test_none_desktop_has_no_way_out(cage: Cage) -> None:
    name = cage.name("none")
    start_desktop(cage, name, "--network", "none")
    out = sh(
        cage,
        name,
        "env | grep -ci proxy; echo /sock/out/*; "
        "curl -s -m 5 -x http://127.0.0.1:3128 http://denied.test/; echo curl=$?; "
        "timeout 5 bash -c 'echo > /dev/tcp/172.17.0.1/80' 2>&1; echo tcp=$?",
    )
    lines = out.splitlines()
    assert lines[0] == "0", out  # no proxy variables
    assert "proxy.sock" not in out  # no proxy socket
    assert "curl=7" in out  # nothing listens on the proxy port
    assert no_route(out) and "tcp=0" not in out


def test_two_desktop_sessions_get_their_own_port_and_password(cage: Cage) -> None:
    first = start_desktop(cage, cage.name("one"), "--network", "none")
    second = start_desktop(cage, cage.name("two"), "--network", "none")
    assert first["desktop_port"] != second["desktop_port"]
    assert first["password"] != second["password"]
    assert first["token"] != second["token"]
    assert len(first["password"]) == 8  # all VNC authentication uses
    for session in (first, second):
        assert http_get(session["url"]) == 200
    listed = {s["name"]: s["url"] for s in cage("list", "--json").json()["sessions"]}
    assert listed == {first["name"]: first["url"], second["name"]: second["url"]}


def test_shell_exec_logs_stop_start_destroy(cage: Cage) -> None:
    name = cage.name("life")
    before = start_desktop(cage, name, "--network", "none")
    assert cage("exec", name, "--", "sh", "-c", "echo hi from $(id -u)").stdout == "hi from 1000\n"
    shell = cage("shell", name, input="echo shell ok; exit 3\n")
    assert "shell ok" in shell.stdout and shell.code == 3
    assert cage("logs", name, "--tail", "5").code == 0
    assert cage("stop", name).code == 0
    for container in (f"cage-{name}", f"companion-cage-{name}"):
        assert inspect(container)["State"]["Running"] is False
    assert not _port_open(before)  # noVNC went with the companion

    restarted = cage("start", "--name", name, "--detach")
    assert restarted.code == 0, restarted.output
    after = secrets_of(cage, name)
    assert after["desktop_port"] == before["desktop_port"]
    # new secrets at every start: an old tab's open nothing
    assert after["password"] != before["password"] and after["token"] != before["token"]
    assert http_get(after["url"]) == 200

    assert cage("destroy", name, "--force").code == 0
    assert cage("status", name).code == 3
    assert not (cage.data_dir / "sessions" / name).exists()


def _port_open(session: dict[str, Any]) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", session["desktop_port"])) == 0


# --- the desktop's terminal: attach joins it, glyphs, the noVNC handle, last words ------

KEY = "sk-ant-test-0123456789abcdef0123"
TMUX = ["tmux", "-S", "/run/cage/tmux.sock"]


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    wait_until(check, timeout, what, 0.3)


def in_session(cage: Cage, name: str, *command: str) -> str:
    """A command's output in the session, as the session's user (or '' when it fails)."""
    result = cage("exec", name, "--", *command, timeout=60)
    return result.stdout.strip() if result.code == 0 else ""


def tmux_clients(cage: Cage, name: str) -> int:
    return len(in_session(cage, name, *TMUX, "list-clients").splitlines())


@pytest.fixture(scope="module")
def agent_desktop(cage_module: Cage, model_server: ModelServer) -> dict[str, Any]:
    """A desktop session whose Claude Code reaches a model (the test server), so it keeps
    running on its first screen, shown by the desktop's terminal."""
    env = {"ANTHROPIC_API_KEY": KEY, **model_server.session_env()}
    name = cage_module.name("agentdesk")
    started = cage_module("start", "--mode", "desktop", "--name", name, "--detach", env=env)
    assert started.code == 0, started.output
    wait_for(lambda: tmux_clients(cage_module, name) == 1, "the desktop's terminal attached")
    wait_for(lambda: bool(in_session(cage_module, name, "pgrep", "-x", "claude")), "Claude Code")
    return secrets_of(cage_module, name)


def connected_page(browser: Any, session: dict[str, Any], width: int = 0) -> Any:
    """A page logged in to the desktop as `claude-cage open` logs in (the screen scaled
    to the window), once noVNC's control bar has settled."""
    page = browser.new_page()
    if width:
        page.set_viewport_size({"width": width, "height": 800})
    params = {"autoconnect": "1", "resize": "scale", "reconnect": "false"}
    params.update(path=f"websockify?token={session['token']}", password=session["password"])
    page.goto(f"{session['url']}#{urllib.parse.urlencode(params)}")
    page.wait_for_selector("html.noVNC_connected", state="attached", timeout=20_000)
    # noVNC closes its control bar 2 s after connecting, in a 0.5 s slide.
    page.wait_for_selector("#noVNC_control_bar:not(.noVNC_open)", state="attached")
    time.sleep(1)
    return page


def framebuffer(page: Any) -> tuple[int, int, list[bytes], int]:
    """The remote screen's pixels, exactly as x11vnc sent them (noVNC's canvas)."""
    url = page.evaluate("document.querySelector('#noVNC_container canvas').toDataURL()")
    return png_pixels(base64.b64decode(url.split(",", 1)[1]))


def test_attach_joins_the_claude_code_the_desktop_shows(
    cage_module: Cage, agent_desktop: dict[str, Any]
) -> None:
    """`attach NAME`, and plain `attach` (the desktop is the newest session), join the
    Claude Code in the desktop's terminal through tmux: both are attached at once, the
    detach key lets the terminal go, and nothing is left waiting in the session."""
    name = agent_desktop["name"]
    claude = in_session(cage_module, name, "pgrep", "-x", "claude")
    for argv in (["attach", name], ["attach"]):
        terminal = Terminal([sys.executable, "-m", "claude_cage", *argv], cage_module.env)
        try:
            terminal.expect("Choose the text style", timeout=60)  # Claude Code's screen
            assert tmux_clients(cage_module, name) == 2  # the desktop's terminal and this one
            assert in_session(cage_module, name, "cage-agent", "clients") == "1"
            mark = terminal.type(DETACH)
            assert terminal.wait(30) == 0
            assert "detached: Claude Code keeps working" in plain(terminal.output[mark:])
        finally:
            terminal.close()
        assert tmux_clients(cage_module, name) == 1  # the desktop's terminal stays
        processes = in_session(cage_module, name, "ps", "-eo", "args")
        assert "cage-agent start" not in processes and "flock" not in processes, processes
    assert in_session(cage_module, name, "pgrep", "-x", "claude") == claude  # the same one


def test_the_desktops_terminal_has_claude_codes_glyphs(
    cage_module: Cage, agent_desktop: dict[str, Any], browser: Any
) -> None:
    """⎿ (on every tool result) and ⏵ drawn in the desktop's terminal, beside U+E000, which
    no font has: each must look unlike the box drawn for a missing glyph."""
    name = agent_desktop["name"]
    line = "\u23bf \ue000 \u23f5 \ue000"
    shown = in_session(
        cage_module,
        name,
        *TMUX,
        "new-window",
        "-P",
        "-t",
        "agent:",
        f"printf '%s\\n' '{line}'; sleep 600",
    )
    assert shown, "a window for the glyphs"
    page = connected_page(browser, agent_desktop, width=1298)  # about 1:1, for a person
    try:
        cells: list[list[tuple[int, int]]] = []
        deadline = time.monotonic() + 60
        while len(cells) != 4 and time.monotonic() < deadline:
            page.screenshot(path=str(OUTPUT / "desktop-glyphs.png"))
            cells = first_line_glyphs(framebuffer(page))
            time.sleep(0.5)
    finally:
        page.close()
        in_session(cage_module, name, *TMUX, "kill-window", "-t", shown)
    assert len(cells) == 4, f"four glyphs on the first line, found {len(cells)}"
    corner, box, triangle, box_again = (normalised(c) for c in cells)
    assert box == box_again  # the missing glyph's box, the same each time
    for glyph, what in ((corner, "⎿"), (triangle, "⏵")):
        differ = len(glyph ^ box) / max(len(glyph | box), 1)
        assert differ > 0.3, f"{what} is drawn as the missing-glyph box ({differ:.2f})"


def first_line_glyphs(screen: tuple[int, int, list[bytes], int]) -> list[list[tuple[int, int]]]:
    """The foreground pixels of each glyph on the terminal's first text line, glyph by
    glyph (columns of pixels separated by background)."""
    width, height, rows, bpp = screen

    def distance(x: int, y: int) -> int:
        pixel = rows[y][x * bpp : x * bpp + 3]
        return max(abs(p - q) for p, q in zip(pixel, TERMINAL_BG, strict=True))

    def ink(x: int, y: int) -> bool:
        return distance(x, y) > 40

    def background(y: int) -> bool:
        return all(distance(x, y) <= 8 for x in range(width // 4, width // 2, 7))

    top = next(y for y in range(height) if background(y))  # below the window's title
    left = next(x for x in range(width) if not ink(x, top) and x > 2)
    band = []
    for y in range(top, min(top + 60, height)):
        has = any(ink(x, y) for x in range(left, left + 200))
        if has:
            band.append(y)
        elif band:
            break
    glyphs: list[list[tuple[int, int]]] = []
    gap = True
    for x in range(left, left + 200):
        column = [(x, y) for y in band if ink(x, y)]
        if column and gap:
            glyphs.append([])
        if column:
            glyphs[-1] += column
        gap = not column
    return glyphs


def normalised(pixels: list[tuple[int, int]]) -> frozenset[tuple[int, int]]:
    x0 = min(x for x, _ in pixels)
    y0 = min(y for _, y in pixels)
    return frozenset((x - x0, y - y0) for x, y in pixels)


def test_novncs_handle_leaves_the_terminals_first_column_free(
    desktop: dict[str, Any], browser: Any
) -> None:
    page = connected_page(browser, desktop)
    try:
        page.screenshot(path=str(OUTPUT / "desktop-handle.png"))
        found = page.evaluate(
            """() => {
                const handle = document.getElementById('noVNC_control_bar_handle')
                    .getBoundingClientRect();
                const canvas = document.querySelector('#noVNC_container canvas');
                const screen = canvas.getBoundingClientRect();
                const y = (handle.top + handle.bottom) / 2;
                return {handle: handle.right, screen: screen.left,
                        hit: document.elementFromPoint(screen.left + 1, y) === canvas};
            }"""
        )
    finally:
        page.close()
    assert found["handle"] <= found["screen"], found  # the handle is beside the screen
    assert found["hit"], found  # a click on the first column reaches the desktop


def test_a_claude_code_without_a_model_says_why_and_waits(cage: Cage, browser: Any) -> None:
    """No model: the desktop's terminal shows Claude Code's last words and does not start
    it again by itself; Enter, typed in the browser, does."""
    name = cage.name("nomodel")
    session = start_desktop(cage, name, "--network", "none")
    wait_for(
        lambda: in_session(cage, name, "cage-agent", "state").startswith("exited"),
        "Claude Code gave up on reaching a model",
        timeout=90,
    )
    page = connected_page(browser, session)
    try:
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:  # and no new one comes by itself
            assert not in_session(cage, name, "pgrep", "-x", "claude"), "started again"
            time.sleep(0.5)
        page.screenshot(path=str(OUTPUT / "desktop-last-words.png"))
        _width, _height, rows, bpp = framebuffer(page)
        text_rows = sum(
            1
            for y in range(60, 200)
            if any(min(rows[y][x * bpp : x * bpp + 3]) >= 200 for x in range(20, 600))
        )
        assert text_rows > 40, text_rows  # several lines of words, not a black screen
        said = in_session(cage, name, "cage-agent", "state")
        assert "Unable to connect" in said, said
        # A new Claude Code is a new pane process: one that fails again at once (no model)
        # may be gone before a pgrep would see it.
        pane = [*TMUX, "display-message", "-p", "-t", "agent:", "#{pane_pid}"]
        first = in_session(cage, name, *pane)
        assert first, "no agent pane"

        def started() -> bool:
            return in_session(cage, name, *pane) not in ("", first)

        page.click("#noVNC_container canvas")
        page.keyboard.press("Enter")
        try:
            wait_for(started, "a new Claude", timeout=20)
        except AssertionError:  # the key went before noVNC had the keyboard: again
            page.click("#noVNC_container canvas")
            page.keyboard.press("Enter")
            wait_for(started, "a new Claude")
    finally:
        page.close()


def test_desktop_and_port_for_a_mount_of_another_uid(cage: Cage, tmp_path: Path) -> None:
    """A session runs as the owner of its read-write mounts: x11vnc and the --port bridge
    listen in the socket volume's in/, which must then be that user's too."""
    project = tmp_path / "project"
    project.mkdir()
    os.chown(project, 1234, 1234)
    name, port = cage.name("uid"), free_port()
    session = start_desktop(
        cage, name, "--network", "none", "--mount", str(project), "--port", f"{port}:3000"
    )
    assert in_session(cage, name, "id", "-u") == "1234"
    ws, types = rfb_security_types(session["desktop_port"], session["token"])
    ws.close()
    assert types == [2]  # x11vnc answers through noVNC
    serve = "require('http').createServer((q,r)=>r.end('from 1234')).listen(3000,'127.0.0.1')"
    subprocess.run(["docker", "exec", "-d", f"cage-{name}", "node", "-e", serve], check=True)
    body, deadline = b"", time.monotonic() + 60  # node's start-up, when loaded
    while not body and time.monotonic() < deadline:
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
        except OSError:
            time.sleep(0.2)
    assert body == b"from 1234"
    checks = cage("status", name, "--json").json()["session"]["sandbox"]["checks"]
    bridges = {c["check"]: c["ok"] for c in checks if "bridge" in c["check"]}
    assert bridges == {"desktop bridge": True, "port 3000 bridge": True}, bridges


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
