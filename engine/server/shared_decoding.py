"""Request bodies decoded once for the many clients that send the same.

Consumers tailing one partition, each in a group of its own, send Fetch
requests whose bodies are byte for byte alike (the same offset, limits and
wait; librdkafka uses no fetch sessions, so no session id sets them apart):
every growth of the partition brings one from each. Decoding a body (the
shape check's walk, then kio's reader) costs more than the rest of such a
Fetch's handling on the event loop, so a small body is decoded once and its
entity, immutable, is handed to every request that carries the same bytes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from engine.protocol.codec import body_offset, decode_request
from engine.protocol.fetch_request import decode_fetch
from engine.protocol.frames import RequestHeader

MAX_BODY_BYTES = 1024
"""Bodies up to this long are kept: a Fetch of a few partitions. A longer
one (many partitions) is rarely sent twice alike and is decoded each time."""
MAX_ENTRIES = 256


class DecodedBodies:
    """Decoded request bodies by API, version and bytes, least recently used
    dropped first; safe to share between servers on several threads."""

    def __init__(
        self,
        max_entries: int = MAX_ENTRIES,
        max_body: int = MAX_BODY_BYTES,
        first: Callable[[memoryview, int, int], Any | None] | None = None,
    ) -> None:
        self.max_entries = max_entries
        self.first = first
        """A decoder of the API's common shapes, tried before the general
        one: its value (equal to the general decoder's) or None."""
        self.max_body = max_body
        self.hits = 0
        self._bodies: OrderedDict[tuple[int, int, bytes], Any] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._bodies)

    def decode(self, header: RequestHeader, frame: memoryview) -> Any:
        """The request's body, as decode_request reads it."""
        offset = body_offset(header, frame)
        if len(frame) - offset > self.max_body:
            return self._decoded(header, frame, offset)
        key = (header.api_key, header.api_version, bytes(frame[offset:]))
        with self._lock:
            found = self._bodies.get(key)
            if found is not None:
                self._bodies.move_to_end(key)
                self.hits += 1
                return found
        decoded = self._decoded(header, frame, offset)  # a malformed body raises: never kept
        with self._lock:
            self._bodies[key] = decoded
            while len(self._bodies) > self.max_entries:
                self._bodies.popitem(last=False)
        return decoded

    def _decoded(self, header: RequestHeader, frame: memoryview, offset: int) -> Any:
        if self.first is not None:
            decoded = self.first(frame, offset, header.api_version)
            if decoded is not None:
                return decoded
        return decode_request(header, frame)


FETCH_BODIES = DecodedBodies(first=decode_fetch)
"""Fetch request bodies (handlers/fetch.py registers ``FETCH_BODIES.decode``)."""
