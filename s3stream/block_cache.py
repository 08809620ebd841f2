"""A bytes-bounded cache of parsed data blocks, with in-flight dedup, that
evicts blocks already read before blocks fetched ahead and not yet read.

Readers and read-ahead ask for a block by (object key, position); a block
being fetched is fetched once, whoever asks first (``get``, or ``claim``
for read-ahead that fetches many blocks in one GET), and everyone else
waits on the same future.

A block comes in *unread* when read-ahead fetched it (``fulfil``) and
*read* when a reader loaded it for itself (``get``); a ``get`` of an
unread block makes it read (also one it waited for while read-ahead
fetched it), and read-ahead finding a read block in its
window (``ahead``) makes it unread again: another reader, or the same one
after a seek back, is about to read it, so several consumers replaying the
same history keep it while any of them has it ahead. Eviction takes read
blocks first, least lately read first (a sequential reader never reads
again what it moved past), then unread ones, oldest first, counted in
``evicted_unread``: each of those is fetched twice if its reader comes
(docs/design/0155).

A block's batches are views of the buffer its GET read (parse_block), and
a GET of several blocks reads them into one buffer: any one of its blocks
keeps all of it. The cache counts a GET's buffer whole, once, while any
of its blocks is cached, so its bound holds for the bytes it keeps alive,
not only for the blocks' own (docs/design/0155, "Several readers of one
stream").
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sized
from concurrent.futures import Future

from s3stream.objects import StoredBatch

BlockKey = tuple[str, int]
Loader = Callable[[], list[StoredBatch]]
_Entry = tuple[list[StoredBatch], int, int]
"""A block's batches, its size and the id of the GET's buffer its batches
are views of (0: none, it is counted by its own size)."""


class BlockCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.hits = 0
        self.misses = 0
        self.evicted_unread = 0
        """Blocks fetched ahead and evicted before anyone read them."""
        self._lock = threading.Lock()
        self._read: OrderedDict[BlockKey, _Entry] = OrderedDict()
        """Blocks read, least lately read first: evicted first."""
        self._unread: OrderedDict[BlockKey, _Entry] = OrderedDict()
        """Blocks fetched (or wanted again) ahead of their readers, oldest first."""
        self._loading: dict[BlockKey, Future[list[StoredBatch]]] = {}
        self._buffers: dict[int, list[int]] = {}
        """The GET buffers cached blocks are views of, by id (each kept
        alive by the blocks, so no id is reused while listed): its bytes
        and how many cached blocks it holds."""

    def get(self, key: BlockKey, size: int, loader: Loader) -> list[StoredBatch]:
        """The block, loaded in the calling thread if nobody is loading it."""
        with self._lock:
            cached = self._unread.pop(key, None)
            if cached is not None:
                self._read[key] = cached
            else:
                cached = self._read.get(key)
                if cached is not None:
                    self._read.move_to_end(key)
            if cached is not None:
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
        batches = future.result()
        # Fetched ahead while this reader waited for it (claimed, then
        # fulfilled unread): read now, so it goes before what is still ahead.
        with self._lock:
            waited = self._unread.pop(key, None)
            if waited is not None:
                self._read[key] = waited
        return batches

    def ahead(self, key: BlockKey) -> bool:
        """Whether the block is cached or on its way, for read-ahead that has
        it in its window: a block already read is unread again (newest),
        kept like one just fetched for the reader about to read it."""
        # Asked for every block of every read's window, cached or not: a
        # block ahead of a reader is most often unread already, found with
        # one look-up, and nothing is called beyond the look-ups.
        with self._lock:
            if key in self._unread or key in self._loading:
                return True
            cached = self._read.pop(key, None)
            if cached is None:
                return False
            self._unread[key] = cached
            return True

    def claim(self, key: BlockKey) -> bool:
        """Marks a block as being loaded by the caller, unless it is cached
        (a block already read is unread again, as with ``ahead``) or already
        on its way; the caller must then ``fulfil`` or ``abandon`` it."""
        with self._lock:
            if key not in self._unread and key not in self._loading:
                cached = self._read.pop(key, None)
                if cached is None:
                    self._loading[key] = Future()
                    return True
                self._unread[key] = cached
            return False

    def fulfil(self, key: BlockKey, size: int, batches: list[StoredBatch]) -> None:
        """A claimed block, fetched ahead of its reader: cached unread."""
        with self._lock:
            future = self._loading.pop(key)
            self._insert(self._unread, key, size, batches)
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
            self._insert(self._read, key, size, batches)
        future.set_result(batches)

    def _insert(
        self,
        into: OrderedDict[BlockKey, _Entry],
        key: BlockKey,
        size: int,
        batches: list[StoredBatch],
    ) -> None:
        if size > self.max_bytes:
            return
        buffer = _buffer_of(batches, size, self.max_bytes)
        if buffer is None:
            into[key] = (batches, size, 0)
            self.size += size
        else:
            held = self._buffers.get(id(buffer))
            if held is None:
                self._buffers[id(buffer)] = [len(buffer), 1]
                self.size += len(buffer)
            else:
                held[1] += 1
            into[key] = (batches, size, id(buffer))
        while self.size > self.max_bytes:
            if self._read:
                _, (_, evicted, buffer_id) = self._read.popitem(last=False)
            else:
                _, (_, evicted, buffer_id) = self._unread.popitem(last=False)
                self.evicted_unread += 1
            if not buffer_id:
                self.size -= evicted
                continue
            held = self._buffers[buffer_id]
            held[1] -= 1
            if held[1] == 0:
                del self._buffers[buffer_id]
                self.size -= held[0]

    def in_flight(self) -> int:
        with self._lock:
            return len(self._loading)


def _buffer_of(batches: list[StoredBatch], size: int, max_bytes: int) -> Sized | None:
    """The buffer the block's batches are views of, where it holds more
    than the block (a GET of several blocks, or an index's tail) and is
    no more than half the cache (counted whole, a larger one would push
    out everything else, its own blocks too: each block is then counted
    by its size, as before). None: counted by its size."""
    if not batches:
        return None
    payload = batches[0].payload
    buffer: Sized | None = None if isinstance(payload, bytes) else getattr(payload, "obj", None)
    if buffer is None:
        return None
    held = len(buffer)
    return buffer if size < held <= max_bytes // 2 else None
