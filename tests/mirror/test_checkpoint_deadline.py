"""A checkpoint has a deadline too: a target that answers nothing (a
listener that never speaks, or a broker hung between reading a group's
offsets and committing them) fails the checkpoint with ClusterUnavailable
within the deadline, and closing the group's consumer does not wait for
the unanswered commit; the mirror goes on copying."""

from __future__ import annotations

import signal
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from engine.mirror import checkpoints
from engine.mirror.checkpoints import Mirrored
from engine.mirror.errors import ClusterUnavailable
from engine.mirror.group_offsets import GroupOffsets
from engine.mirror.kafka import confluent
from engine.mirror.offset_sync import OffsetSync, OffsetTranslation
from engine.mirror.progress import PartitionProgress
from engine.mirror.settings import MirrorSettings
from engine.types import TopicPartition as Tp
from tests.mirror.conftest import group_consumer, outcome_within
from tests.mirror.sides import create
from tests.server.conftest import ServerProcess

DEADLINE_S = 1.0
GUARD_S = 30.0
"""How long the test waits at most: less than librdkafka's 45 s session
timeout, which a consumer's close waits out for a deferred commit."""
QUIET_AND_QUICK = {"log_level": "0", "message.timeout.ms": str(int(DEADLINE_S * 1000))}
"""The target's delivery timeout, shorter than 30 s, is the checkpoint's deadline."""


def mirrored_as_is(topic: str, records: int) -> dict[Tp, Mirrored]:
    """One partition mirrored record for record at the same offsets."""
    tp = Tp(topic, 0)
    translation = OffsetTranslation([OffsetSync(tp, 0, 0)])
    return {tp: Mirrored(PartitionProgress(records, records - 1, records), translation, 0)}


def group_on_source(source: str, topic: str, group: str, offset: int) -> None:
    create(source, topic, 1)
    consumer = group_consumer(source, group)
    consumer.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
    consumer.close()


def source_admin(source: str) -> Any:
    return confluent().admin.AdminClient({"bootstrap.servers": source, "log_level": 0})


def test_a_checkpoint_to_a_silent_target_fails_within_its_deadline(
    source_server: ServerProcess, silent_target: str
) -> None:
    source = source_server.bootstrap
    group_on_source(source, "silent-ck", "silent-readers", 3)
    settings = MirrorSettings(
        source, silent_target, topics="silent-ck", target_config=QUIET_AND_QUICK
    )
    error = outcome_within(
        lambda: checkpoints.checkpoint(
            confluent(), source_admin(source), settings, mirrored_as_is("silent-ck", 10)
        ),
        GUARD_S,
    )
    assert isinstance(error, ClusterUnavailable), error
    assert "silent-readers" in str(error)


def test_a_target_hung_before_it_answers_a_commit_fails_the_checkpoint_within_its_deadline(
    source_server: ServerProcess,
    own_target_server: ServerProcess,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source, target = source_server.bootstrap, own_target_server.bootstrap
    group_on_source(source, "hung-ck", "hung-readers", 4)
    create(target, "hung-ck", 1)
    commit = GroupOffsets.commit
    hung = own_target_server.process
    assert hung is not None

    def commit_to_a_hung_target(self: GroupOffsets, offsets: Any) -> None:
        # The target read the group's offsets (its coordinator is known);
        # it stops answering before the commit reaches it.
        hung.send_signal(signal.SIGSTOP)
        commit(self, offsets)

    monkeypatch.setattr(GroupOffsets, "commit", commit_to_a_hung_target)
    settings = MirrorSettings(source, target, topics="hung-ck", target_config=QUIET_AND_QUICK)
    try:
        error = outcome_within(
            lambda: checkpoints.checkpoint(
                confluent(), source_admin(source), settings, mirrored_as_is("hung-ck", 10)
            ),
            GUARD_S,
        )
    finally:
        hung.send_signal(signal.SIGCONT)
    assert isinstance(error, ClusterUnavailable), error
    assert "hung-readers" in str(error)
    assert f"no answer in {DEADLINE_S:g} s" in str(error)
