"""A bytes-bounded LRU cache of parsed data blocks, with in-flight dedup.

Readers and read-ahead ask for a block by (object key, position); a block
being fetched is fetched once, whoever asks first (``get``, or ``claim``
for read-ahead that fetches many blocks in one GET), and everyone else
waits on the same future.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future

from s3stream.objects import StoredBatch

BlockKey = tuple[str, int]
Loader = Callable[[], list[StoredBatch]]


class BlockCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._blocks: OrderedDict[BlockKey, tuple[list[StoredBatch], int]] = OrderedDict()
        self._loading: dict[BlockKey, Future[list[StoredBatch]]] = {}

    def get(self, key: BlockKey, size: int, loader: Loader) -> list[StoredBatch]:
        """The block, loaded in the calling thread if nobody is loading it."""
        with self._lock:
            cached = self._blocks.get(key)
            if cached is not None:
                self._blocks.move_to_end(key)
                self.hits += 1
                return cached[0]
            self.misses += 1
            future = self._loading.get(key)
            mine = future is None
            if future is None:
                future = self._loading[key] = Future()
        if mine:
            self._load(key, size, loader, future)
        return future.result()

    def holds(self, key: BlockKey) -> bool:
        """Whether the block is cached or on its way."""
        with self._lock:
            return key in self._blocks or key in self._loading

    def claim(self, key: BlockKey) -> bool:
        """Marks a block as being loaded by the caller, unless it is cached or
        already on its way; the caller must then ``fulfil`` or ``abandon`` it."""
        with self._lock:
            if key in self._blocks or key in self._loading:
                return False
            self._loading[key] = Future()
            return True

    def fulfil(self, key: BlockKey, size: int, batches: list[StoredBatch]) -> None:
        with self._lock:
            future = self._loading.pop(key)
            self._insert(key, size, batches)
        future.set_result(batches)

    def abandon(self, key: BlockKey, error: BaseException) -> None:
        with self._lock:
            future = self._loading.pop(key)
        future.set_exception(error)

    def _load(
        self, key: BlockKey, size: int, loader: Loader, future: Future[list[StoredBatch]]
    ) -> None:
        try:
            batches = loader()
        except BaseException as error:
            with self._lock:
                del self._loading[key]
            future.set_exception(error)
            return
        with self._lock:
            del self._loading[key]
            self._insert(key, size, batches)
        future.set_result(batches)

    def _insert(self, key: BlockKey, size: int, batches: list[StoredBatch]) -> None:
        if size > self.max_bytes:
            return
        self._blocks[key] = (batches, size)
        self.size += size
        while self.size > self.max_bytes:
            _, (_, evicted) = self._blocks.popitem(last=False)
            self.size -= evicted

    def in_flight(self) -> int:
        with self._lock:
            return len(self._loading)
