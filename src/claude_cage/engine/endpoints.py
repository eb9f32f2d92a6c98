"""Which Docker engine a command talks to: a name or URL -> an Endpoint.

An engine is named the way Docker names it: a Docker context (made with
`docker context create`), or a URL (`unix:///path`, `ssh://user@host[:port]`,
`tcp://host:port`). The empty name is the local engine: `DOCKER_HOST` when set, else
Docker's default socket, as it always was.

Contexts are read from Docker's own store (`$DOCKER_CONFIG/contexts`, by default
`~/.docker/contexts`): `meta/<sha256 of the name>/meta.json` holds the endpoint, and
`tls/<sha256>/docker/` its TLS files. Reading two small files keeps the Docker SDK's
import off the paths that only need an address (`list` over several engines).

A name that is no Docker context may be a Podman connection (`podman system connection
add`): Podman 4.3 keeps them in containers.conf (`$CONTAINERS_CONF`, else
`~/.config/containers/containers.conf`, else `/etc/containers/containers.conf`), as
`[engine.service_destinations.NAME]` with its `uri`. A unix socket is used as it is;
an ssh one is refused, since claude-cage reaches an engine over SSH through `docker
system dial-stdio`, which a Podman host does not have.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from claude_cage.errors import BadInput

DEFAULT_SOCKET = "/var/run/docker.sock"
SCHEMES = ("unix", "ssh", "tcp")


@dataclass(frozen=True)
class Endpoint:
    """One engine's address. `name` is what the user wrote ("" for the local engine)."""

    name: str
    host: str  # unix:///var/run/docker.sock, ssh://user@host:22, tcp://host:2376
    tls_dir: str | None = None  # ca.pem, cert.pem, key.pem, for tcp://
    tls_verify: bool = True
    podman_connection: bool = False  # `name` is a Podman connection, not a Docker context

    @property
    def scheme(self) -> str:
        return self.host.split("://", 1)[0]

    def require_tls(self) -> None:
        """Refuse a `tcp://` engine on another host without TLS: everything sent to it
        (a session's API key on an exec's stdin among it) would cross the network in
        clear, and anyone on the way could answer as the engine. Loopback is allowed
        (a port forwarded by hand)."""
        if self.scheme != "tcp" or self.tls_dir:
            return
        host = urllib.parse.urlsplit(self.host).hostname or ""
        if host == "localhost" or _loopback(host):
            return
        raise BadInput(
            f"the engine at {self.host} has no TLS: what claude-cage sends it, a "
            "session's key among it, would cross the network in clear",
            "use a Docker context with the engine's TLS files ('docker context create "
            "NAME --docker host=tcp://...,ca=...,cert=...,key=...'), or ssh://user@host",
        )

    @property
    def socket_path(self) -> str | None:
        return self.host[len("unix://") :] if self.scheme == "unix" else None

    @property
    def is_local(self) -> bool:
        """True when the engine runs on this machine, so bind mounts see this machine's
        files: a unix socket is on this machine, by definition."""
        return self.scheme == "unix"

    @property
    def label(self) -> str:
        """How the engine is shown: its name, or `local`."""
        return self.name or "local"

    @property
    def described(self) -> str:
        """For messages: "the Docker engine at unix:///..." or "... engine e2 (ssh://...)"."""
        if not self.name:
            return f"the Docker engine at {self.host}"
        if self.name == self.host:
            return f"the Docker engine {self.host}"
        return f"the Docker engine {self.name} ({self.host})"

    @property
    def unreachable_hint(self) -> str:
        if self.is_local and not self.name:
            return (
                "start the Docker engine (as root: scripts/ensure-docker, or "
                "'systemctl start docker'), then check with 'docker info'"
            )
        if self.podman_connection:
            return f"check it with 'podman --connection {self.name} info'"
        shown = self.name if self.name and "://" not in self.name else self.host
        return (
            f"check it with 'docker --host {self.host} info'"
            if shown == self.host
            else (f"check it with 'docker --context {shown} info'")
        )


def _loopback(host: str) -> bool:
    import ipaddress  # start-up: only for a tcp:// engine

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def docker_config_dir() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")


def local() -> Endpoint:
    """The engine every command used before engines had names."""
    host = os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"
    verify = os.environ.get("DOCKER_TLS_VERIFY", "") not in ("", "0")
    return Endpoint("", _check_url(host, "DOCKER_HOST"), os.environ.get("DOCKER_CERT_PATH"), verify)


def resolve(name: str | None) -> Endpoint:
    """An engine by name: "" or None is the local one; a URL; or a Docker context."""
    if not name:
        return local()
    if "://" in name:
        return Endpoint(name, _check_url(name, "--engine"))
    if name == "default":  # Docker's own name for the engine DOCKER_HOST points to
        return Endpoint(name, local().host, local().tls_dir, local().tls_verify)
    return _context(name)


def _check_url(url: str, where: str) -> str:
    hint = "use unix:///path, ssh://user@host[:port] or tcp://host:port, or a Docker context"
    try:
        parsed = urllib.parse.urlsplit(url)
    except ValueError:  # an unclosed [ of an IPv6 address
        raise BadInput(f"{where} {url!r} is not an engine address", hint) from None
    if parsed.scheme not in SCHEMES:
        raise BadInput(f"{where} {url!r} is not an engine address", hint)
    if parsed.scheme == "unix" and not parsed.path:
        raise BadInput(f"{where} {url!r} names no socket", "e.g. unix:///var/run/docker.sock")
    if parsed.scheme in ("ssh", "tcp") and not parsed.hostname:
        raise BadInput(f"{where} {url!r} names no host", "e.g. ssh://user@host or tcp://host:2376")
    return url


def _context(name: str) -> Endpoint:
    import hashlib  # start-up: ~4 ms, only for a docker context's name

    digest = hashlib.sha256(name.encode(errors="surrogateescape")).hexdigest()
    store = docker_config_dir() / "contexts"
    meta_file = store / "meta" / digest / "meta.json"
    try:
        meta = json.loads(meta_file.read_text())
        docker_endpoint = meta["Endpoints"]["docker"]
        host = str(docker_endpoint["Host"])
    except FileNotFoundError:
        found = podman_connection(name)
        if found is not None:
            return found
        raise BadInput(
            f"no Docker context or Podman connection named {name!r}",
            f"create it ('docker context create {name} --docker host=ssh://user@host'), "
            "or give a URL; 'docker context ls' and 'podman system connection list' "
            "list them",
        ) from None
    except (OSError, ValueError, KeyError, TypeError):
        raise BadInput(
            f"the Docker context {name!r} is damaged ({meta_file})",
            f"recreate it: 'docker context rm {name}' then 'docker context create {name} ...'",
        ) from None
    tls = store / "tls" / digest / "docker"
    return Endpoint(
        name,
        _check_url(host, f"context {name}:"),
        str(tls) if tls.is_dir() else None,
        not bool(docker_endpoint.get("SkipTLSVerify")),
    )


def containers_conf() -> Path:
    """The containers.conf where Podman 4.3 keeps this user's connections."""
    if os.environ.get("CONTAINERS_CONF"):
        return Path(os.environ["CONTAINERS_CONF"])
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    user = config_home / "containers" / "containers.conf"
    return user if user.exists() else Path("/etc/containers/containers.conf")


def connections_json() -> Path:
    """The podman-connections.json where Podman 4.5 and later keep the connections that
    `podman system connection add` makes: beside containers.conf (root's in
    /etc/containers), or where PODMAN_CONNECTIONS_CONF says."""
    if os.environ.get("PODMAN_CONNECTIONS_CONF"):
        return Path(os.environ["PODMAN_CONNECTIONS_CONF"])
    if os.geteuid() == 0:
        return Path("/etc/containers/podman-connections.json")
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config_home / "containers" / "podman-connections.json"


def _connection_uri(path: Path, name: str) -> str | None:
    """`name`'s uri in one of Podman's connection files (None: the file or the name is
    not there); a file that cannot be read is one line."""
    # start-up: only for a name that is no Docker context
    import json
    import tomllib

    try:
        text = path.read_text()
        if path.suffix == ".json":  # {"Connection": {"Connections": {name: {"URI": ..}}}}
            connections = (json.loads(text).get("Connection") or {}).get("Connections") or {}
            found, key = connections.get(name), "URI"
        else:  # containers.conf: [engine.service_destinations.<name>] uri = ...
            engine = tomllib.loads(text).get("engine") or {}
            found, key = (engine.get("service_destinations") or {}).get(name), "uri"
        return None if found is None else str(found[key])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise BadInput(
            f"Podman's connections file {path} is damaged",
            "check it with 'podman system connection list'",
        ) from None


def podman_connection(name: str) -> Endpoint | None:
    """A Podman connection by name, or None when there is none of that name. The
    connections file of Podman 4.5+ comes first, as Podman reads it."""
    uri = _connection_uri(connections_json(), name)
    if uri is None:
        uri = _connection_uri(containers_conf(), name)
    if uri is None:
        return None
    if uri.startswith("ssh://"):
        raise BadInput(
            f"the Podman connection {name!r} is over ssh ({uri}): claude-cage reaches an "
            "engine over ssh through 'docker system dial-stdio', which Podman lacks",
            "forward its socket to a folder only you can write (ssh -o "
            "ExitOnForwardFailure=yes -L $XDG_RUNTIME_DIR/podman-remote.sock:SOCKET host) "
            "and use --engine unix://$XDG_RUNTIME_DIR/podman-remote.sock",
        )
    return Endpoint(name, _check_url(uri, f"Podman connection {name}:"), podman_connection=True)
