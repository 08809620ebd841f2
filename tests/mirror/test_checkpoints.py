"""Consumer-group checkpoints from a ``tidelog serve`` to another: a group
that read part of a topic with transactions (markers, aborted records) on
the source continues on the target with exactly the next record; a target
group's offset never moves backwards, nor while the group has members
there; topic configs that mean the same on the target are copied,
tidelog's own are not."""

from __future__ import annotations

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from engine.mirror.runner import MirrorRunner
from engine.mirror.settings import MirrorSettings
from tests.mirror.conftest import facts, quiet_librdkafka, read_partition
from tests.mirror.sides import assert_mirrored_exactly, create, produce_with_transactions
from tests.server.conftest import ServerProcess


def group_consumer(bootstrap: str, group: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **quiet_librdkafka(),
        }
    )


def read_some(consumer: Consumer, count: int) -> list[object]:
    records: list[object] = []
    for _ in range(200):
        batch = consumer.consume(count - len(records), 0.2)
        records.extend(message for message in batch if message.error() is None)
        if len(records) >= count:
            return records
    raise AssertionError(f"read {len(records)} of {count}")


def test_a_group_moved_to_the_target_continues_with_exactly_the_next_record(
    source_server: ServerProcess, target_server: ServerProcess
) -> None:
    source, target = source_server.bootstrap, target_server.bootstrap
    create(
        source, "payments", 1, **{"retention.ms": "86400000", "tidelog.ack.durability": "remote"}
    )
    produce_with_transactions(source, "payments", 1, rounds=12, txn_id="payer")
    everything = read_partition(source, "payments", 0)  # 8 committed records
    reader = group_consumer(source, "billing")
    reader.assign([TopicPartition("payments", 0, 0)])
    seen = read_some(reader, 7)
    reader.commit(asynchronous=False)  # at the 8th record's offset on the source
    reader.close()

    report = MirrorRunner(MirrorSettings(source, target, topics="payments"), once=True).run()
    assert report.checkpoints["billing"]
    assert_mirrored_exactly(source, target, "payments", 1)

    moved = group_consumer(target, "billing")
    moved.subscribe(["payments"])
    rest = read_some(moved, len(everything) - len(seen))
    moved.close()
    assert [facts(r) for r in rest] == [facts(r) for r in everything[len(seen) :]]

    admin = AdminClient({"bootstrap.servers": target})
    described = admin.describe_configs([ConfigResource("topic", "payments")])
    configs = next(iter(described.values())).result(30)
    assert configs["retention.ms"].value == "86400000"
    assert (
        "tidelog.ack.durability" not in configs
        or configs["tidelog.ack.durability"].value != "remote"
    )


def test_a_checkpoint_never_moves_a_target_group_backwards(
    source_server: ServerProcess, target_server: ServerProcess
) -> None:
    source, target = source_server.bootstrap, target_server.bootstrap
    create(source, "audit", 1)
    produce_with_transactions(source, "audit", 1, rounds=9, txn_id="auditor")
    reader = group_consumer(source, "auditors")
    reader.assign([TopicPartition("audit", 0, 0)])
    read_some(reader, 2)
    reader.commit(asynchronous=False)
    reader.close()
    settings = MirrorSettings(source, target, topics="audit", groups="auditors")
    first = MirrorRunner(settings, once=True).run().checkpoints["auditors"]
    ahead = group_consumer(target, "auditors")
    (entry,) = first
    ahead.commit(
        offsets=[TopicPartition(entry.topic, entry.partition, first[entry] + 3)],
        asynchronous=False,
    )
    ahead.close()
    assert MirrorRunner(settings, once=True).run().checkpoints == {}
    check = group_consumer(target, "auditors")
    (committed,) = check.committed([TopicPartition("audit", 0)], timeout=30)
    check.close()
    assert committed.offset == first[entry] + 3


def test_a_group_with_members_on_the_target_is_not_checkpointed(
    source_server: ServerProcess, target_server: ServerProcess
) -> None:
    source, target = source_server.bootstrap, target_server.bootstrap
    create(source, "tickets", 1)
    produce_with_transactions(source, "tickets", 1, rounds=6, txn_id="desk")
    reader = group_consumer(source, "support")
    reader.assign([TopicPartition("tickets", 0, 0)])
    read_some(reader, 2)
    reader.commit(asynchronous=False)
    settings = MirrorSettings(source, target, topics="tickets", groups="support")
    assert MirrorRunner(settings, once=True).run().checkpoints["support"]
    read_some(reader, 1)
    reader.commit(asynchronous=False)  # the source group moves on
    reader.close()

    member = group_consumer(target, "support")
    member.subscribe(["tickets"])
    read_some(member, 1)  # joined: the group has a member on the target
    assert MirrorRunner(settings, once=True).run().checkpoints == {}
    member.close()
    assert MirrorRunner(settings, once=True).run().checkpoints["support"]
