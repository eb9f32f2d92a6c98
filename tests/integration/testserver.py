"""A small HTTP server for the tests' own hosts (run with python3 inside a container).

It records every request it receives (method, path, headers), answers
GET /_received with that record (on port 80 only), GET /_status/N with status N, and
streams server-sent events for POST /v1/messages: five chunks, 0.3 s apart, like a
model streaming its answer.
Under /git/ it is a git server over smart HTTP (`git http-backend`, where git is
installed): like GitHub, it answers 401 to a request without Authorization.
"""

import http.server
import json
import os
import ssl
import subprocess
import sys
import threading
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

    def _record(self) -> bytes:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        RECEIVED.append(
            {
                "method": self.command,
                "path": self.path,
                "port": self.server.server_port,
                "tls": isinstance(self.connection, ssl.SSLSocket),
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode(errors="replace")[:2000],
            }
        )
        return body

    def _git(self) -> None:
        body = self._record()
        if not self.headers.get("authorization"):
            self.send_response(401)
            self.send_header("www-authenticate", 'Basic realm="GitHub"')
            self.send_header("content-length", "0")
            self.end_headers()
            return
        path, _, query = self.path[len("/git") :].partition("?")
        env = {
            **os.environ,
            "GIT_PROJECT_ROOT": "/srv/git",
            "GIT_HTTP_EXPORT_ALL": "1",
            "REMOTE_USER": "tester",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("content-type", ""),
            "CONTENT_LENGTH": str(len(body)),
        }
        out = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True
        ).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode().split("\r\n"):
            key, _, value = line.partition(": ")
            if key.lower() == "status":
                status = int(value.split()[0])
            elif key:
                headers.append((key, value))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        if self.path == "/_received" and self.server.server_port == 80:
            self._send(200, json.dumps(RECEIVED).encode())
            return
        if self.path.startswith("/git/"):
            self._git()
            return
        self._record()
        if self.path.startswith("/_status/"):  # GET /_status/502: answer with that status
            self._send(int(self.path.split("/")[2]), b"{}")
            return
        self._send(200, json.dumps({"server": sys.argv[1], "path": self.path}).encode())

    def do_PUT(self) -> None:  # a publish (npm publish is a PUT): recorded, answered
        self._record()
        self._send(200, b"{}")

    def do_POST(self) -> None:
        if self.path.startswith("/git/"):
            self._git()
            return
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
    # With a certificate and key (argv 2 and 3) it also answers HTTPS on port 443.
    if len(sys.argv) > 3:
        tls = http.server.ThreadingHTTPServer(("0.0.0.0", 443), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[2], sys.argv[3])
        tls.socket = context.wrap_socket(tls.socket, server_side=True)
        threading.Thread(target=tls.serve_forever, daemon=True).start()
    http.server.ThreadingHTTPServer(("0.0.0.0", 80), Handler).serve_forever()
