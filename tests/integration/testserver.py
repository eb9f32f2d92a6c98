"""A small HTTP server for the tests' own hosts (run with python3 inside a container).

It records every request it receives (method, path, headers), answers
GET /_received with that record, GET /_status/N with status N, and streams server-sent events for
POST /v1/messages: five chunks, 0.3 s apart, like a model streaming its answer.
"""

import http.server
import json
import sys
import time

RECEIVED: list[dict] = []


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _record(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        RECEIVED.append(
            {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode(errors="replace"),
            }
        )

    def do_GET(self) -> None:
        if self.path == "/_received":
            self._send(200, json.dumps(RECEIVED).encode())
            return
        self._record()
        if self.path.startswith("/_status/"):  # GET /_status/502: answer with that status
            self._send(int(self.path.split("/")[2]), b"{}")
            return
        self._send(200, json.dumps({"server": sys.argv[1], "path": self.path}).encode())

    def do_POST(self) -> None:
        self._record()
        if not self.path.startswith("/v1/messages"):
            self._send(200, b"{}")
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for i in range(5):
            data = f'event: delta\ndata: {{"n": {i}, "t": {time.time():.3f}}}\n\n'.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
            time.sleep(0.3)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


if __name__ == "__main__":
    http.server.ThreadingHTTPServer(("0.0.0.0", 80), Handler).serve_forever()
