"""Test host for the proxy benchmark: serves a directory over HTTP/1.1 with keep-alive.

Runs inside a container on the egress network: python3 -c "$(cat http_server.py)" DIR
"""

import functools
import http.server
import sys


class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep connections open between requests
    disable_nagle_algorithm = True  # headers and body go out in two writes

    def log_message(self, format: str, *args: object) -> None:
        pass


handler = functools.partial(Handler, directory=sys.argv[1])
http.server.ThreadingHTTPServer(("", 80), handler).serve_forever()
