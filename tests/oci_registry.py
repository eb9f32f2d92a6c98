"""An OCI registry of the tests' own, in a thread of the test process: dev container
features as the spec distributes them (a manifest with one
`application/vnd.devcontainers.layer.v1+tar` layer), behind a bearer-token challenge
like ghcr.io's, over plain HTTP or over TLS with a certificate of the test CA.

    with Registry() as registry:
        ref = registry.add("cage/features/hello", "1", {"install.sh": "...", ...})

`registry.requests` lists every path asked for; `registry.tamper(...)` makes a blob's
bytes differ from its digest.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import ssl
import tarfile
import threading
from pathlib import Path
from typing import Any

TOKEN = "anonymous-test-token"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
LAYER_TYPE = "application/vnd.devcontainers.layer.v1+tar"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def feature_tar(files: dict[str, str | bytes], prefix: str = "./") -> bytes:
    """A feature's tarball, as `devcontainer features package` makes it: ./name members,
    install.sh executable."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(prefix + name)
            info.size = len(data)
            info.mode = 0o755 if name.endswith(".sh") else 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def manifest_for(layer: bytes, size: int | None = None) -> bytes:
    config = b"{}"
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {
                "mediaType": "application/vnd.devcontainers",
                "digest": digest(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": LAYER_TYPE,
                    "digest": digest(layer),
                    "size": len(layer) if size is None else size,
                    "annotations": {"org.opencontainers.image.title": "feature.tgz"},
                }
            ],
        }
    ).encode()


class Registry:
    def __init__(self, host: str = "registry.test", tls: tuple[Path, Path] | None = None) -> None:
        self.host = host  # the registry the references name; the mirror is this server
        self.manifests: dict[tuple[str, str], bytes] = {}  # (path, tag or digest) -> body
        self.blobs: dict[str, bytes] = {}  # digest -> the bytes served for it
        self.requests: list[str] = []
        self.tls = tls
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://localhost:{self.port}"

    def __enter__(self) -> Registry:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(
        self,
        path: str,
        tag: str,
        files: dict[str, str | bytes] | None = None,
        layer: bytes | None = None,
        size: int | None = None,
    ) -> str:
        """A feature at `path:tag` (its files, or a layer as given): its reference."""
        blob = layer if layer is not None else feature_tar(files or {})
        manifest = manifest_for(blob, size)
        self.blobs[digest(blob)] = blob
        self.manifests[(path, tag)] = manifest
        self.manifests[(path, digest(manifest))] = manifest
        return f"{self.host}/{path}:{tag}"

    def pinned(self, path: str, tag: str) -> str:
        """The reference of `path:tag` pinned by its manifest's digest."""
        return f"{self.host}/{path}@{digest(self.manifests[(path, tag)])}"

    def tamper(self, path: str, tag: str) -> None:
        """The blob of `path:tag` served with one byte changed."""
        layer = json.loads(self.manifests[(path, tag)])["layers"][0]["digest"]
        data = bytearray(self.blobs[layer])
        data[-1] ^= 1
        self.blobs[layer] = bytes(data)

    def blob_requests(self) -> list[str]:
        return [p for p in self.requests if "/blobs/" in p]

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        registry = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _challenge(self, scope: str) -> None:
                realm = f"{registry.url}/token"
                header = f'Bearer realm="{realm}",service="{registry.host}",scope="{scope}"'
                self._send(401, b'{"errors":[]}', {"WWW-Authenticate": header})

            def do_GET(self) -> None:
                registry.requests.append(self.path)
                path = self.path.split("?")[0]
                if path == "/token":
                    self._send(200, json.dumps({"token": TOKEN}).encode(), {})
                    return
                parts = path.removeprefix("/v2/").split("/")
                repo = "/".join(parts[:-2])
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self._challenge(f"repository:{repo}:pull")
                    return
                if len(parts) >= 3 and parts[-2] == "manifests":
                    body = registry.manifests.get((repo, parts[-1]))
                    if body is None:
                        self._send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}', {})
                        return
                    headers = {"Content-Type": MANIFEST_TYPE, "Docker-Content-Digest": digest(body)}
                    self._send(200, body, headers)
                    return
                if len(parts) >= 3 and parts[-2] == "blobs" and parts[-1] in registry.blobs:
                    self._send(200, registry.blobs[parts[-1]], {})
                    return
                self._send(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}', {})

        return Handler
