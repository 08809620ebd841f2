"""ListOffsets' special timestamps over a real socket, answered as Kafka 4.x
answers them: MAX_TIMESTAMP (-3) through confluent-kafka's AdminClient,
EARLIEST_LOCAL (-4) and LATEST_TIERED (-5) with raw v9 / v10 requests and
kafka-python's list_partition_offsets, as the partition's records move from
the WAL and the log cache to object storage and the engine reopens from the
bucket."""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import IsolationLevel, TopicPartition
from confluent_kafka.admin import OffsetSpec
from kafka import KafkaAdminClient
from kafka import TopicPartition as PyTopicPartition
from kafka.admin import OffsetSpec as PyOffsetSpec

import engine
import native
from engine.protocol.apis import request_schema
from native.records import RecordSpec
from s3stream import StreamStoreConfig
from tests.server.in_process import ServedNode
from tests.server.wire import Wire, build

TIMEOUT = 30.0
T0 = 1_700_000_000_000
EARLIEST_LOCAL = -4
LATEST_TIERED = -5
EARLIEST_PENDING_UPLOAD = -6
UNSUPPORTED_VERSION = 35
UNKNOWN_SERVER_ERROR = -1
NO_UPLOADS = StreamStoreConfig(upload_interval_s=3600, compaction_interval_s=3600)


class Served(ServedNode):
    """An engine that uploads only when flushed, its wire server, and an admin client."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, engine.EngineConfig(store=NO_UPLOADS))

    def produce(self, topic: str, *timestamps: int) -> None:
        specs = [RecordSpec(ts, b"k", str(i).encode()) for i, ts in enumerate(timestamps)]
        self.engine.produce(topic, 0, native.encode_batch(specs))

    def max_timestamp(self, topic: str, committed: bool = False) -> tuple[int, int]:
        """(offset, timestamp) of AdminClient.list_offsets(OffsetSpec.max_timestamp())."""
        where = TopicPartition(topic, 0)
        level = IsolationLevel.READ_COMMITTED if committed else IsolationLevel.READ_UNCOMMITTED
        futures = self.admin.list_offsets(
            {where: OffsetSpec.max_timestamp()}, isolation_level=level, request_timeout=TIMEOUT
        )
        result = futures[where].result(TIMEOUT)
        return result.offset, result.timestamp

    def wire_offset(self, topic: str, timestamp: int, version: int) -> tuple[int, int, int]:
        """(error code, offset, timestamp) of a raw ListOffsets request."""
        with Wire(self.server.bootstrap) as wire:
            partition = (
                wire.request(list_offsets(topic, timestamp, version)).topics[0].partitions[0]
            )
        return partition.error_code, partition.offset, partition.timestamp


def list_offsets(topic: str, timestamp: int, version: int, isolation_level: int = 0) -> Any:
    fields: dict[str, Any] = {"replica_id": -1, "isolation_level": isolation_level}
    if version >= 10:
        fields["timeout"] = datetime.timedelta(seconds=5)
    return build(
        request_schema(2, version),
        **fields,
        topics=[
            {
                "name": topic,
                "partitions": [
                    {"partition_index": 0, "current_leader_epoch": -1, "timestamp": timestamp}
                ],
            }
        ],
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    handle = Served(tmp_path)
    yield handle
    handle.close()


def test_max_timestamp_is_the_first_record_holding_the_largest_timestamp(served: Served) -> None:
    served.engine.create_topic("t", 1)
    served.produce("t", T0 + 5, T0 + 1)
    served.produce("t", T0 + 3, T0 + 9, T0 + 2)
    served.produce("t", T0 + 9, T0 + 4)  # a tie: the first offset holding it wins
    assert served.max_timestamp("t") == (3, T0 + 9)


def test_max_timestamp_of_an_empty_partition_is_no_offset(served: Served) -> None:
    served.engine.create_topic("empty", 1)
    assert served.max_timestamp("empty") == (-1, -1)


def test_max_timestamp_is_found_in_object_storage_after_a_reopen(served: Served) -> None:
    """Many small batches: the time index has entries, the largest timestamp
    sits in the middle, and after the reopen it is read from objects."""
    served.engine.create_topic("t", 1, {"index.interval.bytes": "100"})
    for i in range(60):
        served.produce("t", T0 + i, T0 + 1000 if i == 37 else T0 + i)
    assert served.max_timestamp("t") == (75, T0 + 1000)
    assert served.engine.flush(TIMEOUT)
    served.reopen()
    assert served.max_timestamp("t") == (75, T0 + 1000)


def test_max_timestamp_after_retention_removed_the_largest_record(served: Served) -> None:
    served.engine.create_topic("t", 1)
    served.produce("t", T0 + 50, T0 + 1)
    served.produce("t", T0 + 7, T0 + 30, T0 + 30)
    served.engine.delete_records("t", 0, 1)
    assert served.max_timestamp("t") == (3, T0 + 30)


def test_max_timestamp_on_a_log_append_time_topic_is_a_batchs_first_offset(
    served: Served,
) -> None:
    served.engine.create_topic("t", 1, {"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    served.produce("t", T0, T0)
    served.produce("t", T0, T0, T0)
    offset, timestamp = served.max_timestamp("t")
    assert offset in (0, 2)  # both batches may share a millisecond; then the first
    assert timestamp >= before
    assert served.engine.list_offset("t", 0, -3).timestamp == timestamp


def test_max_timestamp_read_committed_is_answered_only_below_the_last_stable_offset(
    served: Served,
) -> None:
    served.engine.create_topic("t", 1)
    # Later than any marker's stamp, within message.timestamp.after.max.ms's hour.
    future = int(time.time() * 1000) + 1_800_000
    served.produce("t", future - 10)
    producer = served.engine.producer(transactional_id="tx")
    try:
        producer.init_transactions()
        producer.begin_transaction()
        producer.send("t", b"open", partition=0, timestamp=future)
        producer.flush(TIMEOUT)
        assert served.max_timestamp("t") == (1, future)
        assert served.max_timestamp("t", committed=True) == (-1, -1)  # Kafka filters it
        producer.commit_transaction()
    finally:
        producer.close()
    assert served.max_timestamp("t", committed=True) == (1, future)


@pytest.mark.parametrize("version", [9, 10])
def test_earliest_local_and_latest_tiered_follow_the_uploads(served: Served, version: int) -> None:
    served.engine.create_topic("t", 1)
    assert served.wire_offset("t", EARLIEST_LOCAL, version) == (0, 0, -1)
    assert served.wire_offset("t", LATEST_TIERED, version) == (0, -1, -1)
    served.produce("t", T0, T0, T0)
    # In the WAL and the log cache only: all of it local, nothing tiered.
    assert served.wire_offset("t", EARLIEST_LOCAL, version) == (0, 0, -1)
    assert served.wire_offset("t", LATEST_TIERED, version) == (0, -1, -1)
    assert served.engine.flush(TIMEOUT)
    # Uploaded, and still cached.
    assert served.wire_offset("t", LATEST_TIERED, version) == (0, 2, -1)
    assert served.wire_offset("t", EARLIEST_LOCAL, version) == (0, 0, -1)
    served.reopen()
    # A reopened engine caches nothing it had uploaded; new appends are local.
    assert served.wire_offset("t", EARLIEST_LOCAL, version) == (0, 3, -1)
    served.produce("t", T0, T0)
    assert served.wire_offset("t", EARLIEST_LOCAL, version) == (0, 3, -1)
    assert served.wire_offset("t", LATEST_TIERED, version) == (0, 2, -1)
    assert served.wire_offset("t", -3, version) == (0, 0, T0)


def test_earliest_pending_upload_follows_the_uploads(served: Served) -> None:
    served.engine.create_topic("t", 1)
    assert served.wire_offset("t", EARLIEST_PENDING_UPLOAD, 11) == (0, 0, -1)
    served.produce("t", T0, T0, T0)
    assert served.wire_offset("t", EARLIEST_PENDING_UPLOAD, 11) == (0, 0, -1)
    assert served.engine.flush(TIMEOUT)
    assert served.wire_offset("t", EARLIEST_PENDING_UPLOAD, 11) == (0, 3, -1)
    served.produce("t", T0)
    assert served.wire_offset("t", EARLIEST_PENDING_UPLOAD, 11) == (0, 3, -1)
    served.engine.delete_records("t", 0, 4)  # the log start passes the uploads
    assert served.wire_offset("t", EARLIEST_PENDING_UPLOAD, 11) == (0, 4, -1)


@pytest.mark.parametrize(
    ("timestamp", "first"),
    [(-3, 7), (EARLIEST_LOCAL, 8), (LATEST_TIERED, 9), (EARLIEST_PENDING_UPLOAD, 11)],
)
def test_a_special_timestamp_older_than_its_version_is_unsupported(
    served: Served, timestamp: int, first: int
) -> None:
    """Kafka's ReplicaManager: the partition is answered UNSUPPORTED_VERSION."""
    served.engine.create_topic("t", 1)
    served.produce("t", T0)
    assert served.wire_offset("t", timestamp, first - 1) == (UNSUPPORTED_VERSION, -1, -1)
    assert served.wire_offset("t", timestamp, first)[0] == 0


@pytest.mark.parametrize("timestamp", [-7, -100, -(2**63)])
def test_a_negative_timestamp_that_names_nothing_is_unsupported(
    served: Served, timestamp: int
) -> None:
    """Kafka's ReplicaManager.isListOffsetsTimestampUnsupported: a negative
    timestamp that is none of the special ones is not searched for (it
    would find the first record, as a time before 1970)."""
    served.engine.create_topic("t", 1)
    served.produce("t", T0)
    for version in (1, 11):
        assert served.wire_offset("t", timestamp, version) == (UNSUPPORTED_VERSION, -1, -1)


@pytest.mark.parametrize("level", [2, -1, 127])
def test_an_unknown_isolation_level_is_refused_and_the_connection_kept(
    served: Served, level: int
) -> None:
    """Kafka's IsolationLevel.forId throws, and KafkaApis answers the
    request's error response: UNKNOWN_SERVER_ERROR for each partition."""
    served.engine.create_topic("t", 1)
    served.produce("t", T0)
    with Wire(served.server.bootstrap) as wire:
        refused = wire.request(list_offsets("t", -1, 11, level)).topics[0].partitions[0]
        kept = wire.request(list_offsets("t", -1, 11)).topics[0].partitions[0]
    assert (refused.error_code, refused.offset, refused.timestamp) == (UNKNOWN_SERVER_ERROR, -1, -1)
    assert (kept.error_code, kept.offset) == (0, 1)


def test_list_offsets_versions_up_to_11_are_advertised(served: Served) -> None:
    with Wire(served.server.bootstrap) as wire:
        versions = wire.request(
            build(request_schema(18, 3), client_software_name="t", client_software_version="1")
        )
    [entry] = [key for key in versions.api_keys if key.api_key == 2]
    assert (entry.min_version, entry.max_version) == (1, 11)


def test_kafka_pythons_offset_specs(served: Served) -> None:
    """kafka-python's admin list_partition_offsets, every special spec at once."""
    served.engine.create_topic("t", 1)
    served.produce("t", T0 + 3, T0 + 8, T0 + 8, T0 + 1)
    assert served.engine.flush(TIMEOUT)
    served.produce("t", T0 + 2)
    where = PyTopicPartition("t", 0)
    admin = KafkaAdminClient(bootstrap_servers=served.server.bootstrap)
    try:
        found = {
            spec: admin.list_partition_offsets({where: spec})[where]
            for spec in (
                PyOffsetSpec.EARLIEST,
                PyOffsetSpec.LATEST,
                PyOffsetSpec.MAX_TIMESTAMP,
                PyOffsetSpec.EARLIEST_LOCAL,
                PyOffsetSpec.LATEST_TIERED,
            )
        }
    finally:
        admin.close()
    offsets = {spec.name: (result.offset, result.timestamp) for spec, result in found.items()}
    assert offsets == {
        "EARLIEST": (0, -1),
        "LATEST": (5, -1),
        "MAX_TIMESTAMP": (1, T0 + 8),
        "EARLIEST_LOCAL": (0, -1),  # uploaded, and still in the log cache
        "LATEST_TIERED": (3, -1),  # the first batch was uploaded, the second not
    }
