"""A CreateTime batch is stored with the largest of its records' timestamps
as its maxTimestamp, whatever the producer's header claimed, as Kafka's
LogValidator stores it (setMaxTimestamp): a claim far in the future or in
the past is replaced and the CRC rewritten, the records' bytes kept, on the
one-partition Produce path and on the general one, compressed or not, kept
in its codec or recompressed. A raw Produce of a crafted batch over a real
socket; a raw Fetch of the stored bytes; ListOffsets by timestamp and
MAX_TIMESTAMP answering from the records' times."""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest

import engine
import native
from engine.clock import ManualClock
from engine.offset_lookup import MAX_TIMESTAMP
from engine.server.handlers import produce
from native import Compression, RecordSpec
from tests.server.in_process import InProcessServer
from tests.server.test_list_offsets import list_offsets
from tests.server.wire import Wire, fetch_from_start, produce_answers

T0 = 1_700_000_000_000
NOW = T0 + 5_000
TIMESTAMPS = (T0 - 10, T0 + 20, T0)  # the largest is the second record's
LARGEST = T0 + 20
CLAIMS = {
    "future": T0 + 10 * 365 * 86_400_000,  # a segment that never expires by time
    "past": T0 - 86_400_000,  # a batch ListOffsets by timestamp would skip
    "largest_but_one": T0,
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    with (
        engine.open(tmp_path_factory.mktemp("node"), clock=ManualClock(NOW)) as opened,
        InProcessServer(opened) as server,
    ):
        yield server


def _claiming(claimed: int, compression: Compression) -> bytes:
    """A producer's batch whose header claims ``claimed`` as its maxTimestamp,
    its CRC right for that claim."""
    specs = [RecordSpec(ts, b"k", b"v%d" % i, ()) for i, ts in enumerate(TIMESTAMPS)]
    batch = bytearray(native.encode_batch(specs, compression=compression))
    struct.pack_into(">q", batch, 35, claimed)
    struct.pack_into(">I", batch, 17, native.crc32c(memoryview(batch)[21:]))
    assert native.scan_batches(batch)[0].max_timestamp == claimed
    return bytes(batch)


def _offset_for(served: InProcessServer, topic: str, timestamp: int) -> tuple[int, int, int]:
    with Wire(served.bootstrap) as wire:
        (answer,) = wire.request(list_offsets(topic, timestamp, 9)).topics[0].partitions
    return answer.error_code, answer.offset, answer.timestamp


@pytest.mark.parametrize("claim", sorted(CLAIMS))
@pytest.mark.parametrize("compression", [Compression.NONE, Compression.GZIP, Compression.ZSTD])
@pytest.mark.parametrize("recompressed", [False, True], ids=["kept", "recompressed"])
@pytest.mark.parametrize("path", ["one_partition", "general"])
def test_a_create_time_batch_is_stored_with_its_records_largest_timestamp(
    served: InProcessServer, claim: str, compression: Compression, recompressed: bool, path: str
) -> None:
    topic = f"t-{uuid.uuid4().hex[:12]}"
    configs = {"compression.type": "lz4"} if recompressed else {}
    served.server.engine.create_topic(topic, 2, configs)
    sent = _claiming(CLAIMS[claim], compression)
    partitions: list[dict[str, Any]] = [{"index": 0, "records": sent}]
    if path == "general":  # two partitions: _produce_one declines the request
        plain = native.encode_batch([RecordSpec(T0, b"k", b"v", ())])
        partitions.append({"index": 1, "records": plain})
    with mock.patch.object(produce, "_produce", wraps=produce._produce) as general:
        answers = produce_answers(served.bootstrap, [{"name": topic, "partition_data": partitions}])
    assert general.called == (path == "general")
    assert answers[(topic, 0)] == (0, 0)

    with Wire(served.bootstrap) as wire:
        (answer,) = wire.request(fetch_from_start(topic)).responses[0].partitions
    fetched = bytes(answer.records)
    (stored,) = native.validate_batches(fetched, from_client=False)  # its CRC checked
    assert stored.max_timestamp == LARGEST
    assert [r.timestamp for r in native.decode_records(fetched)] == list(TIMESTAMPS)
    if not recompressed:
        # Only the header's broker-owned fields changed: the records are the
        # bytes the producer sent, and so are the header's other fields.
        assert fetched[61:] == sent[61:]
        assert fetched[21:35] == sent[21:35] and fetched[43:61] == sent[43:61]

    # Kafka answers a timestamp from the records: the first at or after it.
    assert _offset_for(served, topic, T0 + 15) == (0, 1, LARGEST)
    assert _offset_for(served, topic, LARGEST + 1) == (0, -1, -1)
    assert _offset_for(served, topic, MAX_TIMESTAMP) == (0, 1, LARGEST)


@pytest.mark.parametrize("path", ["one_partition", "general"])
def test_a_batch_claiming_its_records_largest_is_stored_as_sent(
    served: InProcessServer, path: str
) -> None:
    """The usual producer's batch: nothing in its header is rewritten but
    the offset and the leader epoch, its CRC the producer's."""
    topic = f"t-{uuid.uuid4().hex[:12]}"
    served.server.engine.create_topic(topic, 2)
    sent = _claiming(LARGEST, Compression.NONE)
    partitions: list[dict[str, Any]] = [{"index": 0, "records": sent}]
    if path == "general":
        partitions.append({"index": 1, "records": sent})
    answers = produce_answers(served.bootstrap, [{"name": topic, "partition_data": partitions}])
    assert answers[(topic, 0)] == (0, 0)
    with Wire(served.bootstrap) as wire:
        (answer,) = wire.request(fetch_from_start(topic)).responses[0].partitions
    fetched = bytes(answer.records)
    assert fetched[:8] == sent[:8]  # offset 0, as sent
    assert fetched[16:] == sent[16:]  # the CRC and everything it covers


HOUR_MS = 3_600_000
INVALID_TIMESTAMP = 32


@pytest.mark.parametrize("compression", [Compression.NONE, Compression.ZSTD])
@pytest.mark.parametrize("path", ["one_partition", "general"])
def test_a_record_more_than_an_hour_ahead_is_refused_by_default(
    served: InProcessServer, compression: Compression, path: str
) -> None:
    """Kafka 4's message.timestamp.after.max.ms is one hour (KIP-1030): a
    topic created without it refuses a batch holding a record dated more
    than an hour past the broker's clock, INVALID_TIMESTAMP, and stores
    nothing of it; one dated an hour ahead exactly is taken."""
    topic = f"t-{uuid.uuid4().hex[:12]}"
    served.server.engine.create_topic(topic, 2)
    ahead = [RecordSpec(NOW, b"k", b"now", ()), RecordSpec(NOW + HOUR_MS + 1, b"k", b"late", ())]
    at_limit = [RecordSpec(NOW + HOUR_MS, b"k", b"limit", ())]
    plain = native.encode_batch([RecordSpec(NOW, b"k", b"v", ())])
    for specs, expected in ((ahead, (INVALID_TIMESTAMP, -1)), (at_limit, (0, 0))):
        partitions: list[dict[str, Any]] = [
            {"index": 0, "records": native.encode_batch(specs, compression=compression)}
        ]
        if path == "general":
            partitions.append({"index": 1, "records": plain})
        with mock.patch.object(produce, "_produce", wraps=produce._produce) as general:
            answers = produce_answers(
                served.bootstrap, [{"name": topic, "partition_data": partitions}]
            )
        assert general.called == (path == "general")
        assert answers[(topic, 0)] == expected
    with Wire(served.bootstrap) as wire:
        (answer,) = wire.request(fetch_from_start(topic)).responses[0].partitions
    assert [r.value for r in native.decode_records(bytes(answer.records))] == [b"limit"]
