"""The dashboard (`claude-cage ui`): what a person waits for on the page.

- sessions page at 50 sessions: the page (GET /) and its data (GET /api/sessions) over
  HTTP, as the browser loads them, against `list --json` at the same count and the
  server's floor (GET of a static file), in the same rotated repetitions. Target: under
  300 ms.
- event to page: a blocked request's time in the proxy's log line to its arrival on an
  open egress stream (`/api/stream/egress`), for a filtered session. Target: under 1 s.
- `--help` is not slowed by the dashboard: no module of it is imported (`-X importtime`),
  and `--help` against `python3 -c pass`, as `coldstart` measures it.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import threading
import time
import urllib.request
from datetime import datetime

from harness import Ratio, Row, SectionResult, paired, paired_ratios, timed
from harness import run as command

NAME = "dashboard"
TITLE = "dashboard: sessions page, event to page, --help"
PAGE_TARGET = 0.300
EVENT_TARGET = 1.0


def _get(url: str, token: str) -> bytes:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.read()


def _timed_get(*urls: str, token: str) -> float:
    began = time.perf_counter()
    for url in urls:
        _get(url, token)
    return time.perf_counter() - began


def _stream(url: str, token: str, arrivals: list[tuple[float, dict]], stop: threading.Event):
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        for raw in answer:
            if stop.is_set():
                return
            line = raw.decode().strip()
            if line.startswith("data: "):
                arrivals.append((time.time(), json.loads(line[6:])))


def run(ctx) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    env = ctx.ws.cage_env("dashboard")
    count = 50
    for _ in range(count):
        ctx.start(env, ctx.ws.session_name("d"), "--network", "none", "--no-persist")
    filtered = ctx.ws.session_name("dflt")
    ctx.start(env, filtered, "--no-persist")
    url = command([ctx.cage, "ui", "--detach", "--no-open"], env).strip()
    base, token = url.split("/?token=")
    try:
        samples = paired(
            {
                "sessions page (GET / + /api/sessions)": lambda: _timed_get(
                    base + "/", base + "/api/sessions", token=token
                ),
                "list --json": lambda: timed([ctx.cage, "list", "--json"], env),
                "static file (server floor)": lambda: _timed_get(
                    base + "/static/app.css", token=token
                ),
            },
            ctx.reps,
        )
        for label, values in samples.items():
            result.rows.append(Row(NAME, f"{label} @ {count + 1}", values))
        page = samples["sessions page (GET / + /api/sessions)"]
        result.ratios.append(
            Ratio(NAME, "sessions page", "list --json", paired_ratios(page, samples["list --json"]))
        )
        met = "met" if statistics.median(page) < PAGE_TARGET else "MISSED"
        result.notes.append(
            f"sessions page at {count + 1} sessions: median {statistics.median(page) * 1000:.0f}"
            f" ms, target {PAGE_TARGET * 1000:.0f} ms {met}."
        )

        latencies = []
        for rep in range(ctx.reps):
            arrivals: list[tuple[float, dict]] = []
            stop = threading.Event()
            reader = threading.Thread(
                target=_stream,
                args=(f"{base}/api/stream/egress?name={filtered}", token, arrivals, stop),
                daemon=True,
            )
            reader.start()
            deadline = time.monotonic() + 10
            while not arrivals and time.monotonic() < deadline:
                time.sleep(0.01)  # the backlog frame: the stream is open
            host = f"b{rep}-{ctx.ws.unique()}.invalid"
            subprocess.run(
                [ctx.cage, "exec", filtered, "--", "curl", "-s", "-m", "5", f"http://{host}/"],
                env=env, capture_output=True, timeout=60,
            )  # fmt: skip
            deadline = time.monotonic() + 10
            seen = None
            while seen is None and time.monotonic() < deadline:
                for when, frame in list(arrivals):
                    for request in frame.get("requests") or []:
                        if request.get("host") == host:
                            logged = datetime.fromisoformat(request["time"].replace("Z", "+00:00"))
                            seen = when - logged.timestamp()
                time.sleep(0.005)
            stop.set()
            if seen is not None:
                latencies.append(seen)
        if latencies:
            result.rows.append(Row(NAME, "blocked request: proxy log -> open page", latencies))
            met = "met" if statistics.median(latencies) < EVENT_TARGET else "MISSED"
            result.notes.append(
                f"event to page: median {statistics.median(latencies) * 1000:.0f} ms over "
                f"{len(latencies)} of {ctx.reps}, target {EVENT_TARGET * 1000:.0f} ms {met} "
                "(from the time in squid's log line, written when the request ends)."
            )
    finally:
        command([ctx.cage, "ui", "--stop"], env)

    imported = subprocess.run(
        [ctx.python, "-X", "importtime", "-m", "claude_cage", "--help"],
        env=env, capture_output=True, text=True, check=True,
    ).stderr  # fmt: skip
    leaked = [line for line in imported.splitlines() if "claude_cage.dashboard" in line]
    result.notes.append(
        f"`--help` imports {len(leaked)} dashboard module(s) (python -X importtime)."
    )
    helps = paired(
        {
            "claude-cage --help": lambda: timed([ctx.cage, "--help"], env),
            "python3 -c pass": lambda: timed([ctx.python, "-c", "pass"]),
        },
        ctx.reps,
    )
    for label, values in helps.items():
        result.rows.append(Row(NAME, label, values))
    result.ratios.append(
        Ratio(
            NAME,
            "claude-cage --help",
            "python3 -c pass",
            paired_ratios(helps["claude-cage --help"], helps["python3 -c pass"]),
            1.5,
        )
    )
    return result
