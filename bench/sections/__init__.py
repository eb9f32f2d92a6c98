"""The benchmark's sections, in the order they run. Each has `NAME` and `run(ctx)`."""

from sections import (
    audit,
    clone,
    coldstart,
    credentials,
    hostshare,
    listing,
    loop,
    memory,
    proxy,
    remote,
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
    audit,
    hostshare,
    remote,
    loop,
)
ALL = {module.NAME: module for module in SECTIONS}
