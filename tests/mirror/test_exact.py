"""``tidelog mirror --once`` from a ``tidelog serve`` to librdkafka's mock
cluster of three brokers: every committed record arrives, partition for
partition, with its key, value, headers and timestamp, and the offset syncs
translate every record's source offset to exactly its target offset, though
transactions, aborted records and DeleteRecords shift them."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient

from engine.cli.main import main
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

    assert (
        main(["mirror", "--from", source, "--to", target, "--topics", "orders|stamped", "--once"])
        == 0
    )

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
