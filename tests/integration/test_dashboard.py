"""The dashboard as a person uses it, in Debian's Chromium driven by Playwright: open
with the token and see the sessions; without the token, or under another host name (a
DNS-rebinding page), refused; a blocked request appearing live on the session's page,
allowed with its button, and the session's retry getting through; the review page
merging a clone's work into its repository, and a destroy that would lose work asking
first. Screenshots of each
page go to test-output/ (ignored by git, kept by CI)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cage
from tests.integration.conftest import TestHost
from tests.integration.model import ModelServer, agent_script
from tests.integration.test_agent import project  # noqa: F401 (a fixture)
from tests.integration.test_desktop import CHROMIUM, CHROMIUM_ARGS, OUTPUT, missing
from tests.integration.workspace_helpers import git
from tests.polling import wait_until

pytestmark = pytest.mark.engine

TRANSCRIPT = "/home/claude/.claude/projects/-workspace/ui.jsonl"


def http_code(cage: Cage, name: str, url: str) -> str:
    script = f"curl -s -o /dev/null -m 10 -w '%{{http_code}}' {url}"
    return cage("exec", name, "--", "bash", "-c", script, timeout=60).stdout.strip()


@pytest.fixture
def dashboard(cage: Cage) -> Iterator[str]:
    """`ui --detach`'s URL (the token in it); `ui --stop` after."""
    started = cage("ui", "--detach", "--no-open")
    assert started.code == 0, started.output
    try:
        yield started.stdout.strip()
    finally:
        assert cage("ui", "--stop").code == 0


@pytest.fixture
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("the playwright package (pip install playwright)")
    if not Path(CHROMIUM).exists():
        missing(f"{CHROMIUM} (apt-get install chromium)")
    OUTPUT.mkdir(exist_ok=True)
    # rebind.test resolves to 127.0.0.1, as an attacker's name would after rebinding
    args = [*CHROMIUM_ARGS, "--host-resolver-rules=MAP rebind.test 127.0.0.1"]
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=args,
            viewport={"width": 1200, "height": 800},
        )  # fmt: skip
        try:
            yield context
        finally:
            context.close()


def test_the_token_opens_the_sessions_page_and_nothing_else_does(
    cage: Cage, dashboard: str, browser: Any
) -> None:
    name = cage.name("ui")
    assert cage("start", "--name", name, "--detach", "--network", "none").code == 0
    base = dashboard.split("?")[0]
    page = browser.new_page()
    page.goto(dashboard)
    assert page.url == base  # the token left the address bar (kept in the tab)
    page.wait_for_selector(f'#sessions tr[data-name="{name}"] .running')
    page.wait_for_selector(f'#sessions tr[data-name="{name}"] .mem >> text=MiB')
    page.screenshot(path=str(OUTPUT / "dashboard-sessions.png"))
    page.goto(f"{base}#/session/{name}")
    page.wait_for_selector("#checks tr")
    # the transcript follows live, as `logs -f` does
    turn = json.dumps(
        {"type": "user", "timestamp": "2026-12-06T10:00:00Z", "message": {"content": "live one"}}
    )
    write = f"mkdir -p $(dirname {TRANSCRIPT}) && printf '%s\\n' '{turn}' >> {TRANSCRIPT}"
    assert cage("exec", name, "--", "sh", "-c", write).code == 0
    page.wait_for_selector("#transcript >> text=live one", timeout=10_000)
    page.screenshot(path=str(OUTPUT / "dashboard-session.png"))
    page.goto(f"{base}#/events?session={name}")
    page.wait_for_selector(f"#events >> text=start:{name}")
    page.screenshot(path=str(OUTPUT / "dashboard-events.png"))

    token = dashboard.split("?token=")[1]
    stranger = browser.new_page()  # a tab of its own: no token in its sessionStorage
    answer = stranger.goto(base)  # the page's shell, and nothing of any session
    assert answer.status == 200
    stranger.wait_for_selector("#flash >> text=no valid token")
    answer = stranger.goto(base + "api/sessions?token=" + token[:-2] + "xx")
    assert answer.status == 403
    port = base.split(":")[2].strip("/")
    rebound = stranger.goto(f"http://rebind.test:{port}/?token={token}")
    assert rebound.status == 403 and "wrong Host" in stranger.content()
    assert name not in stranger.content()


def test_a_blocked_request_shows_live_and_allow_lets_the_retry_through(
    cage: Cage, dashboard: str, browser: Any, test_hosts: dict[str, TestHost]
) -> None:
    name = cage.name("uiallow")
    started = cage("start", "--name", name, "--detach", "--allow-host", "allowed.test")
    assert started.code == 0, started.output
    page = browser.new_page()
    page.goto(dashboard)
    page.goto(f"{dashboard.split('?')[0]}#/session/{name}")
    page.wait_for_selector("#egress")
    page.wait_for_timeout(500)  # the stream is open
    marker = uuid.uuid4().hex[:8]
    asked = time.monotonic()
    assert http_code(cage, name, f"http://denied.test/{marker}") == "403"
    row = page.wait_for_selector('#egress tr.blocked[data-host="denied.test"]', timeout=10_000)
    shown_after = time.monotonic() - asked  # includes the exec's own start-up
    page.screenshot(path=str(OUTPUT / "dashboard-egress-blocked.png"))
    row.query_selector("button.allow").click()
    page.wait_for_selector("#flash >> text=allowed")
    assert "denied.test" in cage("status", name, "--json").json()["session"]["allowed_hosts"]
    assert http_code(cage, name, f"http://denied.test/{marker}") == "200"
    page.wait_for_selector('#egress tr:not(.blocked)[data-host="denied.test"]', timeout=10_000)
    page.screenshot(path=str(OUTPUT / "dashboard-egress-allowed.png"))
    events = cage("events", "--session", name, "--type", "session", "--json").json()["events"]
    assert any(e["key"] == f"allow:{name}" for e in events)  # the same operation as `allow`
    assert shown_after < 10


def test_review_merges_and_destroy_asks_before_losing_work(
    cage: Cage, dashboard: str, browser: Any, tmp_path: Path
) -> None:
    repo = tmp_path / "proj"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README").write_text("start\n")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=u", "-c", "user.email=u@example.invalid", "commit", "-qm", "one")
    name = cage.name("uirev")
    started = cage("start", "--name", name, "-d", "--network", "none", "--clone", str(repo))
    assert started.code == 0, started.output
    work = "echo from-the-agent > notes.txt && git add notes.txt && git commit -qm notes"
    assert cage("exec", name, "--", "sh", "-c", work).code == 0
    base = dashboard.split("?")[0]
    page = browser.new_page()
    page.goto(dashboard)

    # destroy asks first: the clone holds a commit that is not in cage/NAME
    assert cage("stop", name).code == 0
    page.goto(f"{base}#/session/{name}")
    page.wait_for_selector("#status.stopped")
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.click("text=destroy")
    page.wait_for_selector("#flash.error")
    page.evaluate("document.getElementById('flash').textContent = ''")
    assert asked and "not in cage/" in asked[0], asked
    assert cage("status", name, "--json").code == 0  # still there

    # the review page shows the diff by file and merges it into the repository
    page.goto(f"{base}#/review/{name}")
    page.wait_for_selector("#diff summary >> text=notes.txt")
    page.screenshot(path=str(OUTPUT / "dashboard-review.png"))
    page.click("button >> text=merge")
    page.wait_for_selector("#flash >> text=merged into")
    assert (repo / "notes.txt").read_text() == "from-the-agent\n"
    assert git(repo, "log", "-1", "--format=%s").strip() == "notes"

    # the work is in cage/NAME now: destroy goes through without asking
    page.goto(f"{base}#/session/{name}")
    page.wait_for_selector("#status.stopped")
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.click("text=destroy")
    page.wait_for_selector("#flash:not(:empty)")
    assert "destroyed" in page.text_content("#flash"), page.text_content("#flash")
    assert len(asked) == 1
    assert cage("status", name).code != 0
    # the flight recorder kept it: the sessions page lists it as destroyed
    page.goto(f"{base}#/")
    page.wait_for_selector(f'#sessions tr[data-name="{name}"] .destroyed')


@pytest.mark.slow
def test_a_desktop_sessions_page_embeds_its_desktop_logged_in(
    cage: Cage, dashboard: str, browser: Any
) -> None:
    name = cage.name("uidesk")
    started = cage("start", "--mode", "desktop", "--name", name, "--detach", "--network", "none")
    assert started.code == 0, started.output
    page = browser.new_page()
    page.goto(dashboard)
    page.goto(f"{dashboard.split('?')[0]}#/session/{name}")
    frame_element = page.wait_for_selector("iframe[title=desktop]", timeout=20_000)
    frame = frame_element.content_frame()
    assert frame is not None
    frame.wait_for_selector("html.noVNC_connected", state="attached", timeout=30_000)
    page.screenshot(path=str(OUTPUT / "dashboard-desktop.png"))


@pytest.mark.slow
def test_the_transcript_follows_a_real_claude_code_run(
    cage: Cage,
    dashboard: str,
    browser: Any,
    model_server: ModelServer,
    project: Path,  # noqa: F811
) -> None:
    key = f"sk-ant-test-{uuid.uuid4().hex}"
    name = cage.name("uiagent")
    env = {"ANTHROPIC_API_KEY": key, **model_server.session_env()}
    started = cage("start", "--name", name, "--detach", "--mount", str(project), env=env)
    assert started.code == 0, started.output
    page = browser.new_page()
    page.goto(dashboard)
    page.goto(f"{dashboard.split('?')[0]}#/session/{name}")
    page.wait_for_selector("#checks tr")
    model_server.reset()
    model_server.set_script(agent_script(f"/workspace/{project.name}", "x.invalid"), final="Done.")
    run = cage(
        "exec", name, "--", "claude", "-p", "Update the notes.",
        "--dangerously-skip-permissions", timeout=240,
    )  # fmt: skip
    assert run.code == 0, run.output
    for text in ("Update the notes.", "tool    Write(", "tool    Bash(", "claude  Done."):
        page.wait_for_selector(f"#transcript >> text={text}", timeout=10_000)
    assert key not in page.content()
    page.screenshot(path=str(OUTPUT / "dashboard-transcript.png"))


def open_stream(base: str, token: str, path: str) -> socket.socket:
    """An event stream as a page holds it, read until the server's first comment."""
    host = base.split("//")[1].strip("/")
    port = int(host.split(":")[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: token {token}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    seen = b""
    while b": open" not in seen:
        chunk = sock.recv(4096)
        assert chunk, seen
        seen += chunk
    return sock


def test_closed_streams_leave_no_thread_behind(cage: Cage, dashboard: str) -> None:
    """A page that opens live views and goes (closed tab, reload) leaves nothing behind:
    each stream's threads end, also one following a quiet proxy's log, which sends
    nothing that would make a write fail."""
    name = cage.name("uithreads")
    started = cage("start", "--name", name, "--detach")  # filtered: a companion to follow
    assert started.code == 0, started.output
    # The session stopped by hand, its companion left running: a proxy log that stays
    # quiet (Claude Code's own requests would wake a stream that was left behind).
    subprocess.run(["docker", "stop", "-t", "1", f"cage-{name}"], check=True,
                   capture_output=True, timeout=60)  # fmt: skip
    pid = json.loads((cage.data_dir / "ui.json").read_text())["pid"]

    def threads() -> int:
        return len(os.listdir(f"/proc/{pid}/task"))

    base, token = dashboard.split("?token=")
    baseline = threads()
    paths = [f"/api/stream/{kind}?name={name}" for kind in ("egress", "transcript")]
    paths.append(f"/api/stream/events?session={name}")
    streams = [open_stream(base, token, path) for path in paths * 4]
    wait_until(lambda: threads() >= baseline + len(streams), 10, "the streams' threads")
    for stream in streams:
        stream.close()
    wait_until(lambda: threads() <= baseline, 15, f"threads back to {baseline}")
