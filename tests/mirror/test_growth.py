"""A source topic that gains partitions: the mirror grows the target topic
to the source's count (CreatePartitions) and copies the new partitions from
their start, while it runs and across a restart between the growth and the
copy; every record arrives once, at the offset the syncs give. A target
that cannot or will not grow stops the mirror with an error naming the
topic and the fix."""

from __future__ import annotations

import threading
from typing import Any

import confluent_kafka
import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewPartitions

from engine.mirror import topics
from engine.mirror.errors import PartitionsRefused, TopicMismatch
from engine.mirror.runner import MirrorRunner
from engine.mirror.settings import MirrorSettings
from tests.mirror.conftest import MockCluster, quiet_librdkafka
from tests.mirror.sides import assert_mirrored_exactly, create, produce_with_transactions
from tests.mirror.test_crash import target_count, wait_for
from tests.server.conftest import ServerProcess


def grow(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, **quiet_librdkafka()})
    for future in admin.create_partitions([NewPartitions(topic, partitions)]).values():
        future.result(30)


def partitions_of(bootstrap: str, topic: str) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap, **quiet_librdkafka()})
    return len(admin.list_topics(topic, timeout=30).topics[topic].partitions)


def test_a_source_topic_grown_while_the_mirror_runs_grows_the_target_and_is_copied(
    source_server: ServerProcess, target_server: ServerProcess
) -> None:
    source, target = source_server.bootstrap, target_server.bootstrap
    create(source, "grown-live", 2)
    produce_with_transactions(source, "grown-live", 2, rounds=6, txn_id="grown-live-a")
    runner = MirrorRunner(MirrorSettings(source, target, topics="grown-live", topic_refresh_s=0.2))
    mirror = threading.Thread(target=runner.run, daemon=True)
    mirror.start()
    try:
        wait_for(lambda: target_count(target, "grown-live", 2) >= 4 * 2, 60, "copying 2")
        grow(source, "grown-live", 4)
        # Transactions shift the new partitions' offsets: their translation
        # is exact only through syncs of their own.
        produce_with_transactions(source, "grown-live", 4, rounds=9, txn_id="grown-live-b")
        total = (4 + 6) * 2 + 6 * 2
        wait_for(
            lambda: not mirror.is_alive() or target_count(target, "grown-live", 4) >= total,
            60,
            "copying 4",
        )
        assert mirror.is_alive(), "the mirror stopped"
    finally:
        runner.stop.set()
        mirror.join(60)
    assert not mirror.is_alive()
    assert partitions_of(target, "grown-live") == 4
    result = assert_mirrored_exactly(source, target, "grown-live", 4)
    assert result["records"] == (4 + 6) * 2 + 6 * 2
    assert target_count(target, "grown-live", 4) == result["records"], "a record twice"


@pytest.mark.parametrize("target_grown", [False, True], ids=["source-grown", "both-grown"])
def test_a_topic_grown_between_two_runs_of_the_mirror_is_copied_whole(
    source_server: ServerProcess, target_server: ServerProcess, target_grown: bool
) -> None:
    """Grown while no mirror ran; with ``target_grown``, the target grew too,
    as when a session grew it and stopped before copying anything there."""
    source, target = source_server.bootstrap, target_server.bootstrap
    topic = f"grown-stopped-{target_grown}"
    create(source, topic, 2)
    produce_with_transactions(source, topic, 2, rounds=6, txn_id=f"{topic}-a")
    settings = MirrorSettings(source, target, topics=topic)
    first = MirrorRunner(settings, once=True).run()
    assert first.copied == 4 * 2
    grow(source, topic, 4)
    if target_grown:
        grow(target, topic, 4)
    produce_with_transactions(source, topic, 4, rounds=9, txn_id=f"{topic}-b")
    second = MirrorRunner(settings, once=True).run()
    assert (second.copied, second.matched) == (6 * 4, 0)
    assert partitions_of(target, topic) == 4
    assert assert_mirrored_exactly(source, target, topic, 4)["records"] == 8 + 24
    again = MirrorRunner(settings, once=True).run()
    assert (again.copied, again.matched, again.syncs) == (0, 0, 0)


def test_a_target_topic_wider_than_its_source_keeps_its_extra_partitions_empty(
    source_server: ServerProcess, target_server: ServerProcess
) -> None:
    source, target = source_server.bootstrap, target_server.bootstrap
    create(source, "narrow", 2)
    create(target, "narrow", 3)
    produce_with_transactions(source, "narrow", 2, rounds=3, txn_id="narrow")
    MirrorRunner(MirrorSettings(source, target, topics="narrow"), once=True).run()
    assert_mirrored_exactly(source, target, "narrow", 2)
    assert partitions_of(target, "narrow") == 3
    assert target_count(target, "narrow", 3) == target_count(target, "narrow", 2)


def test_a_target_that_cannot_add_partitions_stops_the_mirror_naming_the_topic(
    source_server: ServerProcess, mock_cluster: MockCluster
) -> None:
    """librdkafka's mock cluster makes every topic 4 wide and has no
    controller to grow one."""
    source, target = source_server.bootstrap, mock_cluster.bootstrap
    create(source, "wide", 6)
    produce_with_transactions(source, "wide", 6, rounds=1, txn_id="wide")
    with pytest.raises(TopicMismatch, match=r"'wide' has 4 partitions, the source 6"):
        MirrorRunner(MirrorSettings(source, target, topics="wide"), once=True).run()


class _Refused:
    """A future that fails as a broker's refusal would."""

    def __init__(self, code: int) -> None:
        self._code = code

    def result(self, timeout: float) -> None:
        raise KafkaException(KafkaError(self._code))


class _RefusingAdmin:
    """An admin client of a target whose authorizer refuses the mirror's
    principal ALTER on the topic (a fault of a cluster with ACLs; the
    cluster itself answers as it would)."""

    def __init__(self, bootstrap: str, code: int) -> None:
        self._admin = AdminClient({"bootstrap.servers": bootstrap, **quiet_librdkafka()})
        self._code = code

    def list_topics(self, *args: Any, **kwargs: Any) -> Any:
        return self._admin.list_topics(*args, **kwargs)

    def create_partitions(self, new: list[Any], **kwargs: Any) -> dict[str, _Refused]:
        return {p.topic: _Refused(self._code) for p in new}


def test_a_target_that_refuses_to_grow_a_topic_says_which_and_what_to_do(
    target_server: ServerProcess,
) -> None:
    target = target_server.bootstrap
    create(target, "guarded", 2)
    admin = _RefusingAdmin(target, KafkaError.TOPIC_AUTHORIZATION_FAILED)
    known = topics.target_partitions(confluent_kafka, admin)
    wanted = [topics.SourceTopic("guarded", 5, {})]
    with pytest.raises(PartitionsRefused) as refused:
        topics.ensure_target_topics(confluent_kafka, admin, wanted, known)
    message = str(refused.value)
    assert "'guarded' from 2 to the source's 5 partitions" in message
    assert "--partitions 5" in message and "alter" in message
    assert refused.value.code == TopicMismatch.code
    # A refusal because another session grew the topic meanwhile is none.
    grow(target, "guarded", 5)
    again = _RefusingAdmin(target, KafkaError.INVALID_PARTITIONS)
    known = {"guarded": 2, **{k: v for k, v in known.items() if k != "guarded"}}
    assert topics.ensure_target_topics(confluent_kafka, again, wanted, known) == ["guarded"]
    assert known["guarded"] == 5
