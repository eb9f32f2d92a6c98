"""A static package registry over HTTPS, for the tests: serves ROOT on port 443 with
CERT and KEY, and appends every request's path to ROOT/../requests.log.

A directory answers with its index.html (a PEP 503 "simple" page) or index.json (an npm
packument); files are served as they are, cacheable like the real registries' files."""

import http.server
import os
import ssl
import sys

ROOT, CERT, KEY = sys.argv[1:4]
LOG = os.path.join(os.path.dirname(ROOT.rstrip("/")), "requests.log")


class Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=ROOT, **kwargs)

    def send_head(self):
        with open(LOG, "a") as log:
            log.write(self.path + "\n")
        path = self.translate_path(self.path)
        json_index = os.path.join(path, "index.json")
        if os.path.isdir(path) and os.path.exists(json_index):
            with open(json_index, "rb") as index:
                body = index.read()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return None
        return super().send_head()

    def end_headers(self):
        if not self.path.endswith("/"):  # the files: immutable, as on PyPI's file host
            self.send_header("Cache-Control", "max-age=31536000, immutable")
        super().end_headers()


server = http.server.ThreadingHTTPServer(("0.0.0.0", 443), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(CERT, KEY)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
