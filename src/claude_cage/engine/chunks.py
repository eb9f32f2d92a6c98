"""The engine's streamed answers (a tar, as it comes) read as files."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any


class ChunkFile(io.RawIOBase):
    """A stream of byte chunks (the engine's tar, as it comes) as a file to read."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._rest = memoryview(b"")  # what is left of the chunk at hand, not copied

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._rest:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._rest = memoryview(chunk)
        size = min(len(buffer), len(self._rest))
        buffer[:size] = self._rest[:size]
        self._rest = self._rest[size:]
        return size
