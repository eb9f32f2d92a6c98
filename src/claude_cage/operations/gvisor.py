"""gVisor (runsc) on this engine: is it registered as sessions need it, and does this
image's Claude Code run on it?

`doctor` asks both. The second question starts a throwaway container on runsc (about
1.5 s) and keeps the verdict per Claude Code release in the data directory, so that
`start --runtime runsc` can refuse a release known not to run on gVisor without paying
for the question itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from dataclasses import dataclass
from typing import Any

from claude_cage import claude_code, labels, paths, policy, runtimes, workdir
from claude_cage.engine.answers import EngineInfo
from claude_cage.engine.api import EngineAPI
from claude_cage.errors import BadInput, CageError
from claude_cage.kinds import Mode, Network, Runtime

VERDICTS = "gvisor.json"  # in the data directory: {release: {"ok": bool, "detail": str}}
PROBE_PREFIX = "doctor-gvisor-"
UDS_FLAGS = ("--host-uds=all", "--fsgofer-host-uds")  # current releases, 2022 releases


@dataclass
class Registration:
    registered: bool
    args: list[str]

    @property
    def problems(self) -> list[str]:
        """What sessions need from the registration and it lacks."""
        if not self.registered:
            return []
        missing = []
        if not any(flag in self.args for flag in UDS_FLAGS):
            missing.append("--host-uds=all (filtered and desktop sessions use unix sockets)")
        if "--network=none" not in self.args:
            missing.append("--network=none (Debian's runsc refuses Docker's none without it)")
        return missing


def registration(info: EngineInfo) -> Registration:
    args = info.runtimes.get(runtimes.RUNSC)
    if args is None:
        return Registration(False, [])
    return Registration(True, list(args))


def _verdicts() -> dict[str, Any]:
    try:
        found = json.loads((paths.data_dir() / VERDICTS).read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _remember(release: str, ok: bool, detail: str) -> None:
    found = _verdicts()
    found[release] = {"ok": ok, "detail": detail}
    path = paths.data_dir() / VERDICTS
    tmp = path.with_suffix(".tmp")
    try:  # a cache of verdicts: on a full or read-only data directory, doctor asks again
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(found, indent=2) + "\n")
        tmp.replace(path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()


def check_start(engine: EngineAPI, image: str) -> None:
    """Refuse a session on runsc when gVisor is not registered, or when doctor found
    that this image's Claude Code does not run on it. A project's image (the cage's
    layer on the user's, label cage.from) runs that release on another system: it is
    asked itself, once per image, and its verdict kept by image id."""
    if not registration(engine.info()).registered:
        raise BadInput(
            "gVisor (runsc) is not registered with the Docker engine", runtimes.ENABLE_HINT
        )
    found = engine.image_labels(image) or {}
    release = found.get(claude_code.LABEL, "")
    verdict = _verdicts().get(release)
    if found.get(labels.FROM):
        key = engine.image_id(image) or image
        verdict = _verdicts().get(key)
        if verdict is None:
            ok, detail = probe(engine, image, key=key)
            verdict = {"ok": ok, "detail": detail}
        if verdict.get("ok") is False:
            raise BadInput(
                f"Claude Code does not run on gVisor in {image}: {verdict.get('detail', '')}",
                "start it with --runtime runc",
            )
    if isinstance(verdict, dict) and verdict.get("ok") is False:
        raise BadInput(
            f"Claude Code {release} does not run on gVisor here: {verdict.get('detail', '')}",
            "start it with --runtime runc, or build another release "
            "(claude-cage build cli --claude-code-version X.Y.Z) and run claude-cage doctor",
        )


def _probe_spec(image: str) -> policy.ContainerSpec:
    """A throwaway container on runsc, hardened like a session with no network."""
    name = PROBE_PREFIX + secrets.token_hex(3)
    user_tmpfs = f"rw,nosuid,nodev,uid={policy.SESSION_UID},gid={policy.SESSION_UID}"
    pids, nproc = runtimes.limits(Runtime.RUNSC, 64, 64)
    return policy.ContainerSpec(
        name=name,
        image=image,
        role=labels.Role.SESSION,
        labels=labels.for_session(
            name,
            paths.owner_id(),
            Mode.CLI,
            Network.NONE,
            True,
            labels.Role.SESSION,
            str(os.getpid()),
        ),
        command=["sleep", "60"],
        tmpfs={"/tmp": "rw,nosuid,nodev,size=64m", "/run": user_tmpfs, workdir.HOME: user_tmpfs},
        security_opt=["no-new-privileges:true"],
        mem_limit=512 * 1024**2,
        nano_cpus=10**9,
        pids_limit=pids,
        ulimits=[("nproc", nproc, nproc)],
        auto_remove=True,
        runtime=Runtime.RUNSC,
    )


def probe(engine: EngineAPI, image: str, key: str | None = None) -> tuple[bool, str]:
    """Whether this image's Claude Code starts on gVisor: (ok, what it said). The
    verdict is kept for `start --runtime runsc`, under `key` (default: the release)."""
    release = (engine.image_labels(image) or {}).get(claude_code.LABEL, "")
    spec = _probe_spec(image)
    try:
        engine.create(spec)
        engine.start(spec.name)
        code, output = engine.exec_run(spec.name, ["claude", "--version"])
    except CageError as exc:
        return False, f"the probe container did not run: {exc.message}"
    finally:
        with contextlib.suppress(CageError):
            engine.remove(spec.name)
    text = output.decode(errors="replace").strip()
    ok = code == 0 and text.startswith(release or "")
    detail = text.splitlines()[0] if ok and text else _failure(code, text)
    if key or release:
        _remember(key or release, ok, detail)
    return ok, detail


def _failure(code: int, text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    crash = [line for line in lines if "panic" in line or "crashed" in line]
    return f"exit {code}: " + (crash[0] if crash else lines[-1] if lines else "no output")[:200]
