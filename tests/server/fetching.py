"""A consumer's Fetch as the Fetch handler's tests send it: an engine with
records in a topic, the request (answered at once: max_wait 0, min_bytes
0), its answer over a real socket, and the answer's entries."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.protocol.apis import ApiKey, load_request_schema
from s3stream.fetcher import Fetcher
from tests.server.in_process import InProcessServer
from tests.server.wire import Wire, build

TIMEOUT = 30.0
MAX_BYTES = 1 << 20
"""The request's max_bytes and each partition's: more than any test's data."""

Named = tuple[int, int] | tuple[int, int, int]
"""A partition as a Fetch names it: (partition, offset), or (partition,
offset, current leader epoch); without an epoch, -1 (none known)."""


def send_records(opened: engine.Engine, topic: str, counts: Mapping[int, int]) -> None:
    """``counts[p]`` records (values v0, v1...) to each partition ``p``,
    each acknowledged before the next is sent: one batch a record."""
    with opened.producer() as producer:
        for partition, count in counts.items():
            for i in range(count):
                producer.send(topic, b"v%d" % i, partition=partition).result(TIMEOUT)


@contextmanager
def engine_with_records(
    data: Path, partitions: int, counts: Mapping[int, int], topic: str = "t"
) -> Iterator[engine.Engine]:
    """An engine (small config) opened at ``data`` with ``topic`` of
    ``partitions`` partitions and records sent to it (send_records)."""
    with engine.open(data, config=engine.EngineConfig.small()) as opened:
        opened.create_topic(topic, partitions)
        send_records(opened, topic, counts)
        yield opened


@contextmanager
def transactions_aborted_and_open(
    opened: engine.Engine, topic: str, aborted_partition: int, open_partition: int
) -> Iterator[None]:
    """A transaction aborted in ``aborted_partition`` and one left open in
    ``open_partition`` (its last stable offset below its high watermark)
    until the block ends."""
    aborted = opened.producer(transactional_id="aborted")
    open_txn = opened.producer(transactional_id="open")
    try:
        aborted.init_transactions()
        aborted.begin_transaction()
        aborted.send(topic, b"gone", partition=aborted_partition)
        # written, so the abort leaves it aborted (unsent, it would fail)
        aborted.flush(TIMEOUT)
        aborted.abort_transaction()
        open_txn.init_transactions()
        open_txn.begin_transaction()
        open_txn.send(topic, b"open", partition=open_partition)
        open_txn.flush(TIMEOUT)
        yield
    finally:
        aborted.close()
        open_txn.close()


def fetch_request(
    version: int,
    topics: Iterable[tuple[str | uuid.UUID, Iterable[Named]]],
    *,
    isolation_level: int = 0,
    session_id: int = 0,
    session_epoch: int = -1,
) -> Any:
    """A Fetch of ``topics``, each named by name (before v13) or by id (a
    UUID, from v13), with its partitions (see Named) in order; sessionless
    unless ``session_epoch`` opens or continues a session."""
    named = []
    for topic, partitions in topics:
        key: dict[str, Any] = {"topic": topic} if isinstance(topic, str) else {"topic_id": topic}
        entries = [
            {
                "partition": partition[0],
                "fetch_offset": partition[1],
                "partition_max_bytes": MAX_BYTES,
                "current_leader_epoch": partition[2] if len(partition) > 2 else -1,
            }
            for partition in partitions
        ]
        named.append(key | {"partitions": entries})
    return build(
        load_request_schema(ApiKey.FETCH, version),
        replica_id=-1,
        max_wait=datetime.timedelta(0),
        min_bytes=0,
        max_bytes=MAX_BYTES,
        isolation_level=isolation_level,
        session_id=session_id,
        session_epoch=session_epoch,
        topics=named,
    )


def answer(opened: engine.Engine, request: Any) -> Any:
    """``request``'s answer from a wire server started on ``opened`` for it."""
    server = InProcessServer(opened)
    try:
        with Wire(server.bootstrap) as wire:
            return wire.request(request)
    finally:
        server.stop()


def entries_by_partition(response: Any) -> dict[int, Any]:
    """The entries of a one-topic answer, by partition."""
    (topic,) = response.responses
    return {p.partition_index: p for p in topic.partitions}


def before_the_object_read(
    monkeypatch: pytest.MonkeyPatch, change: Callable[[], object], read: str = "_object_read"
) -> list[bool]:
    """``change`` made once, when the first object read is about to start
    (after the look and the log cache's answer); the list says it was.
    ``read``: the Fetcher's read to hold, the one a fetch awaits, or the
    one an engine's own reader makes in place (``_read_objects``)."""
    started = getattr(Fetcher, read)
    changed: list[bool] = []

    def changed_first(self: Fetcher, *args: Any) -> Any:
        if not changed:
            changed.append(True)
            change()
        return started(self, *args)

    monkeypatch.setattr(Fetcher, read, changed_first)
    return changed


def changed_after(
    monkeypatch: pytest.MonkeyPatch, owner: object, name: str, change: Callable[[], object]
) -> None:
    """``owner.name`` (a module's function, an object's method) made to
    call ``change`` after each of its calls, before its answer returns:
    the moment between a handler's lookup and what it does with it."""
    called = getattr(owner, name)

    def then_changed(*args: Any) -> Any:
        found = called(*args)
        change()
        return found

    monkeypatch.setattr(owner, name, then_changed)
