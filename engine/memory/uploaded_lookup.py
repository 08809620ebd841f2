"""Lookup by header from the object store alone (``tidelog lookup``).

Reads the committed manifest, the catalog as uploaded and the objects'
header indexes and batches; writes nothing and takes no epoch, so it runs
beside a serving engine without fencing it (as ``tidelog verify`` does).
It sees what is committed to the object store: records still only in a
WAL are not seen (docs/memory.md, "Lookup by header").
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from engine.config import TopicConfig
from engine.memory.lookup import FoundRecord, matching_records
from engine.memory.uploaded_transactions import stable_view
from engine.partition import inflation_limit
from engine.verify import partitions_of, uploaded_catalog
from s3stream import ObjectStore
from s3stream.lookup import committed_batches, header_candidates
from s3stream.manifest import load_state
from s3stream.manifest_state import ManifestState
from s3stream.outside_reads import reloading


def lookup_uploaded(
    store: ObjectStore,
    topics: Sequence[str],
    header: str,
    value: bytes,
    read_committed: bool = False,
) -> list[FoundRecord]:
    """``Engine.lookup_many`` over what ``store`` holds committed (read again
    from a newer manifest if a serving engine compacts away objects it
    needs meanwhile: s3stream/outside_reads.py). ``read_committed``: only
    below each partition's last stable offset, without aborted
    transactions' records, as committed in the store (found in each
    partition's last uploaded checkpoint and the batches after it:
    engine/memory/uploaded_transactions.py)."""
    found, _ = reloading(store, partial(_lookup, store, topics, header, value, read_committed))
    return found


def _lookup(
    store: ObjectStore,
    topics: Sequence[str],
    header: str,
    value: bytes,
    read_committed: bool,
    state: ManifestState,
) -> list[FoundRecord]:
    current = partial(load_state, store)
    catalog = uploaded_catalog(store, state, current)
    found: list[FoundRecord] = []
    for topic in topics:
        chosen = partitions_of(catalog, topic, None)  # UnknownTopic if it is not there
        meta = catalog.topics[topic]
        limit = inflation_limit(TopicConfig(meta.configs, {}))
        for name, index, stream_id in chosen:
            stream = state.streams.get(stream_id)
            if stream is None:
                continue
            start, end = stream.start_offset, stream.end_offset
            aborted = None
            if read_committed:
                state_stream_id = meta.streams[index][1]
                end, aborted = stable_view(
                    store, state, stream_id, state_stream_id, start, end, current
                )
            candidates = header_candidates(
                store, state, stream_id, start, end, header, value, current
            )
            records: dict[int, FoundRecord] = {}
            for batch in committed_batches(store, state, stream_id, candidates, current):
                for record in matching_records(
                    name, index, batch.payload, header, value, limit, meta.topic_id, aborted
                ):
                    if start <= record.ref.offset < end:
                        records[record.ref.offset] = record
            found += [records[offset] for offset in sorted(records)]
    return found
