"""A raw client of the session's proxy, run inside a session (`python3 -c`): it speaks
to 127.0.0.1:3128 exactly as told, as an attacker would, where curl would tidy up.

argv[1] is a JSON list of connections; each is a list of steps on one connection:
  {"connect": "HOST:PORT"}          a CONNECT; the tunnel's status is printed
  {"tls": "HOST"}                   TLS inside the tunnel, verified with the session's CA
  {"tls": "HOST", "verify": false}  the same, with SNI HOST and no certificate check
  {"tls": null}                     TLS with no SNI and no certificate check
  {"send": "GET ... HTTP/1.1\\r\\n..."}  one request; its status is printed
Each printed line is `STATUS` or `error: ...` (a connection that failed); the script goes
on with the next connection.
"""

import json
import socket
import ssl
import sys

CA = "/sock/out/ca-bundle.pem"


def read_response(stream) -> str:
    head = stream.readline().decode("latin-1").strip()
    if not head:
        return "error: closed"
    length = None
    while True:
        line = stream.readline().decode("latin-1").strip()
        if not line:
            break
        key, _, value = line.partition(":")
        if key.lower() == "content-length":
            length = int(value.strip())
    if length:
        stream.read(length)
    return head.split()[1]


def run(steps: list[dict]) -> list[str]:
    out: list[str] = []
    sock = socket.create_connection(("127.0.0.1", 3128), timeout=10)
    stream = sock.makefile("rb")
    try:
        for step in steps:
            if "connect" in step:
                target = step["connect"]
                sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
                status = read_response(stream)
                out.append(status)
                if status != "200":
                    break
            elif "tls" in step:
                context = ssl.create_default_context(cafile=CA)
                if step["tls"] is None or not step.get("verify", True):
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                sock = context.wrap_socket(sock, server_hostname=step["tls"])
                stream = sock.makefile("rb")
                out.append("tls")
            else:
                sock.sendall(step["send"].encode())
                out.append(read_response(stream))
    except (OSError, ValueError, IndexError) as exc:
        out.append(f"error: {type(exc).__name__}")
    finally:
        sock.close()
    return out


if __name__ == "__main__":
    print(json.dumps([run(steps) for steps in json.loads(sys.argv[1])]))
