"""How a checkpoint fails: its deadline follows librdkafka's reading of the
target's delivery timeout (0 is no limit, ``delivery.timeout.ms`` is the
same setting); a group a cluster refuses to show is skipped, not taken for
an outage that stops the groups after it; a partition's own error in the
answer is an error, not "no offset"; and the checkpoint at the end
of ``--once``, the one a move to the target relies on, is retried rather
than skipped."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from engine.mirror import checkpoints
from engine.mirror.errors import ClusterUnavailable, GroupRefused
from engine.mirror.group_offsets import GroupOffsets, answer_deadline_s
from engine.mirror.kafka import REQUEST_TIMEOUT_S, confluent
from engine.mirror.runner import MirrorRunner
from engine.mirror.settings import MirrorSettings
from engine.types import TopicPartition as EngineTopicPartition
from tests.mirror.conftest import group_consumer, producer
from tests.mirror.sides import create
from tests.mirror.test_checkpoint_deadline import group_on_source, mirrored_as_is, source_admin
from tests.server.conftest import ServerProcess


def test_a_delivery_timeout_of_zero_is_no_limit_not_a_deadline_of_zero() -> None:
    # librdkafka: "message.timeout.ms ... A time of 0 is infinite."
    assert answer_deadline_s({"message.timeout.ms": "0"}) == REQUEST_TIMEOUT_S


def test_the_delivery_timeout_alias_bounds_the_deadline_too() -> None:
    # librdkafka: "delivery.timeout.ms ... Alias for message.timeout.ms."
    assert answer_deadline_s({"delivery.timeout.ms": "2000"}) == 2.0


class _Refusing:
    """A consumer whose ``committed`` the cluster refuses with ``code``."""

    def __init__(self, consumer: Any, code: int) -> None:
        self._consumer = consumer
        self._code = code

    def committed(self, *args: Any, **kwargs: Any) -> Any:
        raise KafkaException(KafkaError(self._code))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)


def refusing_group(group: str, bootstrap: str) -> Any:
    """The confluent_kafka module, but the cluster at ``bootstrap`` answers
    GROUP_AUTHORIZATION_FAILED to reading ``group``'s offsets (as Kafka
    does when the principal may not describe that group)."""
    kafka = confluent()

    def consumer(config: dict[str, Any]) -> Any:
        made = kafka.Consumer(config)
        if config["group.id"] == group and config["bootstrap.servers"] == bootstrap:
            return _Refusing(made, KafkaError.GROUP_AUTHORIZATION_FAILED)
        return made

    return SimpleNamespace(
        Consumer=consumer,
        TopicPartition=kafka.TopicPartition,
        KafkaException=kafka.KafkaException,
    )


def test_a_group_the_target_refuses_to_show_does_not_stop_the_groups_after_it(
    source_server: ServerProcess, target_server: ServerProcess
) -> None:
    source, target = source_server.bootstrap, target_server.bootstrap
    group_on_source(source, "refused-ck", "refused-a", 3)
    second = group_consumer(source, "refused-b")
    second.commit(offsets=[TopicPartition("refused-ck", 0, 4)], asynchronous=False)
    second.close()
    create(target, "refused-ck", 1)
    settings = MirrorSettings(source, target, topics="refused-ck", groups="refused-.*")

    done = checkpoints.checkpoint(
        refusing_group("refused-a", target),
        source_admin(source),
        settings,
        mirrored_as_is("refused-ck", 10),
    )

    assert "refused-a" not in done
    assert list(done["refused-b"].values()) == [4]


def test_the_checkpoint_at_the_end_of_once_is_retried_not_skipped(
    source_server: ServerProcess,
    target_server: ServerProcess,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source, target = source_server.bootstrap, target_server.bootstrap
    group_on_source(source, "once-ck", "once-readers", 2)
    writer = producer(source)
    for value in range(5):
        writer.produce("once-ck", str(value).encode(), partition=0)
    assert writer.flush(30) == 0
    checkpoint = checkpoints.checkpoint
    failures = [ClusterUnavailable("the target restarts")]

    def failing_first(*args: Any) -> dict[str, Any]:
        if failures:
            raise failures.pop()
        return checkpoint(*args)

    monkeypatch.setattr(checkpoints, "checkpoint", failing_first)
    settings = MirrorSettings(source, target, topics="once-ck", groups="once-readers")

    report = MirrorRunner(settings, once=True).run()

    assert not failures
    assert list(report.checkpoints["once-readers"].values()) == [2]


class _PartitionErrors:
    """confluent_kafka whose consumers answer ``committed`` with ``code`` as
    one partition's own error (the answer's per-partition error code)."""

    def __init__(self, code: int) -> None:
        self._kafka = confluent()
        self._code = code

    def Consumer(self, config: dict[str, Any]) -> Any:  # noqa: N802 - confluent_kafka's name
        code = self._code

        class _Answering:
            def committed(self, wanted: list[Any], timeout: float) -> list[Any]:
                first = wanted[0]
                return [
                    SimpleNamespace(
                        topic=first.topic,
                        partition=first.partition,
                        offset=-1001,
                        metadata=None,
                        error=KafkaError(code),
                    )
                ]

            def close(self) -> None:
                pass

        return _Answering()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kafka, name)


@pytest.mark.parametrize(
    ("code", "raised"),
    [
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, GroupRefused),
        (KafkaError.UNSTABLE_OFFSET_COMMIT, ClusterUnavailable),
    ],
)
def test_a_partitions_own_error_is_not_read_as_no_offset(code: int, raised: type) -> None:
    # Read as "none committed" (-1), a checkpoint would take it as leave to
    # commit over an offset it could not see.
    offsets = GroupOffsets(_PartitionErrors(code), "127.0.0.1:1", {}, "readers", 1.0)
    with pytest.raises(raised):
        offsets.committed([EngineTopicPartition("orders", 0)])
