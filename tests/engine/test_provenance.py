"""Provenance stamping on ``tidelog.provenance = stamp`` topics, through the
engine and its embedded clients: every record gets the broker's headers
(who wrote it, on which listener, when it was received), a client's own
headers of a stamp header's name are replaced (its other headers, the agent
memory's ``tidelog.*`` ones among them, are kept), idempotence and transactions keep their
guarantees, and a stamp that would pass max.message.bytes is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

import engine
import native
from engine.clock import ManualClock
from engine.provenance import (
    CLIENT_ID,
    LISTENER,
    PRINCIPAL,
    RECEIVED_MS,
    Provenance,
)
from native import Compression, Record, RecordSpec
from tests.engine.conftest import EngineFactory

NOW = 1_700_000_000_000
STAMP = {"tidelog.provenance": "stamp"}


def read_all(e: engine.Engine, topic: str) -> list[Record]:
    out: list[Record] = []
    fetched = e.fetch(topic, 0, 0, 16 * 1024 * 1024)
    for batch in fetched.records:
        out += native.decode_records(batch, skip_control=True)
    return out


def stamped(principal: str, received_ms: int = NOW) -> tuple[tuple[str, bytes], ...]:
    return (
        (PRINCIPAL, principal.encode()),
        (LISTENER, b"embedded"),
        (RECEIVED_MS, str(received_ms).encode()),
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


def test_an_embedded_producer_stamps_the_principal_it_was_given(
    engine_factory: EngineFactory, clock: ManualClock
) -> None:
    e = engine_factory(clock=clock)
    e.create_topic("audit", 1, STAMP)
    e.create_topic("plain", 1)
    with e.producer(principal="User:alice", compression="zstd") as producer:
        for topic in ("audit", "plain"):
            producer.send(topic, b"v1", key=b"k", headers=[("trace", b"1")])
            producer.send(topic, b"v2", headers=[("tidelog.principal", b"User:root")])
        producer.flush(10)
    assert [r.headers for r in read_all(e, "audit")] == [
        (("trace", b"1"), *stamped("User:alice")),
        stamped("User:alice"),
    ]
    # A topic that does not stamp stores the client's headers as sent.
    assert [r.headers for r in read_all(e, "plain")] == [
        (("trace", b"1"),),
        (("tidelog.principal", b"User:root"),),
    ]
    batch = e.fetch("audit", 0, 0).records[0]
    assert native.scan_batches(batch)[0].compression == Compression.ZSTD


def test_a_raw_append_naming_nobody_is_stamped_anonymous_and_forgeries_go(
    engine_factory: EngineFactory, clock: ManualClock
) -> None:
    e = engine_factory(clock=clock)
    e.create_topic("audit", 1, STAMP)
    forged = [
        ("tidelog.principal", b"User:admin"),
        ("tidelog.received.ms", b"0"),
        ("x", b"y"),
        ("tidelog.client.address", b"10.0.0.1:1"),  # a name this stamp leaves out
        ("tidelog.correlation.id", b"refund-7"),  # the agent memory's, not the stamp's
    ]
    e.produce("audit", 0, native.encode_batch([RecordSpec(NOW, b"k", b"v", forged)]))
    clock.advance(5)
    writer = Provenance("User:bob", "SASL_PLAINTEXT", "app-7", "127.0.0.1:5555")
    e.submit("audit", 0, native.encode_batch([RecordSpec(NOW, b"k", b"v")]), provenance=writer)
    e.flush(10)
    first, second = read_all(e, "audit")
    assert first.headers == (
        ("x", b"y"),
        ("tidelog.correlation.id", b"refund-7"),
        *stamped("User:ANONYMOUS"),
    )
    assert dict(second.headers) == {
        PRINCIPAL: b"User:bob",
        CLIENT_ID: b"app-7",
        LISTENER: b"SASL_PLAINTEXT",
        "tidelog.client.address": b"127.0.0.1:5555",
        RECEIVED_MS: str(NOW + 5_000).encode(),
    }


def test_fetch_returns_the_stamped_batch_as_stored_across_a_restart(
    engine_factory: EngineFactory, tmp_path: Path, clock: ManualClock
) -> None:
    e = engine_factory(clock=clock)
    e.create_topic("audit", 1, STAMP)
    e.produce("audit", 0, native.encode_batch([RecordSpec(NOW, b"k", b"v")] * 3))
    stored = [bytes(b) for b in e.fetch("audit", 0, 0).records]
    e.close()
    again = engine_factory(tmp_path / "node", clock=clock)
    assert [bytes(b) for b in again.fetch("audit", 0, 0).records] == stored
    assert [r.headers for r in read_all(again, "audit")] == [stamped("User:ANONYMOUS")] * 3


def idempotent_batch(producer_id: int, epoch: int, sequence: int, count: int = 2) -> bytes:
    return native.encode_batch(
        [RecordSpec(NOW, b"k", b"%d" % (sequence + i)) for i in range(count)],
        producer_id=producer_id,
        producer_epoch=epoch,
        base_sequence=sequence,
    )


def test_idempotence_holds_on_a_stamp_topic(
    engine_factory: EngineFactory, clock: ManualClock
) -> None:
    e = engine_factory(clock=clock)
    e.create_topic("audit", 1, STAMP)
    producer_id, epoch = e.init_producer_id()
    first = e.produce("audit", 0, idempotent_batch(producer_id, epoch, 0))
    clock.advance(10)
    retried = e.produce("audit", 0, idempotent_batch(producer_id, epoch, 0))
    assert retried == first._replace(duplicate=True)  # recognised, not written again
    with pytest.raises(engine.OutOfOrderSequence):
        e.produce("audit", 0, idempotent_batch(producer_id, epoch, 5))
    assert e.produce("audit", 0, idempotent_batch(producer_id, epoch, 2)).base_offset == 2
    records = read_all(e, "audit")
    assert [r.value for r in records] == [b"0", b"1", b"2", b"3"]
    assert [r.headers[-1] for r in records] == [(RECEIVED_MS, str(NOW).encode())] * 2 + [
        (RECEIVED_MS, str(NOW + 10_000).encode())
    ] * 2
    header = native.scan_batches(e.fetch("audit", 0, 2).records[0])[0]
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (
        producer_id,
        epoch,
        2,
    )


def test_a_transactional_producer_stamps_and_only_committed_records_are_read(
    engine_factory: EngineFactory, clock: ManualClock
) -> None:
    e = engine_factory(clock=clock)
    e.create_topic("audit", 1, STAMP)
    with e.producer(transactional_id="tx", principal="User:carol") as producer:
        producer.init_transactions(10)
        producer.begin_transaction()
        producer.send("audit", b"kept", partition=0)
        producer.commit_transaction(10)
        producer.begin_transaction()
        producer.send("audit", b"dropped", partition=0)
        producer.abort_transaction(10)
    with e.consumer(isolation_level="read_committed", auto_offset_reset="earliest") as consumer:
        consumer.assign([("audit", 0)])
        records = consumer.poll(0)
    assert [(r.value, tuple(r.headers)) for r in records] == [(b"kept", stamped("User:carol"))]


def test_a_stamp_that_passes_max_message_bytes_is_refused_and_nothing_is_written(
    engine_factory: EngineFactory, clock: ManualClock
) -> None:
    e = engine_factory(clock=clock)
    batch = native.encode_batch([RecordSpec(NOW, b"k", b"v")] * 4)
    e.create_topic("audit", 1, {**STAMP, "max.message.bytes": len(batch) + 10})
    with pytest.raises(engine.RecordTooLarge) as refused:
        e.produce("audit", 0, batch)
    assert refused.value.error_code == 10  # MESSAGE_TOO_LARGE
    assert refused.value.limit == len(batch) + 10
    assert refused.value.size > refused.value.limit
    assert e.offsets("audit", 0) == (0, 0)


def test_the_topic_config_takes_none_or_stamp_only(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    with pytest.raises(engine.InvalidConfig):
        e.create_topic("t", 1, {"tidelog.provenance": "sign"})
    e.create_topic("t", 1)
    assert e.topic_config("t").get("tidelog.provenance") == "none"
    e.alter_configs("t", {"tidelog.provenance": "stamp"})
    assert e.topic_config("t").stamp_provenance


def test_a_topic_codec_and_a_stamp_compose(
    engine_factory: EngineFactory, clock: ManualClock
) -> None:
    e = engine_factory(clock=clock)
    e.create_topic("audit", 1, {**STAMP, "compression.type": "lz4"})
    sent = [RecordSpec(NOW, b"k%d" % i, b"v" * i, [("tidelog.listener", b"x")]) for i in range(5)]
    e.produce("audit", 0, native.encode_batch(sent, compression=Compression.GZIP))
    (batch,) = e.fetch("audit", 0, 0).records
    assert native.scan_batches(batch)[0].compression == Compression.LZ4
    assert [(r.key, r.value, r.headers) for r in read_all(e, "audit")] == [
        (s.key, s.value, stamped("User:ANONYMOUS")) for s in sent
    ]


def test_an_embedded_producer_sizes_its_batches_so_that_stamped_ones_still_fit(
    engine_factory: EngineFactory, clock: ManualClock
) -> None:
    # Small records in full batches: the stamp more than doubles each one, so
    # batches sized without it would pass max.message.bytes once stamped.
    e = engine_factory(clock=clock)
    e.create_topic("audit", 1, {**STAMP, "max.message.bytes": 64 * 1024})
    with e.producer(principal="User:alice", batch_size=48 * 1024, linger_ms=0) as producer:
        futures = [producer.send("audit", b"%08d" % i, partition=0) for i in range(6000)]
        producer.flush(30)
    assert [f.result(10).offset for f in futures] == list(range(6000))
    sizes = [len(batch) for batch in e.fetch("audit", 0, 0, 64 * 1024 * 1024).records]
    assert max(sizes) <= 64 * 1024


@pytest.mark.parametrize("codec", [Compression.NONE, Compression.LZ4])
def test_a_stamped_batch_keeps_its_records_largest_timestamp_not_its_claim(
    engine_factory: EngineFactory, clock: ManualClock, codec: Compression
) -> None:
    """The stamp re-encodes the batch with its header kept: the maxTimestamp
    it is stored with is still the records' largest, not the producer's
    claim (docs/design/0121)."""
    e = engine_factory(clock=clock)
    e.create_topic("audit", 1, STAMP)
    specs = [RecordSpec(NOW - 5, b"k", b"a"), RecordSpec(NOW - 1, b"k", b"b")]
    batch = bytearray(native.encode_batch(specs, compression=codec))
    batch[35:43] = (NOW + 10**12).to_bytes(8, "big")  # a claim decades ahead
    batch[17:21] = native.crc32c(memoryview(batch)[21:]).to_bytes(4, "big")
    e.produce("audit", 0, bytes(batch))
    (stored,) = native.validate_batches(e.fetch("audit", 0, 0).records[0], from_client=False)
    assert stored.max_timestamp == NOW - 1
    assert [r.headers for r in read_all(e, "audit")] == [stamped("User:ANONYMOUS")] * 2
