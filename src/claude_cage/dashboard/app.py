"""The dashboard's WSGI application: the guard first (guard.py), then one route.

Every route calls the operation the matching command calls, so the page can do nothing
the CLI would refuse, and refuses it the same way: a CageError is JSON with its message,
hint and exit code (`confirm: "discard"` when only `destroy --discard` would go on).
Live views are server-sent events: the transcript (as `logs -f`), the egress log (as
`egress -f`, read from the engine's log stream, so a blocked request shows as soon as
the proxy writes it) and the event log (as `events -f`).
"""

from __future__ import annotations

import json
import queue
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from claude_cage import names
from claude_cage.cancel import Cancel
from claude_cage.context import Context
from claude_cage.dashboard.guard import Guard
from claude_cage.errors import EXIT_BAD_INPUT, BadInput, CageError, NotFound
from claude_cage.operations import (
    desktop,
    egress,
    history,
    logs,
    review,
    teardown,
    views,
)
from claude_cage.operations import session as session_ops
from claude_cage.operations.inputs import StartOptions
from claude_cage.transcript import Renderer

STATIC = Path(__file__).parent / "static"
ASSETS = {"app.js": "text/javascript", "app.css": "text/css"}
HEARTBEAT = 15.0  # seconds between two comments on a quiet event stream
TICK = 0.5  # seconds between two looks at whether the page of an event stream is still there
CONNECTION = "cage.connection"  # the environ key of the client's socket (server.py)
StartResponse = Callable[..., Any]
Json = dict[str, Any]
Stream = Callable[[Context, dict[str, list[str]], Cancel], Iterator[Json]]


def _headers(kind: str, extra: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
    return [
        ("Content-Type", kind),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        *(extra or []),
    ]


class Dashboard:
    """The application: `Dashboard(guard)` is a WSGI callable."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self.gets: dict[str, Callable[[Context, dict[str, list[str]]], Json]] = {
            "/api/sessions": self.sessions,
            "/api/usage": self.usage,
            "/api/session": self.session,
            "/api/events": self.events,
            "/api/diff": self.diff,
            "/api/desktop": self.desktop,
        }
        self.streams: dict[
            str, Callable[[Context, dict[str, list[str]], Cancel], Iterator[Json]]
        ] = {
            "/api/stream/transcript": self.transcript_stream,
            "/api/stream/egress": self.egress_stream,
            "/api/stream/events": self.events_stream,
        }
        self.posts: dict[str, Callable[[Context, Json], Json]] = {
            "/api/allow": self.allow,
            "/api/action": self.action,
        }

    # -- WSGI

    def __call__(self, environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        verdict = self.guard.check(environ)
        if verdict.status:
            return self._json(start, {"error": verdict.reason}, verdict.status)
        path, method = environ.get("PATH_INFO", "/"), environ.get("REQUEST_METHOD", "GET")
        query = parse_qs(environ.get("QUERY_STRING", ""))
        ctx = Context()  # one a request, as one a command: engines, config, event log
        try:
            if method == "GET" and path == "/":
                return self._page(start)
            if method == "GET" and path.startswith("/static/"):
                return self._asset(start, path.removeprefix("/static/"))
            if method == "GET" and path in self.gets:
                return self._json(start, self.gets[path](ctx, query))
            if method == "GET" and path in self.streams:
                stop = Cancel()
                events = self.streams[path](ctx, query, stop)
                return self._sse(start, events, stop, environ.get(CONNECTION))
            if method == "POST" and path in self.posts:
                return self._json(start, self.posts[path](ctx, self._body(environ)))
        except CageError as exc:
            return self._error(start, exc)
        return self._json(start, {"error": f"no such page: {method} {path}"}, 404)

    def _page(self, start: StartResponse) -> list[bytes]:
        html = (STATIC / "index.html").read_text().replace("{{csrf}}", self.guard.csrf)
        csp = (
            "default-src 'self'; frame-src http://127.0.0.1:* http://localhost:*; "
            "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'"
        )
        start("200 OK", _headers("text/html; charset=utf-8", [("Content-Security-Policy", csp)]))
        return [html.encode()]

    def _asset(self, start: StartResponse, name: str) -> list[bytes]:
        if name not in ASSETS:
            return self._json(start, {"error": "no such file"}, 404)
        start("200 OK", _headers(ASSETS[name]))
        return [(STATIC / name).read_bytes()]

    def _json(self, start: StartResponse, body: Json, status: int = 200) -> list[bytes]:
        words = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
                 409: "Conflict"}  # fmt: skip
        start(f"{status} {words.get(status, 'Error')}", _headers("application/json"))
        return [json.dumps(body, default=str).encode()]

    def _error(self, start: StartResponse, exc: CageError) -> list[bytes]:
        body = {"error": exc.message, "hint": exc.hint, "exit_code": exc.exit_code}
        if exc.hint and "--discard" in exc.hint:
            body["confirm"] = "discard"
        status = (
            404 if isinstance(exc, NotFound) else 400 if exc.exit_code == EXIT_BAD_INPUT else 409
        )
        return self._json(start, body, status)

    def _body(self, environ: dict[str, Any]) -> Json:
        try:
            size = int(environ.get("CONTENT_LENGTH") or 0)
            data = json.loads(environ["wsgi.input"].read(min(size, 65536)) or b"{}")
        except (ValueError, OSError):
            raise CageError("the request is not JSON") from None
        if not isinstance(data, dict):
            raise CageError("the request is not a JSON object")
        return data

    def _sse(
        self,
        start: StartResponse,
        events: Iterator[Json],
        stop: Cancel,
        client: socket.socket | None,
    ) -> Iterator[bytes]:
        start("200 OK", _headers("text/event-stream", [("X-Accel-Buffering", "no")]))
        return _with_heartbeat(events, stop, client)

    # -- reading

    def sessions(self, ctx: Context, query: dict[str, list[str]]) -> Json:

        found = views.survey(ctx)
        live = {s["name"] for s in found.sessions}
        gone = {a.name: a for a in history.entries()}
        destroyed = [
            {"name": n, "status": "destroyed", "destroyed": a.as_dict()["destroyed"]}
            for n, a in sorted(gone.items())
            if n not in live
        ]
        return {"sessions": found.sessions, "engines": found.engines, "destroyed": destroyed}

    def usage(self, ctx: Context, query: dict[str, list[str]]) -> Json:

        wanted = query.get("name") or []
        return {"usage": {n: _quiet(views.usage, ctx, n) for n in wanted[:200]}}

    def session(self, ctx: Context, query: dict[str, list[str]]) -> Json:

        name = _name(query)
        try:
            return {"session": views.status(ctx, name)}
        except NotFound:
            archived = history.latest(name)
            if archived is None:
                raise
            manifest = history.read(archived, frozenset()).manifest
            return {"session": {**manifest, "name": name, "status": "destroyed"}}

    def events(self, ctx: Context, query: dict[str, list[str]]) -> Json:

        session, type_ = _opt(query, "session"), _opt(query, "type")
        return {"events": ctx.events.query(session=session, type=type_, limit=500)}

    def diff(self, ctx: Context, query: dict[str, list[str]]) -> Json:

        text = b"".join(review.diff(ctx, _name(query))).decode(errors="replace")
        files: list[tuple[str, list[str]]] = []
        for line in text.splitlines():
            if line.startswith("diff --git "):
                files.append((line.split(" b/", 1)[-1], []))
            if files:
                files[-1][1].append(line)
        return {"files": [{"path": path, "text": "\n".join(lines)} for path, lines in files]}

    def desktop(self, ctx: Context, query: dict[str, list[str]]) -> Json:
        name = _name(query)
        entry = views.status(ctx, name)
        if not entry.get("desktop_port") or entry["status"] != "running":
            return {"url": None}
        return {"url": desktop.session_url(ctx, name)}  # at the session's own bind

    # -- live

    def transcript_stream(
        self, ctx: Context, query: dict[str, list[str]], stop: Cancel
    ) -> Iterator[Json]:
        found = logs.read_transcript(ctx, _name(query), follow=True)
        renderer = Renderer(160)
        yield {"destroyed": found.destroyed}
        for batch in found.batches:  # one a second while following, empty or not
            if stop.is_set():
                return
            lines = list(renderer.lines(batch))
            if lines:
                yield {"lines": lines}
        yield {"end": True}

    def egress_stream(
        self, ctx: Context, query: dict[str, list[str]], stop: Cancel
    ) -> Iterator[Json]:
        name = _name(query)
        log = egress.read_log(ctx, name, tail=500)
        yield {"destroyed": log.destroyed, "requests": [r.to_json() for r in log.requests]}
        if log.destroyed:
            return
        for request in egress.follow_log(ctx, name, log.since, log.seen, stop):
            yield {"requests": [request.to_json()]}
        if not stop.is_set():
            yield {"end": True}

    def events_stream(
        self, ctx: Context, query: dict[str, list[str]], stop: Cancel
    ) -> Iterator[Json]:
        session, type_ = _opt(query, "session"), _opt(query, "type")
        for event in ctx.events.follow(session=session, type=type_, backlog=200, stop=stop):
            yield {"event": event}

    # -- changing

    def allow(self, ctx: Context, body: Json) -> Json:

        name, host = str(body.get("name", "")), str(body.get("host", ""))
        if host.startswith("*"):  # a row's host, as the session asked for it: never a pattern
            raise BadInput(
                f"{host!r} is a pattern, not the host of a request: allowing it would open "
                "every host under it",
                f"if that is meant: claude-cage allow {name} HOST",
            )
        port = body.get("port")
        ports = [int(port)] if body.get("result") == "blocked-port" and port else None
        result = egress.allow(ctx, name, [host], ports=ports)
        return {"result": f"{name}: allowed {', '.join(result.added) or host}", "live": result.live}

    def action(self, ctx: Context, body: Json) -> Json:

        name, what = str(body.get("name", "")), str(body.get("action", ""))
        if what == "stop":
            stopped = teardown.stop(ctx, name)
            state = "stopped" if stopped.was_running else "was already stopped"
            return {"result": f"session {name} {state}"}
        if what == "start":
            started = session_ops.start(ctx, StartOptions(name=name))
            return {"result": f"session {started.name} started"}
        if what == "destroy":
            gone = teardown.destroy(ctx, name, discard=bool(body.get("discard")))
            return {"result": f"session {name} destroyed", "archive": gone.archive}
        if what == "fetch":
            fetched = review.fetch(ctx, name)
            return {"result": f"{fetched.branch} is at {fetched.tip[:12]} in {fetched.repo}"}
        if what in ("merge", "apply"):
            done = review.merge(ctx, name) if what == "merge" else review.apply(ctx, name)
            verb = "merged into" if what == "merge" else "applied to"
            return {"result": f"{len(done.paths)} file(s) {verb} {done.repo}"}
        raise CageError(f"no such action: {what!r}", "stop, start, destroy, fetch, merge, apply")


def _name(query: dict[str, list[str]]) -> str:

    name = _opt(query, "name")
    if not name or not names.NAME_PATTERN.match(name):
        raise CageError("name a session: ?name=NAME")
    return name


def _opt(query: dict[str, list[str]], key: str) -> str | None:
    value = (query.get(key) or [""])[0]
    return value or None


def _quiet(work: Callable[[Context, str], Any], ctx: Context, name: str) -> Any:
    try:
        return work(ctx, name)
    except CageError:
        return None


def _client_gone(client: socket.socket | None) -> bool:
    """Whether the page closed its end: the socket reads as at its end (a look, nothing
    taken; the page sends nothing more on an event stream's connection)."""
    if client is None:
        return False
    try:
        readable, _, _ = select.select([client], [], [], 0)
        return bool(readable) and client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except (OSError, ValueError):
        return True


def _with_heartbeat(
    events: Iterator[Json], stop: Cancel, client: socket.socket | None
) -> Iterator[bytes]:
    """The events as SSE frames, read by a thread of their own, with a comment when
    none came for HEARTBEAT seconds. The stream ends when the page goes: its socket
    is looked at every TICK seconds, and a write that fails ends it too (the server
    closes this generator). Ending sets `stop`, which the sources watch (and which
    shuts the engine stream a source may be blocked in), so no thread outlives the page.
    A CageError ends the stream with an `error` frame."""
    box: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1000)

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                box.put(item, timeout=TICK)
                return True
            except queue.Full:
                continue
        return False

    def pump() -> None:
        try:
            for event in events:
                if stop.is_set() or not put(("data", event)):
                    return
        except CageError as exc:
            put(("data", {"error": exc.message, "hint": exc.hint}))
        except Exception as exc:
            put(("data", {"error": str(exc) or type(exc).__name__}))
        finally:
            events.close()  # type: ignore[attr-defined]
        put(("end", None))

    threading.Thread(target=pump, daemon=True, name="dashboard-stream").start()
    try:
        yield b": open\n\n"
        quiet = time.monotonic()
        while True:
            try:
                kind, event = box.get(timeout=TICK)
            except queue.Empty:
                if _client_gone(client):
                    return
                if time.monotonic() - quiet >= HEARTBEAT:
                    quiet = time.monotonic()
                    yield b": ping\n\n"
                continue
            if kind == "end":
                return
            quiet = time.monotonic()
            yield b"data: " + json.dumps(event, default=str).encode() + b"\n\n"
    finally:
        stop.set()
