"""The benchmark's sections, in the order they run. Each has `NAME` and `run(ctx)`."""

from sections import (
    audit,
    clone,
    coldstart,
    credentials,
    eventfold,
    guard,
    hostshare,
    listing,
    loop,
    memory,
    packages,
    podman,
    policy,
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
    policy,
    packages,
    audit,
    eventfold,
    hostshare,
    remote,
    loop,
    runtimes,
    podman,
)
ALL = {module.NAME: module for module in SECTIONS}
