"""A producer process for the crash tests: it is SIGKILLed at a random moment.

    child_producer.py DATA_DIR STORE TOPIC PARTITIONS FIRST_ID

Opens the engine on DATA_DIR (STORE "-": the local object store under it,
else an object store URL), creates TOPIC unless it exists, and sends records
with ids FIRST_ID, FIRST_ID + 1, ... for ever through the embedded producer.
It writes one line per event to stdout, with a single write(2) each, so a
line is either whole in the pipe or absent:

    opened                      the engine is open
    topic                       the topic exists
    ack PARTITION OFFSET ID     the send's future resolved (the record is durable)
    fail ID ERROR               the send's future failed

A record's value is b"ID:" plus padding, its key b"kN" (or none), and it
carries a header naming its id. With KILL_AFTER_PUTS=n (local store only)
the process kills itself right after the n-th object put it makes once the
topic exists, before the manifest commit that would make that object part of
the log. (The puts of an open that re-uploads the WAL a killed run left do
not count: on a loaded machine they could reach n before the first send.) With
KILL_BEFORE_CATALOG=1 it kills itself when the engine first writes to its
catalog stream, after creating that stream: a brand-new data directory's
worst moment. With WAIT_FOR_GO=1 it imports what opening STORE needs and
then waits for a line on stdin before it opens the engine: the parent starts
the next child while it still holds the data directory to check the log.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import random
import signal
import sys
from collections import deque
from concurrent.futures import Future

import engine
from s3stream import ObjectStore, StreamStoreConfig
from s3stream.store import LocalStore

CONFIG = engine.EngineConfig(
    checkpoint_interval_s=0.05,
    # A checkpoint at most looks while records flow, as the kills are to
    # land during checkpoints too (docs/design/0128: by bytes, not time).
    checkpoint_bytes=4096,
    cleaner_interval_s=3600,
    store=StreamStoreConfig(
        upload_bytes=16 * 1024,
        upload_interval_s=0.02,
        block_bytes=4096,
        wal_segment_bytes=64 * 1024,
        compaction_interval_s=0.1,
        small_object_bytes=1 << 20,
        garbage_grace_s=0,
    ),
)


class KillAfterPuts(LocalStore):
    puts = 0
    limit = 0
    armed = False

    def put(self, key: str, data: bytes | bytearray | memoryview) -> str:
        version = super().put(key, data)
        if KillAfterPuts.armed and key.startswith("objects/"):
            KillAfterPuts.puts += 1
            if KillAfterPuts.puts == KillAfterPuts.limit:
                os.kill(os.getpid(), signal.SIGKILL)
        return version


def say(line: str) -> None:
    os.write(1, (line + "\n").encode())


def value_of(record_id: int) -> bytes:
    return b"%d:" % record_id + b"x" * (record_id * 37 % 900)


def main() -> None:
    data_dir, store_arg, topic, partitions, first_id = sys.argv[1:6]
    object_store: ObjectStore | str | None = None if store_arg == "-" else store_arg
    if os.environ.get("WAIT_FOR_GO") == "1":
        if store_arg != "-":
            importlib.import_module("s3stream.store.s3")  # boto3's import, before the go
        if not sys.stdin.readline():
            return  # the parent gave up on this child before its round
    if os.environ.get("KILL_BEFORE_CATALOG") == "1":
        from engine.catalog import Catalog

        def killed(*args: object) -> None:
            os.kill(os.getpid(), signal.SIGKILL)

        # Every catalog write, the first open's included, goes through append_all.
        Catalog.append_all = killed  # type: ignore[method-assign,assignment]
    KillAfterPuts.limit = int(os.environ.get("KILL_AFTER_PUTS", "0"))
    if KillAfterPuts.limit:
        object_store = KillAfterPuts(os.path.join(data_dir, "objects"))
    e = engine.open(data_dir, object_store, CONFIG)
    say("opened")
    with contextlib.suppress(engine.TopicExists):
        e.create_topic(topic, int(partitions))
    say("topic")
    KillAfterPuts.armed = True
    rng = random.Random(int(first_id))
    producer = e.producer(linger_ms=rng.choice([0, 1, 5]), batch_size=rng.choice([512, 16384]))
    record_id = int(first_id)
    pending: deque[Future[engine.RecordMetadata]] = deque()

    def report(record_id: int, future: Future[engine.RecordMetadata]) -> None:
        error = future.exception()
        if error is None:
            metadata = future.result()
            say(f"ack {metadata.partition} {metadata.offset} {record_id}")
        else:
            say(f"fail {record_id} {type(error).__name__}: {error}")

    bursts = 0
    while True:
        for _ in range(rng.randint(1, 40)):
            kind = rng.random()
            key = None if kind < 0.2 else b"k%d" % (record_id % 5)
            partition = rng.randrange(int(partitions)) if kind > 0.9 else None
            future = producer.send(
                topic,
                value_of(record_id),
                key=key,
                headers=[("id", b"%d" % record_id)],
                partition=partition,
            )
            future.add_done_callback(functools.partial(report, record_id))
            record_id += 1
        pending.append(future)
        if len(pending) > 3:  # a few bursts in flight, not an unbounded queue
            pending.popleft().exception()
        bursts += 1
        if bursts % 10 == 0:
            producer.flush()


if __name__ == "__main__":
    main()
