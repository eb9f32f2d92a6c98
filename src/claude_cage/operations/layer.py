"""The cage's layer on a project's own image: `claude-cage build --from IMAGE`.

images/layer/Dockerfile puts the stock CLI image's session (Claude Code, tini, tmux,
the entry points, any-uid support, the CA certificates) on top of IMAGE, in two
stages: the stock image's files are copied, not installed again, so no registry is
needed. The entry points and tmux.conf come from images/cli, the same files the stock
image has. A base the layer cannot run on is refused before anything is tagged, with
the one line its check printed (`cage-refused: ...`).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from claude_cage import __version__, claude_code, paths
from claude_cage import config as config_mod
from claude_cage.engine.api import EngineAPI
from claude_cage.errors import BadInput, CageError, EngineError
from claude_cage.operations import operation
from claude_cage.operations.build import ca_certificates

if TYPE_CHECKING:
    from claude_cage.context import Context

Progress = Callable[[str], None]
REFUSED = "cage-refused:"
CLI_FILES = ("cage-entrypoint", "cage-api-key", "cage-agent", "cage-exec", "tmux.conf")
SUPPORTED = "use an image based on Debian or Ubuntu (FROM debian:... or ubuntu:...)"


@dataclass
class LayerResult:
    image: str
    base: str
    claude_code_version: str
    name: str = "-"

    @property
    def images(self) -> list[str]:
        return [self.image]

    def event_details(self) -> dict[str, Any]:
        return {"images": self.images, "base": self.base}


def default_tag(image: str) -> str:
    """ghcr.io/org/app:1.2 -> app-cage:1.2 (a digest keeps only the name)."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    repo, _, tag = last.partition(":")
    return f"{repo}-cage:{tag or 'latest'}"


def build_output(chunks: Iterator[dict[str, Any]], what: str, progress: Progress) -> None:
    """Follow a build's stream; a failed step raises: a `cage-refused:` line as a
    refusal of the image (BadInput), anything else as the build's failure."""
    recent: list[str] = []
    for chunk in chunks:
        if "error" in chunk:
            raise _failure(what, chunk["error"].strip(), recent)
        line = (chunk.get("stream") or "").rstrip()
        if line:
            recent.extend(line.splitlines())
            if line.startswith("Step "):
                progress(f"  {line}")


def _failure(what: str, error: str, recent: list[str]) -> CageError:
    for line in recent:
        if REFUSED in line:
            return BadInput(line.split(REFUSED, 1)[1].strip(), SUPPORTED)
    if "/bin/sh" in error and "no such file" in error:
        return BadInput("the image has no /bin/sh: it is not Debian- or Ubuntu-based", SUPPORTED)
    detail = "\n".join(recent[-15:])
    return EngineError(
        f"building {what} failed: {error}\n{detail}",
        "fix the cause above and build again",
    )


def ensure_image(engine: EngineAPI, image: str, progress: Progress) -> None:
    """The engine has `image`, or pulls it."""
    if engine.image_labels(image) is not None:
        return
    try:
        progress(f"pulling {image}")
        engine.pull(image)
    except CageError as exc:
        raise BadInput(
            f"the engine has no image {image} and cannot pull it: {exc.message}",
            "build or pull it first (docker images lists what the engine has)",
        ) from None


def add_layer(
    engine: EngineAPI,
    cfg: config_mod.Config,
    base: str,
    tag: str,
    certs: list[Path],
    progress: Progress,
    labels: dict[str, str] | None = None,
) -> str:
    """Build `tag`: the cage's layer on `base` (which the engine has). Returns the
    Claude Code release it carries, the stock CLI image's."""
    cage_image = cfg["image_cli"]
    engine.require_image(cage_image)
    refuse_volumes(engine, base)
    version = (engine.image_labels(cage_image) or {}).get(claude_code.LABEL, "")
    with tempfile.TemporaryDirectory(prefix="cage-build-layer-") as ctx:
        shutil.copytree(paths.package_data("images", "layer"), ctx, dirs_exist_ok=True)
        for name in CLI_FILES:
            shutil.copy(paths.package_data("images", "cli", name), Path(ctx) / name)
        cert_dir = Path(ctx) / "ca-certificates"
        cert_dir.mkdir(exist_ok=True)
        for i, cert in enumerate(certs):
            shutil.copy(cert, cert_dir / f"cage-extra-{i}-{cert.stem}.crt")
        progress(f"building {tag}: the cage's layer on {base}")
        args = {
            "CAGE_IMAGE": cage_image,
            "FROM_IMAGE": base,
            "CAGE_VERSION": __version__,
            "CLAUDE_CODE_VERSION": version or "unset",
        }
        chunks = engine.build(path=ctx, tag=tag, buildargs=args, pull=False, labels=labels or {})
        build_output(chunks, tag, progress)
    return version


def refuse_volumes(engine: EngineAPI, base: str) -> None:
    """A session image declares no VOLUME: each would give the session an anonymous
    volume on the engine's disk, outside its volumes' size limits and its labels (so no
    command of claude-cage would ever remove it)."""
    declared = engine.image_volumes(base) or []
    if declared:
        raise BadInput(
            f"image {base} declares VOLUME {', '.join(declared)}: a session's disk is "
            "bounded, and a volume of its image would not be",
            "remove the VOLUME line from its Dockerfile (a project's is in .devcontainer/), "
            "or build from an image without one",
        )


@operation("build")
def build_from(
    ctx: Context,
    image: str,
    tag: str | None = None,
    ca_certs: list[str] | None = None,
    progress: Progress | None = None,
) -> LayerResult:
    """`build --from IMAGE [--tag NAME]`: a session image from the user's image, on the
    local engine."""
    cfg = ctx.config
    cfg.raise_problems()
    progress = progress or (lambda _message: None)
    engine = ctx.local_engine()
    certs = ca_certificates(ca_certs or [])
    ensure_image(engine, image, progress)
    target = tag or default_tag(image)
    version = add_layer(engine, cfg, image, target, certs, progress)
    return LayerResult(image=target, base=image, claude_code_version=version)
