"""The benchmark's sections, in the order they run. Each has `NAME` and `run(ctx)`."""

from sections import (
    audit,
    clone,
    coldstart,
    credentials,
    dashboard,
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
    snapshots,
    start,
)

SECTIONS = (
    listing,
    start,
    clone,
    snapshots,
    coldstart,
    memory,
    proxy,
    credentials,
    guard,
    packages,
    audit,
    eventfold,
    dashboard,
    hostshare,
    remote,
    loop,
    runtimes,
    podman,
)
ALL = {module.NAME: module for module in SECTIONS}
