"""A new session in its project's dev container: the image it names, the cage on top.

`start --clone PATH` and `start --mount PATH` read `.devcontainer/devcontainer.json`
(or `.devcontainer.json`) from the HOST's copy of the project, when the session is
created: never from the session's copy, which the agent can change, and a restart
keeps what the first start read (the container, its image and its recorded
postStartCommand). The image (`image`, or `build.dockerfile`), the features (local, or
pulled from their registry by operations/remote_features.py) and
the cage's layer (operations/layer.py) are built once per content: the image is tagged
`claude-cage-dev-<project>:<key>`, the key a hash of everything that went into it, so
a second start finds it and builds nothing.

The lifecycle commands run inside the session, as its user, under its network policy:
the create commands once, after the session's first start; postStartCommand at every
start. Their output goes to the container's own output (`logs --raw`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from claude_cage import __version__, devcontainer, hostgit, labels, paths, policy, workdir
from claude_cage import config as config_mod
from claude_cage.devcontainer import DevContainer
from claude_cage.engine.api import EngineAPI
from claude_cage.errors import BadInput, CageError
from claude_cage.operations.build import ca_certificates
from claude_cage.operations.layer import add_layer, build_output, ensure_image
from claude_cage.operations.remote_features import Fetcher
from claude_cage.parsing import parse_env

IMAGE_REPO = "claude-cage-dev"
SKIP_DIRS = {".git", "node_modules", ".venv", "__pycache__"}
Progress = Callable[[str], None]


@dataclass(frozen=True)
class DevPlan:
    file: str  # the host's devcontainer.json
    image: str
    built: bool  # False: the image of an earlier start was found
    create_command: str
    start_command: str
    workspace_folder: str | None

    def describe(self) -> str:
        how = "built" if self.built else "cached"
        return f"devcontainer: {self.file} (image {self.image}, {how})"


def host_project(clone: str | None, req: policy.SessionRequest) -> Path | None:
    """The project's directory on the host: the clone's repository, else the first
    mount's source."""
    if clone:
        return Path(hostgit.find_repo(clone).top)
    if req.mounts:
        return Path(req.mounts[0].source)
    return None


def found(clone: str | None, req: policy.SessionRequest) -> Path | None:
    """The host's devcontainer.json of a new session's project, unread; None when the
    session has no project or the project has none."""
    project = host_project(clone, req)
    return None if project is None else devcontainer.find(project)


def load(
    environ: Mapping[str, str],
    clone: str | None,
    req: policy.SessionRequest,
    fetch: devcontainer.Fetch | None = None,
) -> DevContainer | None:
    """The host's devcontainer.json of a new session's project, read (its remote
    features pulled by `fetch`); None when the session has no project or the project
    has none."""
    project = host_project(clone, req)
    file = found(clone, req)
    if project is None or file is None:
        return None
    inside = workdir.project_dir_of(req.clone, [m.target for m in req.mounts])
    return devcontainer.read(file, project, inside, environ, fetch)


def fetcher(cfg: config_mod.Config, data_dir: Path, progress: Progress | None) -> Fetcher:
    """What pulls a start's remote features: through the configured mirrors, into the
    data directory's cache."""
    return Fetcher(
        data_dir,
        cfg["feature_registry_mirrors"],
        cfg["feature_registry_ca"],
        progress,
    )


def _slug(path: Path) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", path.name.lower()).strip("-.") or "project"


def _tree(root: Path) -> Iterator[str]:
    """Each file under root (names, sizes, mtimes): a build context's fingerprint."""
    for top, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(files):
            path = Path(top, name)
            try:
                st = path.lstat()
            except OSError:
                continue
            yield f"{path.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n"


def cache_key(engine: EngineAPI, cfg: config_mod.Config, dc: DevContainer) -> str:
    """A hash of everything the session image is made of: claude-cage's version and
    layer, the stock image it takes the cage from, the configuration, the image or the
    Dockerfile with its context, and the features."""
    digest = hashlib.sha256()

    def add(*parts: object) -> None:
        for part in parts:
            digest.update(part if isinstance(part, bytes) else str(part).encode())
            digest.update(b"\0")

    add(__version__, engine.image_id(cfg["image_cli"]) or "", dc.text)
    for file in sorted(paths.package_data("images", "layer").iterdir()):
        add(file.name, file.read_bytes())
    if dc.image:
        add("image", dc.image, engine.image_id(dc.image) or "")
    if dc.dockerfile and dc.context:
        add("dockerfile", dc.dockerfile.read_bytes(), json.dumps(dc.build_args, sort_keys=True))
        add(dc.target or "", *_tree(dc.context))
    for feature in dc.features:
        add("feature", feature.id, json.dumps(feature.options, sort_keys=True))
        for file in sorted(p for p in feature.path.rglob("*") if p.is_file()):
            add(file.read_bytes())
    return digest.hexdigest()[:16]


def _build_project(engine: EngineAPI, dc: DevContainer, tag: str, progress: Progress) -> None:
    assert dc.dockerfile is not None and dc.context is not None
    progress(f"building {tag} from {dc.dockerfile}")
    chunks = engine.build(
        path=str(dc.context),
        dockerfile=str(dc.dockerfile),
        tag=tag,
        buildargs=dc.build_args,
        target=dc.target,
        pull=False,
    )
    build_output(chunks, f"the project's Dockerfile {dc.dockerfile}", progress)


def _build_features(
    engine: EngineAPI, dc: DevContainer, base: str, tag: str, progress: Progress
) -> None:
    """The features, installed as root on `base` in their order, each with its
    options as environment variables (the spec's install.sh contract)."""
    lines = [f"FROM {base}", "USER root"]
    with tempfile.TemporaryDirectory(prefix="cage-build-features-") as ctx:
        for i, feature in enumerate(dc.features):
            folder = f"feature-{i}"
            _copy_tree(feature.path, Path(ctx) / folder)
            env = " ".join(f"{k}={shlex.quote(v)}" for k, v in feature.options.items())
            lines += [
                f"COPY {folder} /tmp/cage-{folder}",
                f"RUN cd /tmp/cage-{folder} && chmod +x install.sh && "
                f"env _REMOTE_USER=claude _REMOTE_USER_HOME=/home/claude "
                f"_CONTAINER_USER=claude {env} ./install.sh && rm -rf /tmp/cage-{folder}",
            ]
            lines += [f"ENV {k}={json.dumps(v)}" for k, v in feature.container_env.items()]
        Path(ctx, "Dockerfile").write_text("\n".join(lines) + "\n")
        progress(f"building {tag}: features {', '.join(f.id for f in dc.features)}")
        build_output(
            engine.build(path=ctx, tag=tag, pull=False), "the devcontainer's features", progress
        )


def _copy_tree(source: Path, target: Path) -> None:
    shutil.copytree(source, target, symlinks=True)


def image_for(
    engine: EngineAPI,
    cfg: config_mod.Config,
    dc: DevContainer,
    project: str,
    progress: Progress | None = None,
) -> tuple[str, bool]:
    """The session image of this configuration: (tag, built). Found by its content
    key when an earlier start built it; else built: the project's image, its features,
    the cage's layer."""
    progress = progress or (lambda _message: None)
    if dc.image:
        ensure_image(engine, dc.image, progress)
    key = cache_key(engine, cfg, dc)
    tag = f"{IMAGE_REPO}-{project}:{key}"
    if (engine.image_labels(tag) or {}).get(labels.DEVCONTAINER) == key:
        return tag, False
    base = dc.image or f"{IMAGE_REPO}-{project}:{key}-project"
    if dc.dockerfile:
        _build_project(engine, dc, base, progress)
    if dc.features:
        with_features = f"{IMAGE_REPO}-{project}:{key}-features"
        _build_features(engine, dc, base, with_features, progress)
        base = with_features
    add_layer(engine, cfg, base, tag, ca_certificates([]), progress, {labels.DEVCONTAINER: key})
    return tag, True


def prepare(
    engine: EngineAPI,
    cfg: config_mod.Config,
    environ: Mapping[str, str],
    clone: str | None,
    req: policy.SessionRequest,
    data_dir: Path,
    keep_image: bool = False,
    progress: Progress | None = None,
) -> tuple[policy.SessionRequest, DevPlan | None]:
    """A new session's dev container: its image built or found, and the request to run
    it (image, environment, ports); the request as it was and None when the project has
    no devcontainer.json.
    The flags win over the file: --image keeps the configuration's image out, an --env
    or a --port of the same name or number stays as given. Remote features are pulled
    (or found in the data directory's cache) before anything is built."""
    dc = load(environ, clone, req, fetcher(cfg, data_dir, progress))
    if dc is None:
        return req, None
    project = host_project(clone, req)
    assert project is not None
    _checked_env(dc, dc.env)  # before a build: a reserved name is refused at once
    image, built = req.image, False
    if not keep_image:
        image, built = image_for(engine, cfg, dc, _slug(project), progress)
    env = _checked_env(dc, devcontainer.image_variables(dc.env, engine.image_env(image) or {}))
    taken = {container for _host, container in req.ports}
    added = tuple((port, port) for port in dc.ports if port not in taken)
    req = dataclasses.replace(req, image=image, env={**env, **req.env}, ports=(*req.ports, *added))
    policy.check(req)
    return req, DevPlan(
        file=str(dc.file),
        image=image,
        built=built,
        create_command=dc.create_command,
        start_command=dc.start_command,
        workspace_folder=dc.workspace_folder,
    )


def _checked_env(dc: DevContainer, values: dict[str, str]) -> dict[str, str]:
    try:
        return parse_env([f"{k}={v}" for k, v in values.items()])
    except BadInput as exc:
        raise BadInput(f"{dc.file}: containerEnv/remoteEnv: {exc.message}", exc.hint) from None


def lifecycle(
    engine: EngineAPI, container: str, plan: DevPlan | None, post_start: str | None, cwd: str
) -> list[str]:
    """A start's lifecycle commands: the create commands when `plan` (a new session),
    then the recorded postStartCommand. The warnings of those that failed."""
    runs = [("postStartCommand", post_start or "")]
    if plan is not None:
        runs.insert(0, ("create", plan.create_command))
    found = (run_lifecycle(engine, container, key, script, cwd) for key, script in runs)
    return [warning for warning in found if warning]


def run_lifecycle(engine: EngineAPI, container: str, key: str, script: str, cwd: str) -> str | None:
    """Run a lifecycle command in the session, as its user, its output into the
    container's own (`logs --raw`, through PID 1's stdout). A warning when it failed."""
    if not script:
        return None
    wrapped = (
        f"cd {shlex.quote(cwd)} 2>/dev/null || cd /workspace; "
        f"{{ echo '[devcontainer {key}]'; sh -c {shlex.quote(script)}; }} "
        f">/proc/1/fd/1 2>&1"
    )
    try:
        code, _output = engine.exec_run(container, ["sh", "-c", wrapped])
    except CageError as exc:
        return f"devcontainer {key} could not run: {exc.message}"
    if code != 0:
        return f"devcontainer {key} exited {code} (its output: claude-cage logs --raw)"
    return None
