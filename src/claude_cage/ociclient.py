"""A small OCI distribution client: a dev container feature, pulled as the spec
distributes it (containers.dev/implementors/features-distribution/).

A feature reference (`ghcr.io/devcontainers/features/node:1`, or `...@sha256:<hex>`)
names a manifest whose one layer, of media type `application/vnd.devcontainers.layer.v1+tar`,
is the feature's tarball. The registry is untrusted input: the manifest is bounded and,
when the reference pins a digest, checked against it; the layer is bounded, and its
sha256 checked against the manifest's descriptor before anyone reads it. Anonymous pulls
take the bearer token the registry's `WWW-Authenticate` challenge points at; no
credential of the user's is ever sent. A mirror (config `feature_registry_mirrors`)
answers for a registry host, as a company's pull-through cache does.

Standard library only: urllib over the system's trust store (plus config
`feature_registry_ca`), a deadline on every request, redirects to https only, and the
token never forwarded to where a redirect leads (blob stores sign their own URLs).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from claude_cage.errors import BadInput, CageError, NotFound

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
LAYER_TYPE = "application/vnd.devcontainers.layer.v1+tar"
MAX_MANIFEST = 1024 * 1024  # a feature's manifest is a few hundred bytes
MAX_LAYER = 50 * 1024 * 1024  # a feature is a script and its files: a few KiB
TIMEOUT = 30.0  # seconds per request: the connection, and each read of its answer
DEADLINE = 300.0  # seconds for a whole answer: 50 MiB at 170 KiB/s
_PATH = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
_TAG = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_HOST = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?$")
HINT = "check the feature's name in devcontainer.json, or start with --no-devcontainer"


class RegistryError(CageError):
    """A feature's registry could not be reached, or answered what cannot be used
    (a digest that does not match, an oversized or malformed manifest or layer)."""


class FeatureNotFound(NotFound):
    """The registry has no such feature, or no such tag of it (HTTP 404)."""


@dataclass(frozen=True)
class Reference:
    registry: str  # ghcr.io (with its port, if any)
    path: str  # devcontainers/features/node
    tag: str | None  # "1", or None when a digest pins it
    digest: str | None  # sha256:..., the manifest's

    @property
    def version(self) -> str:
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        pin = f"@{self.digest}" if self.digest else f":{self.tag}"
        return f"{self.registry}/{self.path}{pin}"


def is_remote(ident: str) -> bool:
    """A feature named by a registry reference (not ./local, not a tarball URL)."""
    return not ident.startswith(("./", "../", "/", "http://", "https://"))


def parse_reference(ident: str) -> Reference:
    """`registry/namespace/id[:tag|@sha256:hex]`, as the spec's reference (lower-cased);
    BadInput naming it when it is not one."""
    text = ident.strip().lower()
    resource, tag, digest = text, None, None
    if "@" in text:
        resource, _, digest = text.rpartition("@")
        if not _DIGEST.match(digest):
            raise BadInput(f"feature {ident!r}: {digest!r} is not a sha256 digest", HINT)
    elif text.rfind(":") > text.rfind("/"):
        resource, _, tag = text.rpartition(":")
    else:
        tag = "latest"
    registry, _, path = resource.partition("/")
    if tag is not None and not _TAG.match(tag):
        raise BadInput(f"feature {ident!r}: {tag!r} is not a tag", HINT)
    if not _HOST.match(registry) or ("." not in registry and not registry.startswith("localhost")):
        raise BadInput(f"feature {ident!r} names no registry host", HINT)
    if "/" not in path or not _PATH.match(path):
        raise BadInput(f"feature {ident!r} is not a registry reference", HINT)
    return Reference(registry, path, tag, digest)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Layer:
    digest: str
    size: int


def feature_layer(manifest: bytes, ref: Reference) -> Layer:
    """The one feature layer a manifest names, checked for shape."""
    try:
        data = json.loads(manifest)
    except (ValueError, UnicodeDecodeError):
        raise RegistryError(f"{ref}: the registry's manifest is not JSON", HINT) from None
    layers = data.get("layers") if isinstance(data, dict) else None
    found = [
        layer
        for layer in layers or []
        if isinstance(layer, dict) and layer.get("mediaType") == LAYER_TYPE
    ]
    if len(found) != 1:
        raise RegistryError(
            f"{ref} is not a dev container feature: its manifest has no single {LAYER_TYPE} layer",
            HINT,
        )
    digest, size = found[0].get("digest"), found[0].get("size")
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise RegistryError(f"{ref}: the layer's digest {digest!r} is not sha256", HINT)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise RegistryError(f"{ref}: the layer's size {size!r} is not a size", HINT)
    if size > MAX_LAYER:
        raise RegistryError(
            f"{ref}: the feature is {size} bytes, more than the {MAX_LAYER} a feature may be",
            "a feature is its install script and a few files: check what the reference names",
        )
    return Layer(digest, size)


class Client:
    """One registry, or the mirror that answers for it."""

    def __init__(
        self,
        ref: Reference,
        mirrors: Mapping[str, str] | None = None,
        ca_file: str | None = None,
        timeout: float = TIMEOUT,
    ) -> None:
        self.ref = ref
        mirror = (mirrors or {}).get(ref.registry)
        self.base = (mirror or f"https://{ref.registry}").rstrip("/")
        self.timeout = timeout
        context = ssl.create_default_context()  # the system's trust store
        if ca_file:
            try:
                context.load_verify_locations(cafile=ca_file)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise BadInput(
                    f"config feature_registry_ca: cannot load {ca_file}: {exc}",
                    "name a PEM file of CA certificates, or remove the key",
                ) from None
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=context), _HttpsOnlyRedirects(self.base)
        )
        self._token: str | None = None
        self.requests = 0  # how many requests this client made (the cache's tests read it)

    def manifest(self) -> bytes:
        """The manifest the reference names, its digest checked when it pins one."""
        url = f"{self.base}/v2/{self.ref.path}/manifests/{self.ref.version}"
        body = self._get(url, MANIFEST_TYPE, MAX_MANIFEST, "manifest")
        if self.ref.digest and sha256(body) != self.ref.digest:
            raise RegistryError(
                f"{self.ref}: the manifest the registry sent has the digest {sha256(body)}, "
                "not the one the reference pins",
                "the registry (or something on the way) changed the feature: do not use it",
            )
        return body

    def blob(self, layer: Layer) -> bytes:
        """The layer, its size and sha256 checked against the manifest's descriptor."""
        url = f"{self.base}/v2/{self.ref.path}/blobs/{layer.digest}"
        body = self._get(url, "application/octet-stream", min(layer.size, MAX_LAYER), "layer")
        if sha256(body) != layer.digest:
            raise RegistryError(
                f"{self.ref}: the layer the registry sent has the digest {sha256(body)}, "
                f"not {layer.digest} as its manifest says",
                "the registry (or something on the way) changed the feature: do not use it",
            )
        return body

    def _get(self, url: str, accept: str, limit: int, what: str) -> bytes:
        try:
            return self._read(url, accept, limit, what)
        except _Challenge as challenge:
            self._token = self._fetch_token(challenge.header)
            try:
                return self._read(url, accept, limit, what)
            except _Challenge:
                raise RegistryError(
                    f"{self.ref}: the registry refused the anonymous token it gave (401)",
                    "claude-cage pulls features anonymously: use a public feature, "
                    "or a mirror (config feature_registry_mirrors) that serves it",
                ) from None

    def _read(self, url: str, accept: str, limit: int, what: str) -> bytes:
        request = urllib.request.Request(url, headers={"Accept": accept})
        request.add_header("User-Agent", "claude-cage")
        if self._token:  # not carried to where a redirect leads (a signed blob URL)
            request.add_unredirected_header("Authorization", f"Bearer {self._token}")
        self.requests += 1
        try:
            with self._opener.open(request, timeout=self.timeout) as answer:
                declared = answer.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > limit:
                    raise self._oversize(what, limit)
                body = self._body(answer, limit, what)
        except urllib.error.HTTPError as exc:
            challenge = exc.headers.get("WWW-Authenticate") or ""
            if exc.code == 401 and challenge.lower().startswith("bearer"):
                raise _Challenge(challenge) from None
            if exc.code == 404:
                raise FeatureNotFound(
                    f"{self.ref}: the registry at {self.base} has no such {what} (404)", HINT
                ) from None
            raise RegistryError(
                f"{self.ref}: the registry at {self.base} answered {exc.code} for the {what}",
                _REACH_HINT,
            ) from None
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise RegistryError(
                f"{self.ref}: cannot reach the registry at {self.base}: {reason}", _REACH_HINT
            ) from None
        return body

    def _body(self, answer: Any, limit: int, what: str) -> bytes:
        """At most `limit` bytes of the answer, within DEADLINE in all (a server that
        drips a byte at a time is stopped too)."""
        deadline = time.monotonic() + DEADLINE
        chunks: list[bytes] = []
        got = 0
        while chunk := answer.read(min(64 * 1024, limit + 1 - got)):
            chunks.append(chunk)
            got += len(chunk)
            if got > limit:
                raise self._oversize(what, limit)
            if time.monotonic() > deadline:
                raise RegistryError(
                    f"{self.ref}: the registry at {self.base} took more than {DEADLINE:g} s "
                    f"to send the {what}",
                    _REACH_HINT,
                )
        return b"".join(chunks)

    def _oversize(self, what: str, limit: int) -> RegistryError:
        return RegistryError(
            f"{self.ref}: the registry sent a {what} larger than {limit} bytes",
            "a feature is its install script and a few files: check what the reference names",
        )

    def _fetch_token(self, header: str) -> str:
        """The anonymous bearer token of a `WWW-Authenticate: Bearer realm=...` challenge."""
        fields = dict(re.findall(r'(\w+)="([^"]*)"', header))
        realm = fields.get("realm", "")
        scheme = urllib.parse.urlsplit(realm).scheme
        if scheme != "https" and not (scheme == "http" and self.base.startswith("http://")):
            raise RegistryError(
                f"{self.ref}: the registry's token service {realm!r} is not an https URL",
                _REACH_HINT,
            )
        query = {k: fields[k] for k in ("service", "scope") if fields.get(k)}
        query.setdefault("scope", f"repository:{self.ref.path}:pull")
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
        try:
            body = self._read(url, "application/json", 64 * 1024, "token")
        except _Challenge:
            raise RegistryError(f"{self.ref}: the registry's token service refused", HINT) from None
        try:
            answer: Any = json.loads(body)
            token = answer.get("token") or answer.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"{self.ref}: the registry's token service gave no token", HINT)
        return token


_REACH_HINT = (
    "check the network and the registry; behind a company mirror, name it in config "
    "feature_registry_mirrors (and its CA in feature_registry_ca)"
)


class _Challenge(Exception):
    def __init__(self, header: str) -> None:
        super().__init__(header)
        self.header = header


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects (a blob store's signed URL) only to https, or to plain http when the
    registry itself is a plain-http mirror."""

    def __init__(self, base: str) -> None:
        self.allow_http = base.startswith("http://")

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        scheme = urllib.parse.urlsplit(newurl).scheme
        if scheme != "https" and not (scheme == "http" and self.allow_http):
            raise urllib.error.URLError(f"a redirect to {newurl!r}, which is not https")
        return super().redirect_request(req, fp, code, msg, headers, newurl)
