"""Test host for the proxy benchmark: serves a directory over HTTP/1.1 with keep-alive.

Runs inside a container on the egress network: python3 -c "$(cat http_server.py)" DIR
With a certificate and its key (argv 2 and 3) it answers HTTPS on 443 instead.
"""

import functools
import http.server
import ssl
import sys


class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep connections open between requests
    disable_nagle_algorithm = True  # headers and body go out in two writes

    def log_message(self, format: str, *args: object) -> None:
        pass


handler = functools.partial(Handler, directory=sys.argv[1])
if len(sys.argv) > 3:
    server = http.server.ThreadingHTTPServer(("", 443), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[2], sys.argv[3])
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()
http.server.ThreadingHTTPServer(("", 80), handler).serve_forever()
