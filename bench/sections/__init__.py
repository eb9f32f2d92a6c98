"""The benchmark's sections, in the order they run. Each has `NAME` and `run(ctx)`."""

from sections import clone, coldstart, listing, memory, proxy, start

ALL = {module.NAME: module for module in (listing, start, clone, coldstart, memory, proxy)}
