"""A project's dev container configuration (`.devcontainer/devcontainer.json`), read.

The reader takes the spec's JSON with comments (JSONC: `//` and `/* */` comments,
trailing commas) and the variables a sandbox can give a meaning to
(`${localEnv:VAR[:default]}`, `${localWorkspaceFolder}`, `${containerWorkspaceFolder}`,
their `Basename`s, `${containerEnv:VAR}` from containerEnv). It keeps what makes sense
inside the cage (the image or Dockerfile, environment, lifecycle commands, forwarded
ports, the working folder, features) and refuses, naming the key, what would
weaken the sandbox or run on the host. Pure: it reads files, never the engine; a
remote feature is pulled by the `fetch` its caller hands it.

The features are the ones devcontainer.json names and, recursively, those their
`dependsOn` names (local ones relative to .devcontainer/, as in devcontainer.json; a
missing one stops the start, as a missing feature of devcontainer.json does), at most
MAX_FEATURES from at most MAX_REFERENCES references. A feature named twice with the
same folder (a remote one: the same layer) and options is installed once. They are
ordered by feature_order.py.

Only the host's copy of the project is read, by `start` of a new session; see
operations/devcontainers.py.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from claude_cage import feature_order, workdir
from claude_cage.errors import BadInput, CageError

CANDIDATES = workdir.DEVCONTAINER_FILES
MAX_BYTES = 1024 * 1024
HINT = "remove it from the project's devcontainer.json, or start with --no-devcontainer"
# What would weaken the sandbox, or run outside it: refused, the key named.
REFUSED = {
    "privileged": "a privileged container has no sandbox",
    "capAdd": "the session keeps no capability",
    "securityOpt": "the session's security options are claude-cage's",
    "runArgs": "docker run arguments could undo any part of the sandbox",
    "mounts": "the session mounts only what start is given (--mount, --clone)",
    "workspaceMount": "the project is mounted or cloned by claude-cage",
    "initializeCommand": "it runs on the host, outside the sandbox",
    "appPort": "ports are published only through forwardPorts (as --port)",
    "dockerComposeFile": "Docker Compose configurations are not supported",
}
# Lifecycle commands run in the session in this order when it is created.
CREATE_COMMANDS = ("onCreateCommand", "updateContentCommand", "postCreateCommand")
FEATURE_REFUSED = ("privileged", "capAdd", "securityOpt", "mounts", "entrypoint")
_VARIABLE = re.compile(r"\$\{([^}]*)\}")
Fetch = Callable[[str], Path]  # a remote feature's reference -> its unpacked folder
MAX_FEATURES = 64  # with their dependencies: a registry cannot make a start pull for ever
# References asked for in all, the same feature named again included: one layer under
# many tags is one feature but as many fetches.
MAX_REFERENCES = 4 * MAX_FEATURES


@dataclass(frozen=True)
class Feature:
    id: str
    path: Path  # the feature's folder (devcontainer-feature.json, install.sh)
    options: dict[str, str]  # as the install script's environment
    container_env: dict[str, str]
    depends_on: dict[str, Any] = field(default_factory=dict)  # reference -> its options
    installs_after: tuple[str, ...] = ()  # resources (feature_order.resource)


@dataclass(frozen=True)
class DevContainer:
    file: Path
    text: str  # the file as read: what its image's cache key is made of
    image: str | None = None
    dockerfile: Path | None = None
    context: Path | None = None
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    env: dict[str, str] = field(default_factory=dict)  # containerEnv, then remoteEnv
    create_command: str = ""  # the create commands as one shell script, "" for none
    start_command: str = ""  # postStartCommand
    ports: tuple[int, ...] = ()
    workspace_folder: str | None = None  # inside the project, in the session's paths
    features: tuple[Feature, ...] = ()


def find(project: Path) -> Path | None:
    for name in CANDIDATES:
        candidate = project / name
        if candidate.is_file():
            return candidate
    return None


def strip_jsonc(text: str) -> str:
    """JSON from JSONC: comments out, trailing commas out, strings untouched."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise ValueError("a /* comment is not closed")
            out.append(" ")
            i = end + 2
        elif c in "]}":
            k = len(out) - 1
            while k >= 0 and out[k].isspace():
                k -= 1
            if k >= 0 and out[k] == ",":
                out[k] = " "
            out.append(c)
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse(text: str, where: str) -> dict[str, Any]:
    try:
        data = json.loads(strip_jsonc(text))
    except ValueError as exc:
        raise BadInput(f"{where} is not valid JSON(C): {exc}", HINT) from None
    except RecursionError:
        raise BadInput(f"{where} is not valid JSON(C): nested too deeply", HINT) from None
    if not isinstance(data, dict):
        raise BadInput(f"{where} is not a JSON object", HINT)
    return data


# The host's variables a devcontainer.json may read (`${localEnv:VAR}`): the user's
# locale and name, nothing that can hold a secret. The host's environment holds API
# keys and tokens, and the file comes from the project (a cloned repository, or one the
# agent writes through a read-write mount): any other name is refused, never passed.
LOCAL_ENV_ALLOWED = frozenset({"USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TERM"})


def _local_env_allowed(var: str) -> bool:
    return var in LOCAL_ENV_ALLOWED or var.startswith("LC_")


class Variables:
    """The spec's variables that mean something here."""

    def __init__(
        self,
        local_env: Mapping[str, str],
        local_folder: str,
        container_folder: str,
        container_env: Mapping[str, str] | None = None,
    ) -> None:
        self.local_env = local_env
        self.values = {
            "localWorkspaceFolder": local_folder,
            "localWorkspaceFolderBasename": posixpath.basename(local_folder.rstrip("/")),
            "containerWorkspaceFolder": container_folder,
            "containerWorkspaceFolderBasename": posixpath.basename(container_folder.rstrip("/")),
        }
        self.container_env = dict(container_env or {})

    def expand(self, value: str, key: str) -> str:
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            kind, _, rest = name.partition(":")
            if kind in ("localEnv", "env") and rest:
                var, _, default = rest.partition(":")
                if not _local_env_allowed(var):
                    raise BadInput(
                        f"devcontainer.json {key}: ${{{name}}} would copy the host's "
                        f"{var} into the session; claude-cage passes no host variable "
                        "but the locale and the user's name",
                        "give the session a value with --env KEY=VAL, or a credential "
                        "with 'claude-cage secret set' (added outside the session)",
                    )
                return self.local_env.get(var, default)
            if kind == "containerEnv" and rest:
                var, _, default = rest.partition(":")
                if var in self.container_env:
                    return self.container_env[var]
                return match.group(0)  # the image's: resolved once it is built

            if name in self.values:
                return self.values[name]
            raise BadInput(
                f"devcontainer.json {key}: claude-cage does not know the variable ${{{name}}}",
                "use ${localEnv:VAR}, ${containerEnv:VAR}, ${localWorkspaceFolder} "
                "or ${containerWorkspaceFolder}",
            )

        return _VARIABLE.sub(one, value)


def image_variables(env: Mapping[str, str], image_env: Mapping[str, str]) -> dict[str, str]:
    """The `${containerEnv:VAR[:default]}` left in `env`, from the image's environment
    (`${containerEnv:PATH}:/extra` keeps the image's PATH, the cage's tools in it)."""

    def one(match: re.Match[str]) -> str:
        kind, _, rest = match.group(1).partition(":")
        if kind != "containerEnv":
            return match.group(0)
        var, _, default = rest.partition(":")
        return image_env.get(var, default)

    return {key: _VARIABLE.sub(one, value) for key, value in env.items()}


def command_script(value: Any, key: str) -> str:
    """A lifecycle command as one shell script: a string as it is, an array as one
    command, an object's commands one after the other."""
    if value is None or value == "" or value == []:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return shlex.join(value)
    if isinstance(value, dict):
        parts = [command_script(v, f"{key}.{k}") for k, v in value.items()]
        return "\n".join(f"( {p}\n) || exit $?" for p in parts if p)
    raise BadInput(f"devcontainer.json {key} must be a string, an array or an object", HINT)


def _strings(value: Any, key: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(v, str | int | float | bool) for v in value.values()
    ):
        raise BadInput(f"devcontainer.json {key} must be an object of strings", HINT)
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}


def _ports(value: Any) -> tuple[int, ...]:
    ports = []
    for port in value or []:
        text = str(port)
        host, _, number = text.rpartition(":")
        if host not in ("", "localhost", "127.0.0.1") or not number.isdigit():
            raise BadInput(
                f"devcontainer.json forwardPorts: {text!r} is not a port of the session",
                "forward the session's own ports: numbers such as 8000",
            )
        if not 1 <= int(number) <= 65535:
            raise BadInput(f"devcontainer.json forwardPorts: {number} is not a port", HINT)
        ports.append(int(number))
    return tuple(dict.fromkeys(ports))


def refuse_weakening(data: dict[str, Any], where: str) -> None:
    for key, why in REFUSED.items():
        if key in data:
            raise BadInput(f"devcontainer.json key {key!r} is refused: {why} ({where})", HINT)
    if data.get("init") is False:
        raise BadInput(
            f"devcontainer.json key 'init' is refused: false would take tini, the session's "
            f"PID 1, away ({where})",
            HINT,
        )
    for key in ("overrideCommand",):
        if data.get(key) is False:
            raise BadInput(
                f"devcontainer.json key {key!r} is refused: the session runs claude-cage's "
                f"command ({where})",
                HINT,
            )


def _feature_path(ident: str, config_dir: Path, fetch: Fetch | None) -> Path:
    """The folder of the feature `ident` names: a local one in .devcontainer/, or a
    remote one (a registry reference) as `fetch` unpacked it."""
    if ident.startswith(("./", "../")):
        path = (config_dir / ident).resolve()
        if not path.is_relative_to(config_dir.resolve()):
            raise BadInput(f"devcontainer.json feature {ident!r} leaves .devcontainer/", HINT)
        return path
    if ident.startswith(("http://", "https://", "/")):
        raise BadInput(
            f"devcontainer.json feature {ident!r} is not built: claude-cage builds local "
            "features (./path) and features from a registry (ghcr.io/owner/features/id:1)",
            "name the feature by its registry reference, or copy it into .devcontainer/ "
            "and name it ./its-folder",
        )
    if fetch is None:
        raise BadInput(
            f"devcontainer.json feature {ident!r} is not built here: a remote feature "
            "needs its registry",
            "copy the feature into .devcontainer/ and name it ./its-folder, "
            "or start with --no-devcontainer",
        )
    return fetch(ident)


def _feature(
    ident: str, options: Any, config_dir: Path, variables: Variables, fetch: Fetch | None
) -> Feature:
    path = _feature_path(ident, config_dir, fetch)
    meta_file = path / "devcontainer-feature.json"
    if not (path / "install.sh").is_file() or not meta_file.is_file():
        raise BadInput(
            f"devcontainer.json feature {ident!r} has no install.sh and devcontainer-feature.json",
            HINT,
        )
    meta = parse(meta_file.read_text(errors="replace"), str(meta_file))
    for key in FEATURE_REFUSED:
        if meta.get(key):
            raise BadInput(
                f"feature {ident!r} asks for {key!r}, which the sandbox refuses",
                HINT,
            )
    if meta.get("init") is False:
        raise BadInput(f"feature {ident!r} asks for init: false, which the sandbox refuses", HINT)
    given: dict[str, Any] = options if isinstance(options, dict) else {}
    if isinstance(options, str):
        given = {"version": options}
    values: dict[str, str] = {}
    declared: dict[str, Any] = meta["options"] if isinstance(meta.get("options"), dict) else {}
    for name, spec in declared.items():
        if isinstance(spec, dict) and "default" in spec:
            values[name] = spec["default"]
    values.update(given)
    env = {
        option_variable(k): (v if isinstance(v, str) else json.dumps(v)) for k, v in values.items()
    }
    container_env = {
        k: variables.expand(v, f"feature {ident} containerEnv")
        for k, v in _strings(meta.get("containerEnv"), f"feature {ident} containerEnv").items()
    }
    depends_on = meta.get("dependsOn") or {}
    after = meta.get("installsAfter") or []
    if not isinstance(depends_on, dict):
        raise BadInput(f"feature {ident!r}: dependsOn must be an object", HINT)
    if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
        raise BadInput(f"feature {ident!r}: installsAfter must be a list of strings", HINT)
    installs_after = tuple(feature_order.resource(a) for a in after)
    return Feature(ident, path, env, container_env, depends_on, installs_after)


def _features(
    named: dict[str, Any],
    override: Any,
    config_dir: Path,
    variables: Variables,
    fetch: Fetch | None,
) -> tuple[Feature, ...]:
    """The features `named` and their dependencies, in install order."""
    pulled: dict[str, Path] = {}

    def fetch_once(ident: str) -> Path:  # a reference named twice is asked for once
        if ident not in pulled:
            assert fetch is not None
            pulled[ident] = fetch(ident)
        return pulled[ident]

    found: list[Feature] = []
    waits: list[set[int]] = []
    seen: dict[tuple[Path, str], int] = {}
    work: list[tuple[str, Any, int | None]] = [(i, o, None) for i, o in named.items()]
    asked = 0
    while work:
        ident, options, parent = work.pop(0)
        asked += 1
        if asked > MAX_REFERENCES:  # each may be a fetch: the same layer under new tags
            raise BadInput(
                f"devcontainer.json's features and their dependencies name more than "
                f"{MAX_REFERENCES} references in all",
                HINT,
            )
        try:
            feature = _feature(ident, options, config_dir, variables, fetch and fetch_once)
        except CageError as exc:  # its type, hint and exit code kept; the line says who
            if parent is not None:
                exc.args = (f"feature {found[parent].id!r} dependsOn {ident!r}: {exc}",)
            raise
        key = (feature.path.resolve(), json.dumps(feature.options, sort_keys=True))
        if key not in seen:
            if len(found) == MAX_FEATURES:
                raise BadInput(
                    f"devcontainer.json names more than {MAX_FEATURES} features with their "
                    "dependencies",
                    HINT,
                )
            seen[key] = len(found)
            found.append(feature)
            waits.append(set())
            work += [(d, o, seen[key]) for d, o in feature.depends_on.items()]
        if parent is not None:
            waits[parent].add(seen[key])
    if not isinstance(override, list) or not all(isinstance(o, str) for o in override):
        if override is not None:
            raise BadInput("devcontainer.json overrideFeatureInstallOrder must be a list", HINT)
        override = []
    first = feature_order.priorities(override)
    nodes = [
        feature_order.Node(
            name=f.id,
            resource=(resource := feature_order.resource(f.id)),
            options=json.dumps(f.options, sort_keys=True),
            depends=frozenset(waits[i]),
            installs_after=frozenset(f.installs_after),
            priority=first.get(resource, 0),
        )
        for i, f in enumerate(found)
    ]
    return tuple(found[i] for i in feature_order.order(nodes))


def option_variable(name: str) -> str:
    """A feature option's name as its install script's variable (the spec's rule)."""
    return re.sub(r"^[\d_]+", "_", re.sub(r"[^\w_]", "_", name, flags=re.ASCII)).upper()


def read(
    file: Path,
    local_folder: Path,
    container_folder: str,
    local_env: Mapping[str, str],
    fetch: Fetch | None = None,
) -> DevContainer:
    """The configuration in `file` (the host's copy), for a session whose project is
    `local_folder` on the host and `container_folder` inside. `fetch` pulls a remote
    feature and gives its folder (operations/remote_features.py); without it a remote
    feature is refused."""
    where = str(file)
    try:
        if file.stat().st_size > MAX_BYTES:
            raise BadInput(f"{where} is larger than 1 MiB", HINT)
        text = file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read {where}: {exc}", HINT) from None
    data = parse(text, where)
    refuse_weakening(data, where)
    variables = Variables(local_env, str(local_folder), container_folder)
    config_dir = file.parent
    env = {
        k: variables.expand(v, f"containerEnv.{k}")
        for k, v in _strings(data.get("containerEnv"), "containerEnv").items()
    }
    variables.container_env.update(env)
    for k, v in _strings(data.get("remoteEnv"), "remoteEnv").items():
        env[k] = variables.expand(v, f"remoteEnv.{k}")

    build: dict[str, Any] = data["build"] if isinstance(data.get("build"), dict) else {}
    dockerfile = build.get("dockerfile") or data.get("dockerFile")
    image = data.get("image")
    if not image and not dockerfile:
        raise BadInput(
            f"{where} names no image and no build.dockerfile",
            "claude-cage runs configurations with an image or a Dockerfile",
        )
    dockerfile_path = context = None
    if dockerfile:
        dockerfile_path = _inside(config_dir / str(dockerfile), local_folder, "build.dockerfile")
        context = _inside(
            config_dir / str(build.get("context") or "."), local_folder, "build.context"
        )
        image = None
    args = {
        k: variables.expand(v, f"build.args.{k}")
        for k, v in _strings(build.get("args"), "build.args").items()
    }
    target = build.get("target") if isinstance(build.get("target"), str) else None

    features_value = data.get("features") or {}
    if not isinstance(features_value, dict):
        raise BadInput(f"devcontainer.json features must be an object ({where})", HINT)
    create = "\n".join(s for key in CREATE_COMMANDS if (s := command_script(data.get(key), key)))
    folder = data.get("workspaceFolder")
    workspace = None
    if isinstance(folder, str) and folder:
        workspace = posixpath.normpath(variables.expand(folder, "workspaceFolder"))
        if not (workspace + "/").startswith(container_folder.rstrip("/") + "/"):
            raise BadInput(
                f"devcontainer.json workspaceFolder {folder!r} is not inside the project "
                f"({container_folder} in the session)",
                "name a folder of the project, such as ${containerWorkspaceFolder}/app",
            )
    start = command_script(data.get("postStartCommand"), "postStartCommand")
    ports = _ports(data.get("forwardPorts"))
    # Last: a remote feature is pulled once everything else has been found sound.
    override = data.get("overrideFeatureInstallOrder")
    features = _features(features_value, override, config_dir, variables, fetch)
    return DevContainer(
        file=file,
        text=text,
        image=str(image) if image else None,
        dockerfile=dockerfile_path,
        context=context,
        build_args=args,
        target=target,
        env=env,
        create_command=create,
        start_command=start,
        ports=ports,
        workspace_folder=workspace,
        features=features,
    )


def _inside(path: Path, project: Path, key: str) -> Path:
    resolved = path.resolve()
    if not resolved.is_relative_to(project.resolve()):
        raise BadInput(f"devcontainer.json {key} leaves the project: {path}", HINT)
    return resolved
