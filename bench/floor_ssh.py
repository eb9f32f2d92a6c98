"""The floor under `list` on a remote engine: one engine API call over SSH, from a bare
Python process.

    python3 bench/floor_ssh.py CONTEXT OWNER

Reads the context's address from Docker's store, runs `ssh HOST docker system
dial-stdio` on a socket pair (with the same connection sharing claude-cage uses), and
makes the one GET /containers/json `list` makes there. Only the standard library.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import urllib.parse
from pathlib import Path


def main() -> None:
    context, owner = sys.argv[1], sys.argv[2]
    store = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "contexts"
    meta = store / "meta" / hashlib.sha256(context.encode()).hexdigest() / "meta.json"
    url = urllib.parse.urlsplit(json.loads(meta.read_text())["Endpoints"]["docker"]["Host"])
    control = Path(tempfile.gettempdir()) / f"claude-cage-ssh-{os.getuid()}"
    control.mkdir(mode=0o700, exist_ok=True)
    ssh = ["ssh", "-o", "BatchMode=yes", "-o", "ControlMaster=auto",
           "-o", f"ControlPath={control}/%C", "-o", "ControlPersist=30", "-T"]  # fmt: skip
    if url.port:
        ssh += ["-p", str(url.port)]
    if url.username:
        ssh += ["-l", url.username]
    ours, theirs = socket.socketpair()
    child = subprocess.Popen(
        [*ssh, "--", url.hostname or "", "docker", "system", "dial-stdio"],
        stdin=theirs.fileno(),
        stdout=theirs.fileno(),
        stderr=subprocess.DEVNULL,
    )
    theirs.close()
    conn = http.client.HTTPConnection("localhost", timeout=60)
    conn.sock = ours
    labels = ["managed-by=claude-cage", "cage.role=session", f"cage.owner={owner}"]
    query = urllib.parse.urlencode({"all": "1", "filters": json.dumps({"label": labels})})
    conn.request("GET", f"/containers/json?{query}")
    for container in json.loads(conn.getresponse().read()):
        print(container["Names"][0].lstrip("/"))
    conn.close()
    child.wait(timeout=10)


if __name__ == "__main__":
    main()
