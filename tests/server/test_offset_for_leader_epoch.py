"""OffsetForLeaderEpoch, and the leader epochs ListOffsets answers beside
its offsets, over a real socket. OffsetForLeaderEpoch is answered as Kafka 4.x's
LeaderEpochFileCache.endOffsetFor answers it, on a partition whose records
were written under two leader epochs (the engine reopened between them)
and served under a third that has written nothing yet: the current epoch
ends at the log end, an epoch before the first known one ends where the
first known one starts, one after the current or -1 has no answer, and a
current_leader_epoch ahead or behind is UNKNOWN_LEADER_EPOCH or
FENCED_LEADER_EPOCH, but only for a partition that exists (else
UNKNOWN_TOPIC_OR_PARTITION, as Kafka checks the partition first, an
internal topic's too; so do
Fetch and ListOffsets). ListOffsets gives the epoch that wrote the offset
it found, and the current one beside the latest offset."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import native
from engine.internal_topics import CONSUMER_OFFSETS
from engine.protocol.apis import ApiKey, request_schema
from engine.protocol.kafka_code import KafkaCode
from native.records import RecordSpec
from tests.server.in_process import ServedNode
from tests.server.wire import Wire, build, fetch_each

TOPIC = "epochs"


def produce(node: ServedNode, count: int) -> None:
    specs = [RecordSpec(0, b"k", b"v") for _ in range(count)]
    node.engine.produce(TOPIC, 0, native.encode_batch(specs))


class History:
    """Three records written under ``first``, two under ``second``, and the
    node now serving under ``current``, having written nothing."""

    def __init__(self, node: ServedNode) -> None:
        self.node = node
        node.engine.create_topic(TOPIC, 1)
        self.first = node.engine.leader_epoch
        produce(node, 3)
        node.reopen()
        self.second = node.engine.leader_epoch
        produce(node, 2)
        node.reopen()
        self.current = node.engine.leader_epoch
        assert self.first < self.second < self.current

    def ask(
        self,
        leader_epoch: int,
        current_leader_epoch: int = -1,
        partition: int = 0,
        topic: str = TOPIC,
    ) -> tuple[int, int, int]:
        """(error code, leader epoch, end offset) of a raw OffsetForLeaderEpoch v4."""
        request = build(
            request_schema(ApiKey.OFFSET_FOR_LEADER_EPOCH, 4),
            replica_id=-1,
            topics=[
                {
                    "topic": topic,
                    "partitions": [
                        {
                            "partition": partition,
                            "current_leader_epoch": current_leader_epoch,
                            "leader_epoch": leader_epoch,
                        }
                    ],
                }
            ],
        )
        answer = self.first_partition(request)
        return answer.error_code, answer.leader_epoch, answer.end_offset

    def first_partition(self, request: Any) -> Any:
        """The first partition of the answer to ``request`` (OffsetForLeaderEpoch, ListOffsets)."""
        with Wire(self.node.server.bootstrap) as wire:
            return wire.request(request).topics[0].partitions[0]

    def list_offset(
        self, timestamp: int, current_leader_epoch: int = -1, partition: int = 0, topic: str = TOPIC
    ) -> tuple[int, int, int]:
        """(error code, offset, leader epoch) of a raw ListOffsets v8."""
        request = build(
            request_schema(ApiKey.LIST_OFFSETS, 8),
            replica_id=-1,
            isolation_level=0,
            topics=[
                {
                    "name": topic,
                    "partitions": [
                        {
                            "partition_index": partition,
                            "current_leader_epoch": current_leader_epoch,
                            "timestamp": timestamp,
                        }
                    ],
                }
            ],
        )
        answer = self.first_partition(request)
        return answer.error_code, answer.offset, answer.leader_epoch

    def fetch_error(self, current_leader_epoch: int, partition: int, topic: str = TOPIC) -> int:
        """The error code of a raw Fetch v12 of the partition from offset 0."""
        request = fetch_each(12, [(topic, partition, 0)], current_leader_epoch=current_leader_epoch)
        with Wire(self.node.server.bootstrap) as wire:
            code: int = wire.request(request).responses[0].partitions[0].error_code
        return code


@pytest.fixture
def history(tmp_path: Path) -> Iterator[History]:
    node = ServedNode(tmp_path)
    try:
        yield History(node)
    finally:
        node.close()


def test_an_epoch_that_wrote_ends_where_the_next_one_starts(history: History) -> None:
    assert history.ask(history.first) == (KafkaCode.NONE, history.first, 3)
    assert history.ask(history.second) == (KafkaCode.NONE, history.second, 5)


def test_the_current_epoch_ends_at_the_log_end_before_it_writes(history: History) -> None:
    """Kafka's leader records its epoch when it takes over, so the latest
    epoch is the current one, and it ends at the log end."""
    assert history.ask(history.current) == (KafkaCode.NONE, history.current, 5)
    assert history.ask(history.current, history.current) == (KafkaCode.NONE, history.current, 5)


def test_an_epoch_before_the_first_ends_where_the_first_starts(history: History) -> None:
    """What came before the first known epoch is gone from the log: the
    answer is the requested epoch and the first known epoch's start."""
    earlier = history.first - 1
    if earlier < 0:
        pytest.skip("the first epoch is 0")
    assert history.ask(earlier) == (KafkaCode.NONE, earlier, 0)


def test_an_epoch_after_the_current_one_or_undefined_has_no_answer(history: History) -> None:
    assert history.ask(history.current + 1) == (KafkaCode.NONE, -1, -1)
    assert history.ask(-1) == (KafkaCode.NONE, -1, -1)


def test_a_log_start_moved_past_an_epoch_start_cuts_the_history(history: History) -> None:
    """Kafka's truncateFromStart: the epoch holding the log start starts
    there; an epoch before it ends at the log start."""
    history.node.engine.delete_records(TOPIC, 0, 4)
    assert history.ask(history.first) == (KafkaCode.NONE, history.first, 4)
    assert history.ask(history.second) == (KafkaCode.NONE, history.second, 5)


def test_the_history_is_cut_at_the_log_start_after_a_restart(history: History) -> None:
    """The log start DeleteRecords moved holds across a restart, and so
    does the cut: the records below it are gone, whatever epochs the
    checkpoints still name, and the restart is one more epoch."""
    history.node.engine.delete_records(TOPIC, 0, 4)
    history.node.reopen()
    latest = history.node.engine.leader_epoch
    assert latest > history.current
    assert history.ask(history.first, latest) == (KafkaCode.NONE, history.first, 4)
    assert history.ask(history.second, latest) == (KafkaCode.NONE, history.second, 5)
    assert history.ask(history.current, latest) == (KafkaCode.NONE, history.second, 5)
    assert history.ask(latest, latest) == (KafkaCode.NONE, latest, 5)
    assert history.list_offset(-2, latest) == (KafkaCode.NONE, 4, history.second)


def test_a_current_leader_epoch_ahead_or_behind_is_refused(history: History) -> None:
    assert history.ask(history.first, history.current + 1)[0] == KafkaCode.UNKNOWN_LEADER_EPOCH
    assert history.ask(history.first, history.current - 1)[0] == KafkaCode.FENCED_LEADER_EPOCH


@pytest.mark.parametrize("topic", [TOPIC, CONSUMER_OFFSETS])
@pytest.mark.parametrize("ahead", [True, False])
def test_a_partition_that_does_not_exist_is_unknown_whatever_the_epoch(
    history: History, ahead: bool, topic: str
) -> None:
    """Kafka looks the partition up before it compares leader epochs; an
    internal topic's too (__consumer_offsets has one partition here)."""
    epoch = history.current + 1 if ahead else history.current - 1
    missing = KafkaCode.UNKNOWN_TOPIC_OR_PARTITION
    assert history.ask(history.first, epoch, partition=7, topic=topic)[0] == missing
    assert history.list_offset(-1, epoch, partition=7, topic=topic)[0] == missing
    assert history.fetch_error(epoch, partition=7, topic=topic) == missing
    refused = KafkaCode.UNKNOWN_LEADER_EPOCH if ahead else KafkaCode.FENCED_LEADER_EPOCH
    assert history.ask(history.first, epoch, topic=topic)[0] == refused
    assert history.list_offset(-1, epoch, topic=topic)[0] == refused
    assert history.fetch_error(epoch, partition=0, topic=topic) == refused


def test_an_internal_topics_partition_answers_its_epochs_as_an_empty_log(
    history: History,
) -> None:
    """__consumer_offsets is in Metadata and fetched as an empty log: a
    consumer of it validating its position after a restart gets the
    current epoch's end (0), not UNKNOWN_TOPIC_OR_PARTITION to retry forever."""
    current = history.current
    ask = history.ask
    assert ask(current, current, topic=CONSUMER_OFFSETS) == (KafkaCode.NONE, current, 0)
    assert ask(history.first, current, topic=CONSUMER_OFFSETS) == (KafkaCode.NONE, history.first, 0)
    assert ask(current + 1, topic=CONSUMER_OFFSETS) == (KafkaCode.NONE, -1, -1)


def test_list_offsets_answers_the_epoch_that_wrote_the_offset(history: History) -> None:
    """Kafka's UnifiedLog.fetchOffsetByTimestamp: the epoch of the log
    start for EARLIEST, of the record found by time, the current one for
    LATEST."""
    assert history.list_offset(-2) == (KafkaCode.NONE, 0, history.first)
    assert history.list_offset(0) == (KafkaCode.NONE, 0, history.first)
    assert history.list_offset(-1) == (KafkaCode.NONE, 5, history.current)
    history.node.engine.delete_records(TOPIC, 0, 4)
    assert history.list_offset(-2) == (KafkaCode.NONE, 4, history.second)
    assert history.list_offset(0) == (KafkaCode.NONE, 4, history.second)
