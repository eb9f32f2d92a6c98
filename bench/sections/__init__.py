"""The benchmark's sections, in the order they run. Each has `NAME` and `run(ctx)`."""

from sections import (
    audit,
    clone,
    coldstart,
    credentials,
    devcontainer,
    eventfold,
    guard,
    hostshare,
    listing,
    loop,
    memory,
    packages,
    podman,
    proxy,
    remote,
    runtimes,
    start,
)

SECTIONS = (
    listing,
    start,
    clone,
    coldstart,
    memory,
    proxy,
    credentials,
    guard,
    packages,
    devcontainer,
    audit,
    eventfold,
    hostshare,
    remote,
    loop,
    runtimes,
    podman,
)
ALL = {module.NAME: module for module in SECTIONS}
