"""``tidelog mirror --once`` from a ``tidelog serve`` to librdkafka's mock
cluster of three brokers: every committed record arrives, partition for
partition, with its key, value, headers and timestamp, and the offset syncs
translate every record's source offset to exactly its target offset, though
transactions, aborted records and DeleteRecords shift them; records the
target holds past lost progress are matched, not sent again, and records
of another writer stop the mirror."""

from __future__ import annotations

import signal

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from engine.cli.main import main
from engine.mirror.errors import TargetDiverged
from engine.mirror.progress import PROGRESS_GROUP
from engine.mirror.runner import MirrorRunner
from engine.mirror.settings import MirrorSettings
from tests.mirror.conftest import MockCluster, facts, producer, read_partition
from tests.mirror.sides import (
    assert_mirrored_exactly,
    create,
    delete_records,
    produce_with_transactions,
)
from tests.server.conftest import ServerProcess


def test_once_copies_committed_records_and_translates_every_offset(
    source_server: ServerProcess, mock_cluster: MockCluster
) -> None:
    source, target = source_server.bootstrap, mock_cluster.bootstrap
    create(source, "orders", 4)
    produce_with_transactions(source, "orders", 4, rounds=15, txn_id="orders-writer")
    delete_records(source, "orders", 3, 12)  # the log of partition 3 starts later
    create(source, "stamped", 4, **{"message.timestamp.type": "LogAppendTime"})
    stamped = producer(source)
    for n in range(20):
        stamped.produce("stamped", f"s{n}".encode(), partition=n % 4, timestamp=1000 + n)
    assert stamped.flush(30) == 0
    create(source, "skipped", 4)

    handlers = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    assert (
        main(["mirror", "--from", source, "--to", target, "--topics", "orders|stamped", "--once"])
        == 0
    )
    # The run's own stop handlers are gone with it: its caller's are back.
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers

    orders = assert_mirrored_exactly(source, target, "orders", 4)
    # 10 of 15 rounds committed per partition; the first 12 offsets of
    # partition 3 (6 rounds, 4 of them committed) deleted.
    assert orders["records"] == 10 * 4 - 4
    # Markers and aborted records shift most offsets: a copy that assumed
    # offsets stay put would misplace these, and these are what the syncs fix.
    assert orders["shifted"] >= orders["records"] // 2
    assert_mirrored_exactly(source, target, "stamped", 4)
    appended = read_partition(target, "stamped", 0)
    assert all(r.timestamp()[1] > 1_000_000 for r in appended)  # the source's append times
    assert (
        "skipped" not in AdminClient({"bootstrap.servers": target}).list_topics(timeout=30).topics
    )


def test_a_second_once_sends_nothing_again_and_copies_what_is_new(
    source_server: ServerProcess, mock_cluster: MockCluster
) -> None:
    source, target = source_server.bootstrap, mock_cluster.bootstrap
    create(source, "events", 4)
    produce_with_transactions(source, "events", 4, rounds=6, txn_id="w")
    settings = MirrorSettings(source, target, topics="events")
    first = MirrorRunner(settings, once=True).run()
    assert first.copied == 4 * 4
    again = MirrorRunner(settings, once=True).run()
    assert (again.copied, again.matched, again.syncs) == (0, 0, 0)
    produce_with_transactions(source, "events", 4, rounds=3, txn_id="w", start=6)
    more = MirrorRunner(settings, once=True).run()
    assert more.copied == 2 * 4
    assert assert_mirrored_exactly(source, target, "events", 4)["records"] == 6 * 4
    assert [facts(r) for r in read_partition(target, "events", 1)][-1][1] == b"value-7-1" * 2


def test_records_past_lost_progress_are_matched_not_sent_again(
    source_server: ServerProcess, mock_cluster: MockCluster
) -> None:
    """A crash after the target took records but before progress was saved:
    the next run reads the target's tail back and sends none of them."""
    source, target = source_server.bootstrap, mock_cluster.bootstrap
    create(source, "tail", 4)
    produce_with_transactions(source, "tail", 4, rounds=6, txn_id="tail-writer")
    settings = MirrorSettings(source, target, topics="tail")
    first = MirrorRunner(settings, once=True).run()
    rewind = Consumer({"bootstrap.servers": target, "group.id": PROGRESS_GROUP})
    rewind.commit(
        offsets=[TopicPartition("tail", p, 0, metadata="v0 last=-1 target=0") for p in range(4)],
        asynchronous=False,
    )
    rewind.close()
    again = MirrorRunner(settings, once=True).run()
    assert (again.copied, again.matched) == (0, first.copied)
    assert assert_mirrored_exactly(source, target, "tail", 4)["records"] == first.copied


def test_a_target_partition_with_records_of_another_writer_stops_the_mirror(
    source_server: ServerProcess, mock_cluster: MockCluster
) -> None:
    source, target = source_server.bootstrap, mock_cluster.bootstrap
    create(source, "owned", 4)
    produce_with_transactions(source, "owned", 4, rounds=3, txn_id="owner")
    settings = MirrorSettings(source, target, topics="owned")
    MirrorRunner(settings, once=True).run()
    intruder = producer(target)
    intruder.produce("owned", b"not from the source", partition=2)
    assert intruder.flush(30) == 0
    produce_with_transactions(source, "owned", 4, rounds=3, txn_id="owner", start=3)
    with pytest.raises(TargetDiverged, match=r"owned\[2\]: the record at target offset"):
        MirrorRunner(settings, once=True).run()
