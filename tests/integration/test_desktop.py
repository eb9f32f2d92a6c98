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
import tempfile
import time
import urllib.parse
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REQUIRE_ENGINE, Cage, inspect
from tests.integration.conftest import TestHost, http_get

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
    page.goto(launcher.as_uri())  # what `claude-cage open` hands the browser
    page.wait_for_selector("html.noVNC_connected", state="attached", timeout=20_000)
    deadline, stats = time.monotonic() + 30, {}
    while time.monotonic() < deadline:  # until the desktop has been drawn
        shot = page.screenshot()
        stats = colour_stats(shot)
        if stats["bg"] > 0.3 and stats["fg"] > 0.001:
            break
        time.sleep(0.5)
    (OUTPUT / "desktop-logged-in.png").write_bytes(shot)
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
    assert (after["password"], after["token"]) == (before["password"], before["token"])
    assert http_get(after["url"]) == 200

    assert cage("destroy", name, "--force").code == 0
    assert cage("status", name).code == 3
    assert not (cage.data_dir / "sessions" / name).exists()


def _port_open(session: dict[str, Any]) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", session["desktop_port"])) == 0
