"""Turn a container's `docker inspect` into the `docker run -d` that makes its twin.

The raw floor of `start` must run the same image with the same hardening, so the
flags are read back from a real session instead of being written out by hand: a
change to the policy changes the floor with it. Volumes get new names (created by
`docker run` itself, as claude-cage creates its own during `start`), the seccomp
profile is written to a file, and claude-cage's labels are replaced by the
benchmark's own.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any


def run_args(
    info: dict[str, Any],
    name: str,
    label: str,
    volumes: dict[str, str],
    new_volume: Callable[[], str],
    workdir: Path,
    publish: bool = True,
) -> list[str]:
    """Arguments for `docker run -d` (after `run -d`), ending with image and command.

    `volumes` maps a volume of the original to the name its twin uses; missing ones
    are named by `new_volume()` and added, so a session and its companion can share
    one mapping.
    """
    config, host = info["Config"], info["HostConfig"]
    args = ["--name", name, "--label", label]
    if config.get("User"):
        args += ["--user", config["User"]]
    if config.get("Hostname") and not info["Id"].startswith(config["Hostname"]):
        args += ["--hostname", config["Hostname"]]
    if config.get("WorkingDir"):
        args += ["--workdir", config["WorkingDir"]]
    for item in config.get("Env") or []:
        args += ["--env", item]
    if host.get("ReadonlyRootfs"):
        args.append("--read-only")
    for path, options in (host.get("Tmpfs") or {}).items():
        args += ["--tmpfs", f"{path}:{options}" if options else path]
    for cap in host.get("CapDrop") or []:
        args += ["--cap-drop", cap]
    for cap in host.get("CapAdd") or []:
        args += ["--cap-add", cap]
    for opt in host.get("SecurityOpt") or []:
        args += ["--security-opt", _security_opt(opt, workdir)]
    if host.get("Memory"):
        args += ["--memory", str(host["Memory"])]
    if host.get("MemorySwap"):
        args += ["--memory-swap", str(host["MemorySwap"])]
    if host.get("NanoCpus"):
        args += ["--cpus", f"{host['NanoCpus'] / 1e9:g}"]
    if host.get("PidsLimit"):
        args += ["--pids-limit", str(host["PidsLimit"])]
    for limit in host.get("Ulimits") or []:
        args += ["--ulimit", f"{limit['Name']}={limit['Soft']}:{limit['Hard']}"]
    args += ["--network", host.get("NetworkMode") or "default"]
    if host.get("IpcMode"):
        args += ["--ipc", host["IpcMode"]]
    if host.get("Init"):
        args.append("--init")
    if host.get("AutoRemove"):
        args.append("--rm")
    for mount in host.get("Mounts") or []:
        if mount["Type"] == "volume" and mount["Source"] not in volumes:
            volumes[mount["Source"]] = new_volume()
        args += ["--mount", _mount(mount, volumes)]
    if publish:
        for port, bindings in (host.get("PortBindings") or {}).items():
            for b in bindings or []:
                args += ["--publish", f"{b.get('HostIp') or '127.0.0.1'}:{b['HostPort']}:{port}"]
    args.append(config["Image"])
    args += config.get("Cmd") or []
    return args


def _security_opt(opt: str, workdir: Path) -> str:
    """The engine reports the seccomp profile inline; the docker CLI wants a file."""
    if not opt.startswith("seccomp=") or opt in ("seccomp=unconfined", "seccomp=default"):
        return opt
    path = workdir / "seccomp.json"
    path.write_text(opt[len("seccomp=") :])
    return f"seccomp={path}"


def _mount(mount: dict[str, Any], volumes: dict[str, str]) -> str:
    parts = [f"type={mount['Type']}", f"target={mount['Target']}"]
    if mount["Type"] == "volume":
        parts.append(f"source={volumes[mount['Source']]}")
        if (mount.get("VolumeOptions") or {}).get("NoCopy"):
            parts.append("volume-nocopy")
    elif mount.get("Source"):
        parts.append(f"source={mount['Source']}")
    if mount.get("ReadOnly"):
        parts.append("readonly")
    return ",".join(parts)


def keep_binds(info: dict[str, Any], under: Path, into: Path) -> dict[str, Any]:
    """The inspect with each bind source below `under` (a session's own files, such as its
    managed settings, gone once it is destroyed) copied into `into` and pointed there."""
    info = copy.deepcopy(info)
    for index, mount in enumerate(info["HostConfig"].get("Mounts") or []):
        source = Path(mount.get("Source") or "")
        if mount["Type"] == "bind" and source.is_relative_to(under) and source.exists():
            kept = into / f"bind{index}-{source.name}"
            if source.is_dir():
                shutil.copytree(source, kept, dirs_exist_ok=True)
            else:
                shutil.copy2(source, kept)
            mount["Source"] = str(kept)
    return info
