"""Building the images from the Dockerfiles shipped inside the package.

Works where no registry can be reached: when the base image cannot be pulled, a
Debian base is bootstrapped with debootstrap and imported. Extra CA certificates
(a TLS-intercepting proxy's, say) are copied into every image and trusted at build
and run time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from claude_cage import __version__, claude_code, paths
from claude_cage import config as config_mod
from claude_cage.engine.api import EngineAPI
from claude_cage.errors import BadInput, CageError, EngineError
from claude_cage.operations import operation

if TYPE_CHECKING:
    from claude_cage.context import Context

HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
BOOTSTRAP_REPO = "claude-cage-base"

Progress = Callable[[str], None]


@dataclass
class BuildResult:
    images: list[str] = field(default_factory=list)
    base: str = ""
    bootstrapped: bool = False
    sent: bool = False  # copied from the local engine rather than built there
    name: str = "-"

    def event_details(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "base": self.base,
            "bootstrapped": self.bootstrapped,
            "sent": self.sent,
        }


def _suite(base: str) -> str:
    """debian:bookworm-slim -> bookworm."""
    tag = base.rpartition(":")[2] if ":" in base else "bookworm"
    return tag.split("-")[0] or "bookworm"


def bootstrap_base(engine: EngineAPI, suite: str, progress: Progress) -> str:
    """Make a minimal Debian base image with debootstrap + docker import."""
    image = f"{BOOTSTRAP_REPO}:{suite}"
    if engine.image_labels(image) is not None:
        progress(f"using bootstrapped base {image}")
        return image
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None or os.geteuid() != 0:
        raise EngineError(
            "the base image cannot be pulled and cannot be bootstrapped here",
            "as root, install debootstrap (apt-get install debootstrap) and build again, "
            "or pass --base with an image the engine has",
        )
    progress(f"bootstrapping Debian {suite} with debootstrap (about 30 s)")
    with tempfile.TemporaryDirectory(prefix="cage-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        run = subprocess.run(
            [debootstrap, "--variant=minbase", suite, str(rootfs)],
            capture_output=True,
            text=True,
            check=False,
        )
        if run.returncode != 0:
            tail = (run.stdout + run.stderr).strip().splitlines()[-3:]
            raise EngineError(
                f"debootstrap failed: {' / '.join(tail)}",
                "check that Debian's mirror can be reached",
            )
        tarball = Path(tmp) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], check=True)
        engine.import_image(str(tarball), BOOTSTRAP_REPO, suite)
    return image


def resolve_base(engine: EngineAPI, base: str, progress: Progress) -> tuple[str, bool]:
    if engine.image_labels(base) is not None:
        return base, False
    try:
        progress(f"pulling {base}")
        engine.pull(base)
        return base, False
    except CageError:
        progress(f"cannot pull {base}; falling back to debootstrap")
    return bootstrap_base(engine, _suite(base), progress), True


def ca_certificates(given: list[str]) -> list[Path]:
    if given:
        certs = [Path(c) for c in given]
    else:
        certs = sorted(HOST_CA_DIR.rglob("*.crt")) if HOST_CA_DIR.is_dir() else []
    for cert in certs:
        if "BEGIN CERTIFICATE" not in cert.read_text(errors="replace"):
            raise BadInput(f"{cert} is not a PEM certificate", "pass a .crt file in PEM format")
    return certs


def _build_one(
    engine: EngineAPI,
    kind: str,
    tag: str,
    args: dict[str, str],
    certs: list[Path],
    progress: Progress,
) -> None:
    with tempfile.TemporaryDirectory(prefix=f"cage-build-{kind}-") as ctx:
        shutil.copytree(paths.package_data("images", kind), ctx, dirs_exist_ok=True)
        cert_dir = Path(ctx) / "ca-certificates"
        cert_dir.mkdir(exist_ok=True)
        for i, cert in enumerate(certs):
            shutil.copy(cert, cert_dir / f"cage-extra-{i}-{cert.stem}.crt")
        progress(f"building {tag}")
        recent: list[str] = []
        for chunk in engine.build(path=ctx, tag=tag, buildargs=args, pull=False):
            if "error" in chunk:
                detail = "\n".join(recent[-15:])
                raise EngineError(
                    f"building {tag} failed: {chunk['error'].strip()}\n{detail}",
                    "fix the cause above and run 'claude-cage build' again",
                )
            line = (chunk.get("stream") or "").rstrip()
            if line:
                recent.append(line)
                if line.startswith("Step "):
                    progress(f"  {line}")


def _send_images(
    source: EngineAPI, target: EngineAPI, images: list[str], progress: Progress
) -> list[str]:
    """Copy images from one engine to another through their APIs (save, then load as
    it streams), skipping those the target already has."""
    sent = []
    for image in images:
        found = source.image_id(image)
        if found is None:
            raise EngineError(
                f"the local engine has no {image} to send",
                "build it here first: claude-cage build all",
            )
        if target.image_id(image) == found:
            progress(f"{target.endpoint.label} already has {image}")
            sent.append(image)
            continue
        progress(f"sending {image} to engine {target.endpoint.label}")
        moved = 0

        def counted(chunks: Any, image: str = image) -> Any:
            nonlocal moved
            for chunk in chunks:
                if (moved + len(chunk)) // 2**26 > moved // 2**26:  # every 64 MiB
                    progress(f"  {image}: {(moved + len(chunk)) // 2**20} MiB sent")
                moved += len(chunk)
                yield chunk

        target.load_image(counted(source.save_image(image)))
        progress(f"sent {image} ({moved // 2**20} MiB)")
        sent.append(image)
    return sent


def _current(engine: EngineAPI, image: str) -> bool:
    labels = engine.image_labels(image)
    return labels is not None and labels.get("cage.version") == __version__


@operation("build")
def build_on(
    ctx: Context,
    engine_name: str,
    target: str = "all",
    base: str | None = None,
    ca_certs: list[str] | None = None,
    claude_code_version: str | None = None,
    progress: Progress | None = None,
) -> BuildResult:
    """`build --engine NAME`: build on that engine; when it cannot pull the base image
    (no registry there), send it the local engine's images instead, building them here
    first when they are missing or older than this claude-cage. A remote engine gets no
    desktop image: desktop sessions run only on the local engine."""
    cfg = ctx.config
    cfg.raise_problems()
    progress = progress or (lambda _message: None)
    far = ctx.engine_named(engine_name)
    if target in ("desktop", "all") and not far.endpoint.is_local:
        progress("desktop sessions run only on the local engine: no desktop image there")
        target = "cli"
    base_image = base or cfg["base_image"]
    if far.image_labels(base_image) is None:
        try:
            progress(f"pulling {base_image} on engine {far.endpoint.label}")
            far.pull(base_image)
        except CageError:
            progress(f"engine {far.endpoint.label} cannot pull {base_image}: sending the images")
            return _send_from_here(
                ctx, far, cfg, target, base, ca_certs, claude_code_version, progress
            )
    return _build(ctx, far, target, base, ca_certs, claude_code_version, progress)


def _send_from_here(
    ctx: Context,
    far: EngineAPI,
    cfg: config_mod.Config,
    target: str,
    base: str | None,
    ca_certs: list[str] | None,
    claude_code_version: str | None,
    progress: Progress,
) -> BuildResult:
    here = ctx.local_engine()
    wanted = [cfg["image_companion"]]
    if target in ("cli", "desktop", "all"):
        wanted.append(cfg["image_cli"])
    if target in ("desktop", "all"):
        wanted.append(cfg["image_desktop"])
    if not all(_current(here, image) for image in wanted):
        _build(ctx, here, target, base, ca_certs, claude_code_version, progress)
    return BuildResult(images=_send_images(here, far, wanted, progress), sent=True)


def _build(
    ctx: Context,
    engine: EngineAPI,
    target: str = "all",
    base: str | None = None,
    ca_certs: list[str] | None = None,
    claude_code_version: str | None = None,
    progress: Progress | None = None,
) -> BuildResult:
    cfg = ctx.config
    cfg.raise_problems()
    progress = progress or (lambda _message: None)
    certs = ca_certificates(ca_certs or [])
    base_image, bootstrapped = resolve_base(engine, base or cfg["base_image"], progress)
    common = {"CAGE_VERSION": __version__}
    version = None
    if target in ("cli", "desktop", "all"):
        version = claude_code.resolve(claude_code_version or cfg["claude_code_version"])
        progress(f"Claude Code {version}")
    result = BuildResult(base=base_image, bootstrapped=bootstrapped)
    plan = [("companion", cfg["image_companion"], {"BASE": base_image})]
    if target in ("cli", "desktop", "all"):
        plan.append(
            (
                "cli",
                cfg["image_cli"],
                {
                    "BASE": base_image,
                    "CLAUDE_CODE_VERSION": str(version),
                },
            )
        )
    if target in ("desktop", "all"):
        plan.append(("desktop", cfg["image_desktop"], {"BASE": cfg["image_cli"]}))
    for kind, tag, args in plan:
        _build_one(engine, kind, tag, {**common, **args}, certs, progress)
        result.images.append(tag)
    return result


@operation("build")
def build(
    ctx: Context,
    target: str = "all",
    base: str | None = None,
    ca_certs: list[str] | None = None,
    claude_code_version: str | None = None,
    progress: Progress | None = None,
) -> BuildResult:
    """Build the images on the local engine."""
    return _build(ctx, ctx.local_engine(), target, base, ca_certs, claude_code_version, progress)
