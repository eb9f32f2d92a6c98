"""The engine's container-create request for a ContainerSpec: the one place that
writes the spec (policy.py decides it, and says why) in the Docker API's words."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from claude_cage.policy import ContainerSpec


def create_body(spec: ContainerSpec) -> dict[str, Any]:
    """The engine's container-create request for a spec (see policy.py for the why)."""
    mounts = [
        {
            "Type": "volume",
            "Source": v["source"],
            "Target": v["target"],
            "VolumeOptions": {"NoCopy": bool(v.get("no_copy"))},
            "ReadOnly": bool(v.get("read_only")),
        }
        for v in spec.volumes
    ] + [
        {"Type": "bind", "Source": b.source, "Target": b.target, "ReadOnly": b.read_only}
        for b in spec.binds
    ]
    host_config: dict[str, Any] = {
        "Mounts": mounts,
        "Tmpfs": spec.tmpfs,
        "ReadonlyRootfs": spec.read_only,
        "CapDrop": spec.cap_drop,
        "CapAdd": spec.cap_add,
        "SecurityOpt": spec.security_opt,
        "Memory": spec.mem_limit,
        "MemorySwap": spec.mem_limit,  # no swap beyond the memory limit
        "NanoCpus": spec.nano_cpus,
        "PidsLimit": spec.pids_limit,
        "Ulimits": [{"Name": n, "Soft": soft, "Hard": hard} for n, soft, hard in spec.ulimits],
        "NetworkMode": spec.network_mode,
        "PortBindings": {
            port: [{"HostIp": ip, "HostPort": str(host_port)}]
            for port, (ip, host_port) in spec.ports.items()
        },
        "AutoRemove": spec.auto_remove,
        "IpcMode": spec.ipc_mode,
        "Runtime": spec.runtime,
        "Init": False,  # tini is PID 1 in every image
    }
    if spec.log_size:  # the container's own output: two files, rotated by the engine
        host_config["LogConfig"] = {
            "Type": "json-file",
            "Config": {"max-size": str(max(spec.log_size // 2, 4096)), "max-file": "2"},
        }
    return {
        "Image": spec.image,
        "Hostname": spec.hostname or "",
        "User": spec.user,
        "Env": [f"{key}={value}" for key, value in spec.environment.items()],
        "Cmd": spec.command,
        "Labels": spec.labels,
        "WorkingDir": spec.working_dir or "",
        "ExposedPorts": {port: {} for port in spec.ports},
        "AttachStdin": False,
        "OpenStdin": False,
        "Tty": False,
        "HostConfig": host_config,
    }
