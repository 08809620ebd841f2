"""Committed offsets against a model: random commits, transactional
commits and their completions, offset and group deletions, restarts and
fresh machines (only the bucket). After every step the coordinator
answers what the model says."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine.errors import GroupIdNotFound
from engine.protocol.kafka_code import KafkaCode
from engine.types import OffsetAndMetadata, TopicPartition
from tests.engine.conftest import FAST_STORE
from tests.long_runs import sized

E = KafkaCode
TIMEOUT = 10.0
GROUPS = ["a", "b"]
PARTITIONS = [TopicPartition("t", p) for p in range(2)]
"""Few groups, partitions and producers, so that steps often meet on the same one."""
PRODUCERS = [1, 2]

groups_ = st.sampled_from(GROUPS)
partitions_ = st.sampled_from(PARTITIONS)
offsets_ = st.integers(0, 1000)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("commit"), groups_, st.dictionaries(partitions_, offsets_, min_size=1)),
        st.tuples(
            st.just("txn"),
            st.sampled_from(PRODUCERS),
            groups_,
            st.dictionaries(partitions_, offsets_, min_size=1),
        ),
        st.tuples(st.just("complete"), st.sampled_from(PRODUCERS), st.booleans()),
        st.tuples(st.just("complete"), st.sampled_from(PRODUCERS), st.booleans()),
        st.tuples(st.just("delete_offsets"), groups_, st.lists(partitions_, max_size=2)),
        st.tuples(st.just("delete_group"), groups_),
        st.tuples(st.just("restart"), st.booleans()),
    ),
    max_size=30,
)


class Model:
    def __init__(self) -> None:
        self.committed: dict[str, dict[TopicPartition, int]] = {}
        self.latest: dict[tuple[str, TopicPartition], int] = {}
        self.pending: dict[int, dict[tuple[str, TopicPartition], tuple[int, int]]] = {}
        self.groups: set[str] = set()
        self.sequence = 0

    def next(self) -> int:
        self.sequence += 1
        return self.sequence

    def commit(self, group: str, offsets: dict[TopicPartition, int]) -> None:
        self.groups.add(group)
        for tp, offset in offsets.items():
            self.committed.setdefault(group, {})[tp] = offset
            self.latest[(group, tp)] = self.next()

    def txn(self, producer: int, group: str, offsets: dict[TopicPartition, int]) -> None:
        self.groups.add(group)
        for tp, offset in offsets.items():
            self.pending.setdefault(producer, {})[(group, tp)] = (offset, self.next())

    def complete(self, producer: int, commit: bool) -> None:
        for (group, tp), (offset, sequence) in self.pending.pop(producer, {}).items():
            if commit and sequence > self.latest.get((group, tp), -1):
                self.committed.setdefault(group, {})[tp] = offset
                self.latest[(group, tp)] = sequence

    def remove(self, group: str, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.committed.get(group, {}).pop(tp, None)
            self.latest.pop((group, tp), None)
            for pending in self.pending.values():
                pending.pop((group, tp), None)

    def restarted(self) -> None:
        """Groups with nothing stored are not kept (nor are they once their
        offsets are deleted or aborted: ``forget_unused``)."""
        self.forget_unused()

    def forget_unused(self) -> None:
        self.groups = {g for g in self.groups if self.committed.get(g)} | {
            group for pending in self.pending.values() for group, _ in pending
        }

    def unstable(self, group: str) -> set[TopicPartition]:
        return {tp for pending in self.pending.values() for g, tp in pending if g == group}


@pytest.mark.slow
@settings(max_examples=sized(50, 150), deadline=None)
@given(steps)
def test_committed_offsets_follow_the_model(program: list[tuple[Any, ...]]) -> None:
    root = Path(tempfile.mkdtemp(prefix="tidelog-groups-"))
    bucket = f"file://{root / 'bucket'}"
    config = engine.EngineConfig(store=FAST_STORE, cleaner_interval_s=3600)
    machines = iter(range(1000))
    opened = engine.open(root / f"node-{next(machines)}", bucket, config)
    try:
        opened.create_topic("t", len(PARTITIONS))
        producer_ids = open_transactions(opened)
        model = Model()
        for step in program:
            coordinator = opened.groups
            match step:
                case ("commit", group, offsets):
                    answer = coordinator.commit_offsets(
                        group, -1, "", None, {tp: OffsetAndMetadata(o) for tp, o in offsets.items()}
                    ).result(TIMEOUT)
                    assert set(answer.values()) == {E["NONE"]}
                    model.commit(group, offsets)
                case ("txn", producer, group, offsets):
                    answer = coordinator.commit_transactional_offsets(
                        group,
                        producer_ids[producer],
                        0,
                        "",
                        -1,
                        None,
                        {tp: OffsetAndMetadata(o) for tp, o in offsets.items()},
                    ).result(TIMEOUT)
                    assert set(answer.values()) == {E["NONE"]}
                    model.txn(producer, group, offsets)
                case ("complete", producer, commit):
                    coordinator.complete_transaction(producer_ids[producer], commit).result(TIMEOUT)
                    model.complete(producer, commit)
                    model.forget_unused()
                case ("delete_offsets", group, partitions):
                    if group in model.groups:
                        answer = coordinator.delete_offsets(group, partitions).result(TIMEOUT)
                        assert set(answer.values()) <= {E["NONE"]}
                        model.remove(group, partitions)
                        model.forget_unused()
                    else:
                        with pytest.raises(GroupIdNotFound):
                            coordinator.delete_offsets(group, partitions)
                case ("delete_group", group):
                    answer = coordinator.delete_groups([group]).result(TIMEOUT)
                    if group in model.groups:
                        assert answer == {group: E["NONE"]}
                        model.remove(group, PARTITIONS)
                        model.groups.discard(group)
                    else:
                        assert answer == {group: E["GROUP_ID_NOT_FOUND"]}
                case ("restart", fresh_machine):
                    opened.close()
                    if not fresh_machine:
                        opened = engine.open(opened.store.data_dir, bucket, config)
                    else:
                        opened = engine.open(root / f"node-{next(machines)}", bucket, config)
                    model.restarted()
            check(opened, model)
    finally:
        opened.close()
        shutil.rmtree(root, ignore_errors=True)


def open_transactions(opened: engine.Engine) -> dict[int, int]:
    """A producer id for each of PRODUCERS, its transaction open (with offsets
    of every group) for as long as the test runs: pending offsets are kept
    across restarts only for a transaction still open (docs/design/0048)."""
    producer_ids = {}
    for producer in PRODUCERS:
        transactional_id = f"producer-{producer}"
        producer_id, epoch = opened.transactions.init_producer_id(transactional_id, 600_000).result(
            TIMEOUT
        )
        for group in GROUPS:
            opened.transactions.add_offsets(transactional_id, producer_id, epoch, group).result(
                TIMEOUT
            )
        producer_ids[producer] = producer_id
    return producer_ids


def check(opened: engine.Engine, model: Model) -> None:
    coordinator = opened.groups
    assert {g.group_id for g in coordinator.list_groups()} == model.groups
    for group in GROUPS:
        found = coordinator.fetch_offsets(group, None)
        assert {tp: om.offset for tp, (om, _) in found.items() if om} == model.committed.get(
            group, {}
        )
        stable = coordinator.fetch_offsets(group, PARTITIONS, require_stable=True)
        unstable = {tp for tp, (_, error) in stable.items() if error == E["UNSTABLE_OFFSET_COMMIT"]}
        assert unstable == model.unstable(group)
