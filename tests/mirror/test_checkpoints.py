"""Consumer-group checkpoints from a ``tidelog serve`` to another: a group
that read part of a topic with transactions (markers, aborted records) on
the source continues on the target with exactly the next record; a target
group's offset never moves backwards, nor while the group has members
there; topic configs that mean the same on the target are copied,
tidelog's own are not."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from engine.mirror.runner import MirrorRunner
from engine.mirror.settings import MirrorSettings
from engine.types import TopicPartition as EngineTopicPartition
from tests.mirror.conftest import facts, group_consumer, read_partition, read_some
from tests.mirror.sides import assert_mirrored_exactly, create, produce_with_transactions
from tests.server.conftest import ServerProcess


def committed_on_source(
    source: str, topic: str, group: str, *, rounds: int, read: int, **configs: str
) -> Consumer:
    """A topic of one partition made on the source with ``rounds``
    transactions (``produce_with_transactions``), and a group there that
    read its first ``read`` committed records and committed where it
    stopped; the group's consumer is returned, still open."""
    create(source, topic, 1, **configs)
    produce_with_transactions(source, topic, 1, rounds=rounds, txn_id=f"{topic}-writer")
    reader = group_consumer(source, group)
    reader.assign([TopicPartition(topic, 0, 0)])
    read_some(reader, read)
    reader.commit(asynchronous=False)
    return reader


def checkpoints(settings: MirrorSettings) -> dict[str, dict[EngineTopicPartition, int]]:
    """What one run of the mirror checkpointed on the target, group by group."""
    return MirrorRunner(settings, once=True).run().checkpoints


def test_a_group_moved_to_the_target_continues_with_exactly_the_next_record(
    source_server: ServerProcess, target_server: ServerProcess
) -> None:
    source, target = source_server.bootstrap, target_server.bootstrap
    seen = 7
    configs = {"retention.ms": "86400000", "tidelog.ack.durability": "remote"}
    reader = committed_on_source(source, "payments", "billing", rounds=12, read=seen, **configs)
    reader.close()  # committed at the 8th record's offset on the source
    everything = read_partition(source, "payments", 0)  # 8 committed records

    assert checkpoints(MirrorSettings(source, target, topics="payments"))["billing"]
    assert_mirrored_exactly(source, target, "payments", 1)

    moved = group_consumer(target, "billing")
    moved.subscribe(["payments"])
    rest = read_some(moved, len(everything) - seen)
    moved.close()
    assert [facts(r) for r in rest] == [facts(r) for r in everything[seen:]]

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
    committed_on_source(source, "audit", "auditors", rounds=9, read=2).close()
    settings = MirrorSettings(source, target, topics="audit", groups="auditors")
    first = checkpoints(settings)["auditors"]
    ahead = group_consumer(target, "auditors")
    (entry,) = first
    ahead.commit(
        offsets=[TopicPartition(entry.topic, entry.partition, first[entry] + 3)],
        asynchronous=False,
    )
    ahead.close()
    assert checkpoints(settings) == {}
    check = group_consumer(target, "auditors")
    (committed,) = check.committed([TopicPartition("audit", 0)], timeout=30)
    check.close()
    assert committed.offset == first[entry] + 3


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_a_group_with_members_on_the_target_is_not_checkpointed(
    source_server: ServerProcess, target_server: ServerProcess, protocol: str
) -> None:
    """The target refuses the mirror's commit from outside the group while
    the group has a member there (a classic member or a KIP-848 one): the
    group's offset stays its member's own."""
    source, target = source_server.bootstrap, target_server.bootstrap
    topic, group = f"tickets-{protocol}", f"support-{protocol}"
    reader = committed_on_source(source, topic, group, rounds=6, read=2)
    settings = MirrorSettings(source, target, topics=topic, groups=group)
    (first,) = checkpoints(settings)[group].values()
    read_some(reader, 1)
    reader.commit(asynchronous=False)  # the source group moves on
    reader.close()

    member = group_consumer(target, group, **{"group.protocol": protocol})
    member.subscribe([topic])
    read_some(member, 1)  # joined: the group has a member on the target
    assert checkpoints(settings) == {}
    assert committed_on_target(target, topic, group) == first
    assert member.assignment(), "the member lost its partition"
    member.close()
    (moved,) = checkpoints(settings)[group].values()
    assert moved > first
    assert committed_on_target(target, topic, group) == moved


def committed_on_target(target: str, topic: str, group: str) -> int:
    check = group_consumer(target, group)
    (committed,) = check.committed([TopicPartition(topic, 0)], timeout=30)
    check.close()
    return int(committed.offset)
