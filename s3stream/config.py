"""The stream store's settings: sizes, intervals and limits of its parts."""

from __future__ import annotations

from dataclasses import dataclass, replace

from s3stream.manifest import DEFAULT_CHECKPOINT_EVERY, DEFAULT_OPEN_TIMEOUT_S
from s3stream.objects import DEFAULT_BLOCK_BYTES
from s3stream.ranges import (
    INT_MAX,
    THREADS_MAX,
    UINT32_MAX,
    Range,
    Text,
    at_least,
    check_ranges,
    check_texts,
    choice,
    count,
    memory,
    seconds,
)
from s3stream.store.hedged import HedgePolicy
from wal import Durability
from wal.thread_priority import MOST_NICE

MiB = 1024 * 1024

WAL_SEGMENT_LEAST = 16 * 1024
"""The smallest WAL segment: the WAL itself needs a few record headers
(wal/log.py), but the engine's state records and checkpoints are written in
parts of at most one WAL record, and a segment this size still holds a
Kafka batch of a few KiB and a part of a few KiB with room to spare."""

STORE_RANGES: dict[str, Range] = {
    # Kafka's segment.bytes is an INT; a larger segment is also a larger
    # preallocation, made whole when the segment is.
    "wal_segment_bytes": at_least(WAL_SEGMENT_LEAST, most=INT_MAX),
    "upload_bytes": memory(1),  # the active block is held in memory until it is sealed
    "upload_interval_s": seconds(),
    "log_cache_bytes": memory(0),  # 0: reads after an upload go to objects
    # Under a few KiB, the records an engine writes when it opens pass the
    # bound and its first create_topic is refused. It need not hold a WAL
    # segment: the bound is checked before an append, so a record of any
    # size passes it (s3stream/appender.py). Unuploaded bytes are held in
    # the log cache too: the bound and its headroom are memory.
    "max_unuploaded_bytes": memory(WAL_SEGMENT_LEAST),
    "unpaced_headroom_bytes": memory(0),
    # A block's size is a uint32 in its object's index (docs/object-format.md);
    # a block passes this only by one batch, alone in it.
    "block_bytes": at_least(1, most=UINT32_MAX),
    "stream_object_bytes": at_least(1),  # a threshold: nothing is sized by it
    "block_cache_bytes": memory(0),
    "readahead_bytes": memory(0),  # fetched ahead into the block cache
    "readahead_span_bytes": memory(1),  # one GET's body, read whole
    "read_workers": at_least(1, most=THREADS_MAX),
    "read_nice": at_least(0, most=MOST_NICE),  # Linux's nice values stop at 19
    "background_nice": at_least(0, most=MOST_NICE),
    "replay_rest_ratio": at_least(0, integer=False),
    "read_ahead_beside_live": at_least(0),
    # Kafka's RemoteLogManagerConfig: an INT, atLeast(1)
    "remote_fetch_max_wait_ms": count(1),
    "hedge_after": Range(least=1, integer=False, off=True),  # below 1 hedges most requests
    "hedge_floor_ms": at_least(0, integer=False),
    "hedge_max_share": at_least(0, integer=False, most=1),
    "compaction_interval_s": seconds(),
    "abandoned_writes_sweep_interval_s": seconds(0),  # 0: at every compaction pass
    "small_object_bytes": at_least(0),  # a threshold
    "force_split_after_s": seconds(0),
    "stream_object_max_bytes": memory(1),  # a merge's output is built in memory
    "merge_max_objects": at_least(2),  # a merge of one object would rewrite it for ever
    "merge_max_bytes": memory(1),  # what one compaction pass holds in memory
    "garbage_grace_s": seconds(0),
    "checkpoint_every": at_least(1),
    "open_timeout_s": seconds(0),
    "remote_linger_s": seconds(0),
}
"""The range of each of StreamStoreConfig's numbers (docs/engine.md and
docs/server.md list them; tests/engine/test_config_ranges.py holds them equal)."""

STORE_TEXTS: dict[str, Text] = {
    "durability": choice(*(durability.value for durability in Durability)),  # or the enum
}
"""StreamStoreConfig's strings: its one choice, given by name."""


@dataclass(frozen=True)
class StreamStoreConfig:
    durability: Durability | str = Durability.FSYNC
    wal_segment_bytes: int = 64 * MiB
    wal_preallocate: bool = True
    """Zero-fill each WAL segment when it is made, and keep a spare one
    ready, so appends never extend a file (steadier latency, at the cost of
    about two segments of disk as soon as the store opens)."""
    upload_bytes: int = 32 * MiB
    """Seal and upload the log cache's active block once it holds this much."""
    upload_interval_s: float = 2.0
    """... or once its oldest append is this old."""
    log_cache_bytes: int = 256 * MiB
    """Uploaded data kept in memory for tail reads (never evicted before upload)."""
    max_unuploaded_bytes: int = 1024 * MiB
    """Appends wait when this much is not uploaded yet (the store is slow or down)."""
    unpaced_headroom_bytes: int = 64 * MiB
    """Appends that never wait for room (state records, checkpoints,
    transaction markers: Pacing.NEVER) are refused once the unuploaded bytes
    pass ``max_unuploaded_bytes`` by this much, so that a client looping on
    them (offset commits, aborted transactions) through an outage cannot
    grow the WAL and the log cache without end."""
    block_bytes: int = DEFAULT_BLOCK_BYTES
    stream_object_bytes: int = 8 * MiB
    """A run of one stream at least this large goes to an object of its own."""
    block_cache_bytes: int = 256 * MiB
    readahead_bytes: int = 64 * MiB
    """How far ahead of a sequential reader blocks are fetched."""
    readahead_span_bytes: int = 16 * MiB
    """The most one read-ahead GET fetches (adjacent blocks go together)."""
    read_workers: int = 8
    read_nice: int = 5
    """How much lower than the process the threads that read from object
    storage run (Linux nice values, per thread; 0: the same priority): a
    replay of history then takes the CPU time live produce and tail reads
    leave (wal/thread_priority.py)."""
    background_nice: int = 10
    """How much lower than the thread that opens the store the background
    threads run (Linux nice values, per thread; 0: the same priority): the
    uploader's work while no append asks for remote durability, compaction,
    the manifest's checkpoints and deletions, the WAL's spare segments. The
    WAL's writer and sync threads, the opener's own thread (an event loop)
    and every upload a remote acknowledgement waits for keep their priority
    (wal/thread_priority.py)."""
    replay_rest_ratio: float = 0.5
    """While live traffic is present (appends, reads the log cache
    answers), a Kafka fetch's read from object storage is answered after a
    rest this many times as long as the read took, so a replay leaves CPU
    time to live produce and tail reads and keeps at least 1 / (1 + ratio)
    of its pace (0: no rest; s3stream/replay_pace.py). A replay's reads
    are a part of its round trips (the answer's transfer and the client's
    next request are not rested), so at 0.5 it kept 0.74-0.81 of its solo
    rate in the burst benchmark; 1.5 kept 0.55-0.63 and lowered the live
    tail only on a machine busy with other work (docs/design/0014)."""
    read_ahead_beside_live: int = 1
    """While live traffic is present, at most this many read-ahead loads
    (a GET of blocks and their parse, on the read threads) run at once; the
    others wait for one to end, at most a quarter of a second. Each
    runnable read thread takes CPU time on its own, however low its
    priority: at a replay's start every worker had a load, and the event
    loop's longest stalls were there, waiting for a CPU behind them
    (docs/design/0106). Alone, a replay loads with every worker. 0: never
    limited (s3stream/read_ahead_gate.py)."""
    remote_fetch_max_wait_ms: int = 500
    """The longest an async fetch (a Kafka Fetch, ``fetch_async``) waits
    for a read from object storage: past it, the partition is answered
    with no records, as Kafka answers one whose remote read is not done
    when ``remote.fetch.max.wait.ms`` ends (KIP-1018). The read goes on,
    and fetches at the same offset share it (docs/design/0060)."""
    hedge_after: float = 2.0
    """An object-store request that may be sent twice (a data object's PUT,
    the manifest's create-if-absent, a HEAD) and has not answered after
    this many times the recent median of its kind is sent again, the first
    answer winning (0: never; s3stream/store/hedged.py). S3 only: a local
    directory's requests queue on one disk."""
    hedge_floor_ms: float = 5.0
    """... but never sooner than this."""
    hedge_max_share: float = 0.1
    """Hedges are at most this share of the requests (plus 10 saved up in a
    quiet spell), so a store slow for everyone is not asked twice as much."""
    compaction_interval_s: float = 60.0
    abandoned_writes_sweep_interval_s: float = 3600.0
    """A local directory store is swept for temp files crashed writers left
    on open, then by a compaction pass at most this often: a sweep reads
    every directory of the store (s3stream/store/abandoned.py,
    docs/design/0041)."""
    small_object_bytes: int = 16 * MiB
    """Objects smaller than this are merged with their neighbours."""
    force_split_after_s: float = 1800.0
    """A stream-set object this old is split into stream objects, whatever its size."""
    stream_object_max_bytes: int = 64 * MiB
    """The most a merge of one stream's small stream objects writes."""
    merge_max_objects: int = 64
    merge_max_bytes: int = 256 * MiB
    """The most one compaction pass reads (and so holds in memory)."""
    garbage_grace_s: float = 60.0
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY
    open_timeout_s: float = DEFAULT_OPEN_TIMEOUT_S
    """How long opening waits out an object store that fails transiently
    (unreachable, throttling) before it refuses to open."""
    accept_data_loss: bool = False
    """Open a WAL whose acknowledged data is damaged by salvaging its readable
    records (each dropped range is logged), instead of refusing to open."""
    remote_linger_s: float = 0.002
    """How long an append waiting to be remotely durable lets others join
    its object before the upload starts; it starts sooner once as many
    appends wait as the last upload answered."""

    def __post_init__(self) -> None:
        if not isinstance(self.durability, Durability):
            check_texts(self, STORE_TEXTS)
            # Held as the enum, however given: a config read from a file
            # and one made with "fsync" are equal to the defaults.
            object.__setattr__(self, "durability", Durability(self.durability))
        check_ranges(self, STORE_RANGES)

    def hedge_policy(self) -> HedgePolicy:
        """The hedge_* settings (s3stream/store/hedged.py)."""
        return HedgePolicy(self.hedge_after, self.hedge_floor_ms / 1000, self.hedge_max_share)

    @classmethod
    def small(cls) -> StreamStoreConfig:
        """A small footprint for tests and scripts: 1 MiB WAL segments, none
        made before it is needed (an empty data directory takes a few KiB,
        not two 64 MiB segments), caches of a few MiB, and uploads after
        256 KiB or a quarter of a second, so reads from object storage are
        exercised early. Durability is unchanged: acknowledged appends are
        fsynced as with the defaults."""
        return replace(
            cls(),
            wal_segment_bytes=1 * MiB,
            wal_preallocate=False,
            upload_bytes=256 * 1024,
            upload_interval_s=0.25,
            log_cache_bytes=8 * MiB,
            max_unuploaded_bytes=64 * MiB,
            unpaced_headroom_bytes=8 * MiB,
            stream_object_bytes=1 * MiB,
            block_cache_bytes=8 * MiB,
            readahead_bytes=1 * MiB,
            readahead_span_bytes=1 * MiB,
            read_workers=2,
            small_object_bytes=1 * MiB,
            stream_object_max_bytes=8 * MiB,
            merge_max_bytes=16 * MiB,
        )
