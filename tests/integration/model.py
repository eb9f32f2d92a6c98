"""The scripted model server (model_server.py) as the tests use it, and the agent script.

`start_model_server()` runs it in a container on the egress network under the real API
host name, answering HTTPS with a certificate from the tests' own CA. How a session
reaches it lives in one place, `ModelServer.session_env()`: the session talks to
https://api.anthropic.com as it would for real, and its companion (which terminates TLS
for the host of a credential and verifies the server) is told to trust the test CA.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.isolation import EGRESS_NETWORK, IMAGE_COMPANION, LIMITS

SERVER = Path(__file__).with_name("model_server.py")
API_HOST = "api.anthropic.com"
TEST_LABEL = "cage-test=1"


@dataclass
class ModelServer:
    container: str
    ca_file: str  # the test CA that signed its certificate
    host: str = API_HOST
    engine: tuple[str, ...] = ("docker",)  # the command that runs its container's engine

    def _call(self, path: str, body: object = None) -> str:
        """A request to the server, made from inside its own container."""
        code = (
            "import sys,urllib.request;"
            f"d=sys.stdin.buffer.read() if {body is not None} else None;"
            f"r=urllib.request.Request('http://127.0.0.1{path}',data=d,"
            "method='POST' if d else 'GET');"
            "print(urllib.request.urlopen(r).read().decode())"
        )
        return subprocess.run(
            [*self.engine, "exec", "-i", self.container, "python3", "-c", code],
            input=json.dumps(body) if body is not None else "",
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def set_script(self, turns: list[list[dict]], **extra: str) -> None:
        """What the agent does next: one list of content blocks per model turn."""
        self._call("/_script", {"turns": turns, **extra})

    def reset(self) -> None:
        """Forget what was received so far."""
        self._call("/_reset", {})

    def received(self) -> list[dict]:
        """Every request so far (see model_server.py for the fields)."""
        return json.loads(self._call("/_received"))

    def session_env(self) -> dict[str, str]:
        """The environment for `claude-cage start` that sends a session's model calls here."""
        return {"CAGE_UPSTREAM_CA_CERTS": self.ca_file}


def start_model_server(
    prefix: str,
    tls: Path,
    ca_file: Path,
    engine: tuple[str, ...] = ("docker",),
    network: str = EGRESS_NETWORK,
    run_options: tuple[str, ...] = (),
) -> ModelServer:
    """The server in a container on the egress network, reachable as api.anthropic.com;
    `tls` holds cert.pem and key.pem for that name, signed by `ca_file`. `engine` runs
    the container (another engine's CLI: podman, as a rootless user), with `run_options`
    given to its `run`."""
    name = f"cage-testhost-{prefix}-model"
    subprocess.run(
        [
            *engine,
            "run",
            *run_options,
            "-d",
            "--rm",
            *LIMITS,
            "--name",
            name,
            "--label",
            TEST_LABEL,
            "--network",
            network,
            "--network-alias",
            API_HOST,
            "--user",
            "0",
            "-v",
            f"{SERVER}:/model_server.py:ro",
            "-v",
            f"{tls}:/tls:ro",
            "--entrypoint",
            "python3",
            IMAGE_COMPANION,
            "/model_server.py",
            "--cert",
            "/tls/cert.pem",
            "--key",
            "/tls/key.pem",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    server = ModelServer(name, str(ca_file), engine=engine)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            server.received()
            return server
        except subprocess.CalledProcessError:
            time.sleep(0.1)
    subprocess.run([*engine, "rm", "-f", name], capture_output=True)
    raise RuntimeError("the model server did not come up")


def tool(name: str, **arguments: object) -> dict:
    return {"type": "tool_use", "name": name, "input": arguments}


def agent_script(project: str, blocked_host: str) -> list[list[dict]]:
    """Write, Read, Edit and Bash in `project` (its path in the session), then a Bash call
    that tries `blocked_host` through the proxy. Bash prints what the checks look for."""
    notes = f"{project}/notes.txt"
    return [
        [
            {"type": "text", "text": "Writing the notes."},
            tool("Write", file_path=notes, content="hello from the cage\n"),
        ],
        [tool("Read", file_path=notes)],
        [tool("Edit", file_path=notes, old_string="hello", new_string="edited")],
        [
            tool(
                "Bash",
                command="wc -c < notes.txt > size.txt && echo uid=$(id -u) "
                "$(grep -E '^(Seccomp|NoNewPrivs|CapEff):' /proc/self/status "
                "| tr -s '\\t\\n' '  ') kernel: $(dmesg 2>&1 | head -1)",
                description="Count the bytes and show the sandbox",
            )
        ],
        [
            tool(
                "Bash",
                command="curl -s -m 20 -o /dev/null -w 'proxy=%{http_connect}' "
                f'https://{blocked_host}/; echo " exit=$?"',
                description="Try a host that is not allowed",
            )
        ],
    ]
