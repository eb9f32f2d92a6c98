"""A unix-socket proxy in front of the Docker engine, for a stalled engine: stopped
with SIGSTOP, it still takes connections (the kernel queues them) but answers nothing,
as an engine that hangs does. Given a third argument, it stalls by itself at the first
request that holds those bytes: that request and every one after it go unanswered, and
it prints "stalled".
Run: python3 stall_proxy.py LISTEN_PATH ENGINE_SOCKET [STALL_AT]"""

from __future__ import annotations

import os
import socket
import socketserver
import sys
import threading

STALL_AT = sys.argv[3].encode() if len(sys.argv) > 3 else None
stalled = threading.Event()


def pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            if STALL_AT is not None and STALL_AT in data and not stalled.is_set():
                stalled.set()
                print("stalled", flush=True)
            if stalled.is_set():
                threading.Event().wait()  # a hung engine: never answer again
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass


class Forward(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.connect(sys.argv[2])
        back = threading.Thread(target=pipe, args=(upstream, self.request), daemon=True)
        back.start()
        pipe(self.request, upstream)
        back.join()
        upstream.close()


class Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    request_queue_size = 256  # stopped, it keeps taking connections for a while


if __name__ == "__main__":
    with Server(sys.argv[1], Forward) as server:
        os.chmod(sys.argv[1], 0o666)
        print("ready", flush=True)
        server.serve_forever()
