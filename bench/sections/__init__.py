"""The benchmark's sections, in the order they run. Each has `NAME` and `run(ctx)`."""

from sections import audit, clone, coldstart, hostshare, listing, memory, proxy, start

SECTIONS = (listing, start, clone, coldstart, memory, proxy, audit, hostshare)
ALL = {module.NAME: module for module in SECTIONS}
