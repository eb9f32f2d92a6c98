"""A scripted model server: Anthropic's Messages API, driven by a script of turns.

Run with python3 (standard library only) inside a container on the egress network, under
the real API host name as a network alias:

    python3 model_server.py [--port 80] [--tls-port 443 --cert C --key K] [--script FILE]

What it answers:
- POST /v1/messages from Claude Code's agent loop (a request whose tools include Bash):
  turn N of the script, where N is the number of assistant messages already in the
  conversation, so a retried request gets the same turn again. After the last turn it
  answers with the script's `final` text and `end_turn`.
- POST /v1/messages from anything else (title generation has no tools; auto mode's
  classifier asks a smaller model for an answer starting with `<block>`): the script's
  `classifier` answer when the request mentions `<block>`, else its `title`.
- Streaming (`"stream": true`, server-sent events, as Claude Code asks) and plain JSON.
- POST /v1/messages/count_tokens: a token count. Anything else: a Messages API 404.

Test endpoints (on the same port):
- POST /_script  {"turns": [[block, ...], ...], "final": str, "classifier": str, "title": str}
  A block is {"type": "text", "text": ...} or {"type": "tool_use", "name": ..., "input": {...}}.
- GET /_received  every request so far: method, path, headers (lower-case), kind
  ("agent", "classifier", "other", "test"), turn, model, tool names, the tool results the
  request carried back, and its text.
- POST /_reset  forget the requests received.
"""

from __future__ import annotations

import argparse
import http.server
import json
import ssl
import threading
import uuid

SCRIPT: dict = {"turns": [], "final": "Done.", "classifier": "<block>no</block>", "title": "Test"}
RECEIVED: list[dict] = []
LOCK = threading.Lock()


def text_of(content: object) -> str:
    """The text in a message's content (a string, or a list of blocks)."""
    if isinstance(content, str):
        return content
    parts = []
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            parts.append(block.get("text", ""))
        elif block.get("type") == "tool_result":
            parts.append(text_of(block.get("content", "")))
    return "\n".join(parts)


def tool_results(messages: list) -> list[dict]:
    """The tool results in the last user message: what the tools did inside the session."""
    if not messages or messages[-1].get("role") != "user":
        return []
    content = messages[-1].get("content")
    return [
        {
            "tool_use_id": b.get("tool_use_id"),
            "is_error": bool(b.get("is_error")),
            "content": text_of(b.get("content", "")),
        }
        for b in (content if isinstance(content, list) else [])
        if isinstance(b, dict) and b.get("type") == "tool_result"
    ]


def classify(body: dict) -> tuple[str, int]:
    """(kind, turn) of a Messages request."""
    tools = [t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)]
    messages = body.get("messages") or []
    if "Bash" in tools:
        return "agent", sum(1 for m in messages if m.get("role") == "assistant")
    everything = json.dumps(body.get("system", "")) + json.dumps(messages)
    return ("classifier" if "<block>" in everything else "other"), -1


def answer(kind: str, turn: int) -> tuple[list[dict], str]:
    """The content blocks and stop reason for a request."""
    with LOCK:
        script = dict(SCRIPT)
    if kind == "agent" and turn < len(script["turns"]):
        blocks = []
        for i, block in enumerate(script["turns"][turn]):
            if block["type"] == "tool_use":
                block = {"id": f"toolu_{turn:02d}_{i}_{uuid.uuid4().hex[:8]}", **block}
            blocks.append(block)
        stop = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
        return blocks, stop
    text = {"agent": script["final"], "classifier": script["classifier"]}.get(kind, script["title"])
    return [{"type": "text", "text": text}], "end_turn"


def events(message: dict, blocks: list[dict], stop: str) -> list[tuple[str, dict]]:
    """The server-sent events of a streamed message, as the Messages API sends them."""
    out: list[tuple[str, dict]] = [("message_start", {"type": "message_start", "message": message})]
    out.append(("ping", {"type": "ping"}))
    for index, block in enumerate(blocks):
        if block["type"] == "text":
            start = {"type": "text", "text": ""}
            text = block["text"]
            deltas = [
                {"type": "text_delta", "text": text[i : i + 40]} for i in range(0, len(text), 40)
            ]
        else:
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            raw = json.dumps(block["input"])
            deltas = [
                {"type": "input_json_delta", "partial_json": raw[i : i + 40]}
                for i in range(0, len(raw), 40)
            ]
        out.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
        )
        for delta in deltas:
            out.append(
                (
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            )
        out.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    out.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": 20},
            },
        )
    )
    out.append(("message_stop", {"type": "message_stop"}))
    return out


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.send_header("request-id", f"req_{uuid.uuid4().hex}")
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> dict:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        return body if isinstance(body, dict) else {}

    def _record(self, body: dict, kind: str, turn: int = -1) -> None:
        messages = body.get("messages") or []
        entry = {
            "method": self.command,
            "path": self.path,
            "port": self.server.server_port,
            "tls": isinstance(self.connection, ssl.SSLSocket),
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "kind": kind,
            "turn": turn,
            "model": body.get("model"),
            "stream": bool(body.get("stream")),
            "tools": [t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)],
            "tool_results": tool_results(messages),
            "text": text_of(messages[-1].get("content")) if messages else "",
            # What the model is told: the system prompt, the subagents the Task (Agent)
            # tool offers, and the text of every message of the conversation so far.
            "system": text_of(body.get("system", "")),
            "agents": " ".join(
                str(t.get("description", ""))
                for t in body.get("tools") or []
                if isinstance(t, dict) and t.get("name") in ("Task", "Agent")
            ),
            "history": [text_of(m.get("content")) for m in messages if isinstance(m, dict)],
        }
        with LOCK:
            RECEIVED.append(entry)

    def do_GET(self) -> None:
        if self.path == "/_received":
            with LOCK:
                self._send(200, RECEIVED)
            return
        self._record({}, "other")
        self._send(
            404, {"type": "error", "error": {"type": "not_found_error", "message": "not found"}}
        )

    def do_HEAD(self) -> None:
        self._record({}, "other")
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        body = self._body()
        path = self.path.split("?", 1)[0]
        if path == "/_script":
            with LOCK:
                SCRIPT.update(body)
            self._send(200, {"ok": True})
        elif path == "/_reset":
            with LOCK:
                RECEIVED.clear()
            self._send(200, {"ok": True})
        elif path == "/v1/messages/count_tokens":
            self._record(body, "other")
            self._send(200, {"input_tokens": 100})
        elif path == "/v1/messages":
            kind, turn = classify(body)
            self._record(body, kind, turn)
            self._messages(body, kind, turn)
        else:
            self._record(body, "other")
            self._send(
                404, {"type": "error", "error": {"type": "not_found_error", "message": path}}
            )

    def _messages(self, body: dict, kind: str, turn: int) -> None:
        blocks, stop = answer(kind, turn)
        message = {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model") or "claude-test",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 100,
                "output_tokens": 1,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }
        if not body.get("stream"):
            self._send(200, {**message, "content": blocks, "stop_reason": stop})
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("request-id", f"req_{uuid.uuid4().hex}")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for name, data in events(message, blocks, stop):
            chunk = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def serve(port: int, context: ssl.SSLContext | None = None) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--tls-port", type=int, default=443)
    parser.add_argument("--cert", help="a PEM certificate for the API host name (enables TLS)")
    parser.add_argument("--key", help="its private key")
    parser.add_argument("--script", help="a JSON script file to start with")
    args = parser.parse_args()
    if args.script:
        with open(args.script) as f:
            SCRIPT.update(json.load(f))
    serve(args.port)
    if args.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
        serve(args.tls_port, context)
    threading.Event().wait()


if __name__ == "__main__":
    main()
