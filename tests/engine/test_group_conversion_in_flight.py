"""A group changing protocol (an empty classic group taken over by a
ConsumerGroupHeartbeat, an empty consumer group by a JoinGroup) while an
offset commit to it is being written: the commit's record is in the state
log, so the offsets it commits are the group's, served now as a start
loads them (Kafka keeps a group's offsets apart from its type:
OffsetMetadataManager knows group ids, not protocols)."""

from __future__ import annotations

from pathlib import Path

import engine
from engine.groups.consumer_heartbeat import Heartbeat
from engine.types import OffsetAndMetadata, TopicPartition
from tests.engine.conftest import EngineFactory
from tests.engine.test_groups import FAST_GROUPS, TIMEOUT, E, committed, join

TP0 = TopicPartition("t", 0)


def open_engine(engine_factory: EngineFactory, data: Path) -> engine.Engine:
    opened = engine_factory(data_dir=data, groups=engine.GroupConfig(**FAST_GROUPS))
    if "t" not in opened.list_topics():
        opened.create_topic("t", 4)
    return opened


def consumer_join(opened: engine.Engine) -> Heartbeat:
    return Heartbeat(
        "g",
        "member-a",
        0,
        rebalance_timeout_ms=30_000,
        subscribed_topic_names=["t"],
        owned_partitions={},
    )


def test_a_commit_written_while_a_classic_group_becomes_a_consumer_group_is_kept(
    engine_factory: EngineFactory, tmp_path: Path
) -> None:
    data = tmp_path / "node"
    opened = open_engine(engine_factory, data)
    groups = opened.groups
    with groups._locked():  # the takeover before the commit's write is durable
        commit = groups.commit_offsets("g", -1, "", None, {TP0: OffsetAndMetadata(10)})
        joined = groups.consumer_group_heartbeat(consumer_join(opened))
    assert commit.result(TIMEOUT) == {TP0: E["NONE"]}
    assert joined.result(TIMEOUT).error == E["NONE"]
    assert groups.list_groups()[0].group_type == "consumer"
    served = committed(groups)
    opened.close()
    loaded = committed(open_engine(engine_factory, data).groups)
    assert served == loaded == {TP0: 10}


def test_a_commit_written_while_a_consumer_group_becomes_a_classic_group_is_kept(
    engine_factory: EngineFactory, tmp_path: Path
) -> None:
    data = tmp_path / "node"
    opened = open_engine(engine_factory, data)
    groups = opened.groups
    member = groups.consumer_group_heartbeat(consumer_join(opened)).result(TIMEOUT)
    left = Heartbeat("g", member.member_id or "member-a", -1)
    assert groups.consumer_group_heartbeat(left).result(TIMEOUT).error == E["NONE"]
    with groups._locked():  # the takeover before the commit's write is durable
        commit = groups.commit_offsets("g", -1, "", None, {TP0: OffsetAndMetadata(10)})
        joining = join(groups)
    assert commit.result(TIMEOUT) == {TP0: E["NONE"]}
    joining.result(TIMEOUT)
    assert groups.list_groups()[0].group_type == "classic"
    served = committed(groups)
    opened.close()
    loaded = committed(open_engine(engine_factory, data).groups)
    assert served == loaded == {TP0: 10}
