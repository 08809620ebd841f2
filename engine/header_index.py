"""What a topic's objects index of its record headers: the topic config
``tidelog.index.headers`` (a comma list of header names), its check, and
the indexer the engine gives each partition's stream (docs/memory.md,
"Lookup by header").

The store calls the indexer on its upload and compaction threads when it
writes an object (s3stream/header_index.py): records are decoded there,
never on the produce path. The store knows batches, not records: the
engine, which knows Kafka's record format, decides what a header is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import native
from s3stream.header_index import Indexer, Unindexable, key_hash, name_hash
from s3stream.objects import StoredBatch

INDEX_HEADERS = "tidelog.index.headers"
MAX_INDEXED_HEADERS = 16
"""The most header names one topic indexes (each costs a pass over the
headers of every record uploaded)."""
MAX_HEADER_NAME = 249
"""The longest header name indexed (a topic name's limit: a name longer is a mistake)."""


def index_header_names(value: str) -> tuple[str, ...]:
    """The header names of a ``tidelog.index.headers`` value, in order."""
    return tuple(name.strip() for name in value.split(",") if name.strip())


def check_index_headers(value: str) -> str | None:
    """Why a ``tidelog.index.headers`` value is invalid, or None."""
    names = index_header_names(value)
    if len(names) > MAX_INDEXED_HEADERS:
        return f"at most {MAX_INDEXED_HEADERS} header names"
    if len(set(names)) != len(names):
        return "a header name is listed twice"
    for name in names:
        if len(name) > MAX_HEADER_NAME:
            return f"a header name is at most {MAX_HEADER_NAME} characters"
        if not name.isprintable() or any(c.isspace() for c in name):
            return f"header name {name!r} holds a space or a control character"
    return None


def header_indexer(names: Sequence[str], max_inflated: int) -> Indexer:
    """The indexer of a topic indexing ``names``: per batch, the hash of
    each (name, value) one of its records holds (a null value is not
    indexed); control batches hold no records to find."""
    wanted = frozenset(names)

    def keys(batches: Sequence[StoredBatch]) -> Iterable[tuple[int, int]]:
        found: list[tuple[int, int]] = []
        for batch in batches:
            try:
                records = native.decode_records(
                    batch.payload, skip_control=True, max_inflated=max_inflated
                )
            except native.BatchError as error:
                # Stored batches were checked when appended; one that does
                # not decode now leaves the object's stream uncovered, so
                # lookups scan it rather than miss it.
                raise Unindexable(str(error)) from error
            hashes = {
                key_hash(name, value)
                for record in records
                for name, value in record.headers
                if name in wanted and value is not None
            }
            found.extend((hashed, batch.base_offset) for hashed in hashes)
        return found

    return Indexer(tuple(name_hash(name) for name in names), keys)
