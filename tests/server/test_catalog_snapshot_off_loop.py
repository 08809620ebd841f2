"""A catalog snapshot made due by a write on the event loop (InitProducerId
reserving a new block of producer ids) is written on the catalog's own
worker, never on the loop: the block's record is durable before the
answer, and every other connection is served while the snapshot, in
parts, is packed and written (docs/design/0110)."""

from __future__ import annotations

import asyncio
import datetime
import errno
import select
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import engine
import native
from engine import catalog as catalog_module
from engine.acl_bindings import AclBinding, AclPermission, PatternType
from engine.protocol.apis import ApiKey, request_schema
from engine.protocol.kafka_code import KafkaCode
from engine.server.authorizer import AclOperation, ResourceType
from engine.state_parts import cut
from engine.transactions.coordinator import TransactionCoordinator
from native import RecordSpec
from s3stream import StreamStore, StreamStoreConfig
from tests.server.in_process import InProcessServer
from tests.server.wire import Wire, build, produce_answers, response_schema_for

SEGMENT = 1024 * 1024
WAIT_S = 60.0
"""How long a snapshot is held at most (a test that fails lets it go)."""
ANSWER_S = 10.0
"""How long an answer may take while it is held: far less."""
BATCH = native.encode_batch([RecordSpec(1_700_000_000_000, None, b"v", ())])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[InProcessServer]:
    store = StreamStoreConfig(wal_segment_bytes=SEGMENT)
    with engine.open(tmp_path / "node", config=engine.EngineConfig(store=store)) as opened:
        running = InProcessServer(opened)
        try:
            yield running
        finally:
            running.stop()


def _acls(start: int, count: int) -> list[AclBinding]:
    return [
        AclBinding(ResourceType.TOPIC, f"t-{i}", PatternType.LITERAL, f"User:{i:06d}" + "p" * 1000,
                   "*", AclOperation.READ, AclPermission.ALLOW)
        for i in range(start, start + count)
    ]  # fmt: skip


class HeldSnapshot:
    """A snapshot in parts being written, held before its trim until
    ``released``, for as long as a test needs; the threads that cut one
    into parts, and that trimmed to one."""

    def __init__(self, store: StreamStore, stream_id: int) -> None:
        self.entered = threading.Event()
        self.released = threading.Event()
        self.cut_on: list[str] = []
        self.trimmed_on: list[str] = []
        self._trim = store.trim
        self._stream_id = stream_id

    def cut(self, *args: Any, **kwargs: Any) -> list[bytes]:
        self.cut_on.append(threading.current_thread().name)
        return cut(*args, **kwargs)

    def trim(self, stream_id: int, offset: int) -> None:
        if stream_id == self._stream_id:
            self.trimmed_on.append(threading.current_thread().name)
            self.entered.set()
            self.released.wait(WAIT_S)
        self._trim(stream_id, offset)


def _answered_within(wire: Wire, request: Any, seconds: float) -> Any:
    wire.send(request)
    readable, _, _ = select.select([wire.sock], [], [], seconds)
    assert readable, "not answered: the event loop is held"
    return wire.receive(response_schema_for(request))[1]


def test_a_snapshot_due_after_a_producer_id_block_is_written_off_the_event_loop(
    server: InProcessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = server.server.engine
    catalog = opened.catalog
    opened.create_topic("t", 1)
    for start in range(0, 3200, 800):  # each record under a WAL record: the state past one
        catalog.add_acls(_acls(start, 800))
    stream = catalog.stream_id
    start = opened.store.start_offset(stream)
    held = HeldSnapshot(opened.store, stream)
    monkeypatch.setattr(catalog_module, "cut", held.cut)
    monkeypatch.setattr(opened.store, "trim", held.trim)
    monkeypatch.setattr(catalog_module, "SNAPSHOT_EVERY", 1)  # the next write makes it due
    init = build(request_schema(ApiKey.INIT_PRODUCER_ID, 4), transactional_id=None,
                 transaction_timeout=datetime.timedelta(seconds=60), producer_id=-1,
                 producer_epoch=-1)  # fmt: skip
    metadata = build(request_schema(ApiKey.METADATA, 12), topics=None,
                     allow_auto_topic_creation=False,
                     include_topic_authorized_operations=False)  # fmt: skip
    try:
        with Wire(server.bootstrap) as wire, Wire(server.bootstrap) as other:
            wire.send(init)  # the engine's first producer id: a new block
            assert held.entered.wait(WAIT_S), "no snapshot was made due"
            # The loop answers the InitProducerId and everyone else while
            # the snapshot is being written.
            readable, _, _ = select.select([wire.sock], [], [], ANSWER_S)
            assert readable, "InitProducerId not answered: the event loop is held"
            answer = wire.receive(response_schema_for(init))[1]
            assert (answer.error_code, answer.producer_id) == (KafkaCode.NONE, 0)
            assert catalog.state.producer_ids_end == catalog_module.PRODUCER_ID_BLOCK
            found = _answered_within(other, metadata, ANSWER_S)
            assert "t" in {t.name for t in found.topics}
            record = {"partition_data": [{"index": 0, "records": BATCH}], "name": "t"}
            assert produce_answers(server.bootstrap, [record]) == {("t", 0): (KafkaCode.NONE, 0)}
            # A write made due while it runs starts no second snapshot.
            catalog.add_acls(_acls(10_000, 1))
            assert len(held.cut_on) == 1
            assert opened.store.start_offset(stream) == start  # not trimmed yet
    finally:
        held.released.set()
    server.until_on_loop(lambda: opened.store.start_offset(stream) > start)
    assert len(held.cut_on) == len(held.trimmed_on) == 1
    assert held.cut_on[0].startswith("tidelog-catalog-snapshot")
    assert held.trimmed_on[0].startswith("tidelog-catalog-snapshot")
    assert len(catalog.state.acls) == 3201
    assert catalog.state.snapshots_in_parts == 0  # written, not read: a reader takes it
    reread = catalog_module.CatalogState()
    for record in catalog_module.read_records(opened.store, stream):
        reread.apply(record)
    assert reread.snapshots_in_parts == 1
    assert reread.to_wire() == catalog.state.to_wire()


def test_a_snapshot_due_after_a_block_taken_off_the_loop_under_the_coordinators_lock(
    server: InProcessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An embedded transactional producer takes its producer id on its own
    thread, under the transaction coordinator's lock, which the event loop
    takes for every transactional request: a snapshot its id's block makes
    due is written on the catalog's worker too, and the loop is not held
    behind that lock for it."""
    opened = server.server.engine
    stream = opened.catalog.stream_id
    start = opened.store.start_offset(stream)
    held = HeldSnapshot(opened.store, stream)
    monkeypatch.setattr(opened.store, "trim", held.trim)
    monkeypatch.setattr(catalog_module, "SNAPSHOT_EVERY", 1)  # the block's record makes it due
    embedded: list[tuple[int, int]] = []

    def init_embedded() -> None:  # as TransactionalProducer.init_transactions
        embedded.append(opened.transactions.init_producer_id("embedded", 60_000).result(WAIT_S))

    init = build(request_schema(ApiKey.INIT_PRODUCER_ID, 4), transactional_id="other",
                 transaction_timeout=datetime.timedelta(seconds=60), producer_id=-1,
                 producer_epoch=-1)  # fmt: skip
    taker = threading.Thread(target=init_embedded, name="embedded-producer")
    taker.start()
    try:
        assert held.entered.wait(WAIT_S), "no snapshot was made due"
        with Wire(server.bootstrap) as wire:
            answer = _answered_within(wire, init, ANSWER_S)
        assert (answer.error_code, answer.producer_id) == (KafkaCode.NONE, 1)
    finally:
        held.released.set()
        taker.join(WAIT_S)
    assert embedded == [(0, 0)]
    server.until_on_loop(lambda: opened.store.start_offset(stream) > start)
    assert len(held.trimmed_on) == 1
    assert held.trimmed_on[0].startswith("tidelog-catalog-snapshot")


def test_an_open_refused_on_an_event_loop_waits_for_its_snapshot_before_the_store_closes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An engine opened on an event loop (an embedded async caller) whose
    catalog writes made a snapshot due hands it to the catalog's worker; an
    open refused after that (here the transaction coordinator's start) closes
    the store only once the worker is done, as a close does: nothing is
    written to a store being closed, and no worker is left behind."""
    monkeypatch.setattr(catalog_module, "SNAPSHOT_EVERY", 1)  # the first records make it due
    sent_on: list[str] = []
    send = catalog_module.send

    def recorded(*args: Any, **kwargs: Any) -> Any:
        sent_on.append(threading.current_thread().name)
        return send(*args, **kwargs)

    workers_at_close: list[list[str]] = []
    close = StreamStore.close

    def closing(store: StreamStore, *args: Any, **kwargs: Any) -> Any:
        workers_at_close.append(_snapshot_workers())
        return close(store, *args, **kwargs)

    def refused(coordinator: TransactionCoordinator) -> None:
        raise OSError(errno.EIO, "the transactions' state could not be read")

    monkeypatch.setattr(catalog_module, "send", recorded)
    monkeypatch.setattr(StreamStore, "close", closing)
    monkeypatch.setattr(TransactionCoordinator, "start", refused)

    async def open_on_the_loop() -> None:
        engine.open(tmp_path / "node")

    with pytest.raises(OSError, match="could not be read"):
        asyncio.run(open_on_the_loop())
    assert sent_on and sent_on[0].startswith("tidelog-catalog-snapshot")
    assert workers_at_close == [[]], "the store closed with the catalog's worker still running"
    assert _snapshot_workers() == []


def _snapshot_workers() -> list[str]:
    return [
        thread.name
        for thread in threading.enumerate()
        if thread.name.startswith("tidelog-catalog-snapshot")
    ]


def test_a_snapshot_whose_hand_over_is_interrupted_is_made_again_at_the_next_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C while a snapshot claimed on the event loop is handed to the
    catalog's worker: the write's change is kept, and the snapshot is not
    left claimed by no one, which would stop every later one; the next
    write makes it."""
    monkeypatch.setattr(catalog_module, "SNAPSHOT_EVERY", 2)
    interrupted: list[bool] = []

    async def writes(opened: engine.Engine) -> None:
        catalog = opened.catalog
        submit = catalog._snapshots.submit

        def interrupting(*args: Any, **kwargs: Any) -> Any:
            if not interrupted:
                interrupted.append(True)
                raise KeyboardInterrupt
            return submit(*args, **kwargs)

        monkeypatch.setattr(catalog._snapshots, "submit", interrupting)
        with pytest.raises(KeyboardInterrupt):
            for i in range(4):
                catalog.add_acls(_acls(i, 1))
        catalog.add_acls(_acls(100, 1))

    with engine.open(tmp_path / "node") as opened:
        stream = opened.catalog.stream_id
        start = opened.store.start_offset(stream)
        asyncio.run(writes(opened))
        opened.catalog.close()  # the worker's snapshot done
        assert interrupted
        assert opened.store.start_offset(stream) > start, "no snapshot after the interrupted one"
        kept = opened.catalog.state.to_wire()
    with engine.open(tmp_path / "node") as again:
        assert again.catalog.state.to_wire() == kept


def test_a_producer_id_block_is_answered_while_a_snapshot_is_being_packed(
    server: InProcessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An InitProducerId that starts a new block of producer ids while a
    snapshot is being packed (under the lock that orders the catalog's
    changes, by an admin write here) is answered at once, its block's record
    durable, rather than holding the event loop, and every connection, for
    the packing. The block's record lands before the snapshot, which the
    trim drops: the snapshot carries its end in a producer_ids record of
    its own, so a reader after the trim resumes past the id answered
    (docs/design/0126)."""
    opened = server.server.engine
    catalog = opened.catalog
    for start in range(0, 3200, 800):  # each record under a WAL record: the state past one
        catalog.add_acls(_acls(start, 800))
    stream = catalog.stream_id
    start = opened.store.start_offset(stream)
    packing = threading.Event()
    released = threading.Event()

    def held_cut(*args: Any, **kwargs: Any) -> list[bytes]:
        packing.set()
        released.wait(WAIT_S)
        return cut(*args, **kwargs)

    monkeypatch.setattr(catalog_module, "cut", held_cut)
    monkeypatch.setattr(catalog_module, "SNAPSHOT_EVERY", 1)  # the next write makes it due
    writer = threading.Thread(target=catalog.add_acls, args=(_acls(10_000, 1),), name="admin")
    init = build(request_schema(ApiKey.INIT_PRODUCER_ID, 4), transactional_id=None,
                 transaction_timeout=datetime.timedelta(seconds=60), producer_id=-1,
                 producer_epoch=-1)  # fmt: skip
    writer.start()
    try:
        assert packing.wait(WAIT_S), "no snapshot was made due"
        with Wire(server.bootstrap) as wire:
            # The engine's first producer id: a new block, its record written
            # while the snapshot's packing holds the catalog's lock.
            answer = _answered_within(wire, init, ANSWER_S)
        assert (answer.error_code, answer.producer_id) == (KafkaCode.NONE, 0)
        assert catalog.state.producer_ids_end == catalog_module.PRODUCER_ID_BLOCK
        assert writer.is_alive(), "the snapshot ended before the id was answered"
    finally:
        released.set()
        writer.join(WAIT_S)
    assert opened.store.start_offset(stream) > start, "the snapshot was not trimmed to"
    records = catalog_module.read_records(opened.store, stream)
    blocks = [n for n, record in enumerate(records) if record[0] == "producer_ids"]
    assert len(blocks) == 1, "the block's own record is before the snapshot, trimmed"
    assert records[blocks[0]] == ["producer_ids", catalog_module.PRODUCER_ID_BLOCK]
    assert records[blocks[0] - 1][0] == catalog_module.SNAPSHOT_PART  # right after the last part
    reread = catalog_module.CatalogState()
    for record in records:
        reread.apply(record)
    assert reread.snapshots_in_parts == 1
    assert reread.producer_ids_end == catalog_module.PRODUCER_ID_BLOCK
    assert len(reread.acls) == 3201
