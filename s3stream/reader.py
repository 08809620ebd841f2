"""The read path from object storage: object index, block fetches, read-ahead.

The manifest says which object holds an offset; the object's index (read
once with one suffix GET, then cached) says which block; the block is read
whole with one ranged GET into the block cache. A reader that keeps asking
where its last read ended is catching up sequentially, so the next blocks are
fetched ahead of it, several GETs in flight, on the reader's own workers:
reads never wait behind uploads and uploads never wait behind reads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import Executor
from typing import NamedTuple

from s3stream.block_cache import BlockCache, Loader
from s3stream.errors import CorruptObject
from s3stream.manifest_state import ManifestState, ObjectMeta
from s3stream.objects import (
    INDEX_ENTRY,
    SUFFIX_READ_BYTES,
    BlockInfo,
    ObjectIndex,
    StoredBatch,
    parse_block,
    parse_footer,
    parse_index,
    read_index,
)
from s3stream.store import ObjectStore


class _BlockRef(NamedTuple):
    key: str
    info: BlockInfo


class ObjectReader:
    def __init__(
        self,
        store: ObjectStore,
        block_cache: BlockCache,
        executor: Executor,
        *,
        readahead_bytes: int = 32 * 1024 * 1024,
        readahead_span_bytes: int = 8 * 1024 * 1024,
        index_cache_entries: int = 4096,
    ) -> None:
        self.store = store
        self.block_cache = block_cache
        self._executor = executor
        self._readahead_bytes = readahead_bytes
        self._span_bytes = readahead_span_bytes
        self._index_entries = index_cache_entries
        self._indexes: OrderedDict[str, ObjectIndex] = OrderedDict()
        self._lock = threading.Lock()
        self._read_ends: dict[int, int] = {}
        self.gets = 0

    def read(
        self,
        state: ManifestState,
        stream_id: int,
        offset: int,
        max_bytes: int,
        end: int,
        at_least_one: bool = True,
    ) -> list[StoredBatch]:
        """Batches of the stream from the one holding ``offset``, up to
        ``max_bytes`` (but one even if bigger, if ``at_least_one``) and not
        past ``end``, from objects only."""
        out: list[StoredBatch] = []
        budget = max_bytes
        refs = self._blocks_from(state, stream_id, offset)
        for ref in refs:
            for batch in self._block(ref):
                if batch.end_offset <= offset:
                    continue
                if batch.end_offset > end or (
                    (out or not at_least_one) and len(batch.payload) > budget
                ):
                    break
                out.append(batch)
                budget -= len(batch.payload)
                offset = batch.end_offset
            else:
                if budget > 0 and offset < end:
                    continue
            break
        with self._lock:
            sequential = self._read_ends.get(stream_id) == out[0].base_offset if out else False
            self._read_ends[stream_id] = offset
        if sequential and self._readahead_bytes > 0:
            self._read_ahead(state, stream_id, offset)
        return out

    def _read_ahead(self, state: ManifestState, stream_id: int, offset: int) -> None:
        """Fetches the blocks after ``offset`` (up to the read-ahead window)
        that nobody has yet, adjacent ones together in one ranged GET."""
        window = self._readahead_bytes
        span: list[_BlockRef] = []
        for ref in self._blocks_from(state, stream_id, offset):
            if window <= 0:
                break
            window -= ref.info.size
            if not self.block_cache.claim((ref.key, ref.info.position)):
                self._submit_span(span)
                span = []
                continue
            if span and not self._extends(span, ref):
                self._submit_span(span)
                span = []
            span.append(ref)
        self._submit_span(span)

    def _extends(self, span: list[_BlockRef], ref: _BlockRef) -> bool:
        last = span[-1]
        size = last.info.position + last.info.size - span[0].info.position
        return (
            last.key == ref.key
            and last.info.position + last.info.size == ref.info.position
            and size + ref.info.size <= self._span_bytes
        )

    def _submit_span(self, span: list[_BlockRef]) -> None:
        if span:
            self._executor.submit(self._load_span, span)

    def _load_span(self, span: list[_BlockRef]) -> None:
        key = span[0].key
        start = span[0].info.position
        end = span[-1].info.position + span[-1].info.size
        try:
            self.gets += 1
            data = memoryview(self.store.get(key, start, end))
        except BaseException as error:
            for ref in span:
                self.block_cache.abandon((key, ref.info.position), error)
            return
        for ref in span:
            block_key = (key, ref.info.position)
            begin = ref.info.position - start
            try:
                batches = parse_block(key, ref.info, data[begin : begin + ref.info.size])
            except BaseException as error:
                self.block_cache.abandon(block_key, error)
                continue
            self.block_cache.fulfil(block_key, ref.info.size, batches)

    def _blocks_from(
        self, state: ManifestState, stream_id: int, offset: int
    ) -> Iterator[_BlockRef]:
        """The stream's blocks from the one holding ``offset`` on, across objects."""
        ranges = state.ranges.get(stream_id)
        if ranges is None:
            return
        while True:
            found = ranges.find(offset)
            if found is None:
                return
            _, range_end, object_id = found
            meta = state.objects[object_id]
            index = self.index(meta)
            i = index.find(stream_id, offset)
            while i is not None and i < len(index.blocks):
                info = index.blocks[i]
                if info.stream_id != stream_id or info.start_offset >= range_end:
                    break
                yield _BlockRef(meta.key, info)
                offset = info.end_offset
                i += 1
            if offset < range_end:  # the index disagrees with the manifest
                raise CorruptObject(meta.key, f"no block holds offset {offset}")

    def _block(self, ref: _BlockRef) -> list[StoredBatch]:
        return self.block_cache.get((ref.key, ref.info.position), ref.info.size, self._loader(ref))

    def _loader(self, ref: _BlockRef) -> Loader:
        def load() -> list[StoredBatch]:
            self.gets += 1
            start = ref.info.position
            data = self.store.get(ref.key, start, start + ref.info.size)
            return parse_block(ref.key, ref.info, data)

        return load

    def index(self, meta: ObjectMeta) -> ObjectIndex:
        """The object's index: cached, or read with one GET of the object's tail."""
        with self._lock:
            index = self._indexes.get(meta.key)
            if index is not None:
                self._indexes.move_to_end(meta.key)
                return index
        tail_start = max(0, meta.size - SUFFIX_READ_BYTES)
        tail = self.store.get(meta.key, tail_start, meta.size)
        self.gets += 1
        found = read_index(meta.key, tail, meta.size)
        if isinstance(found, int):  # a big index: read exactly the rest of it
            footer = parse_footer(meta.key, tail, meta.size)
            length = footer.block_count * INDEX_ENTRY.size
            index_bytes = self.store.get(meta.key, found, found + length)
            self.gets += 1
            found = parse_index(meta.key, footer, index_bytes)
        with self._lock:
            self._indexes[meta.key] = found
            while len(self._indexes) > self._index_entries:
                self._indexes.popitem(last=False)
        return found

    def forget(self, key: str) -> None:
        with self._lock:
            self._indexes.pop(key, None)
