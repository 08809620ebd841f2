"""Committed offsets with writes in flight: random interleavings of plain
and transactional commits, transactions' completions (some failing to
write, then run again, as a transaction left in Prepare* is), offset and
group deletions, a topic deleted and made again, and an empty classic
group becoming a consumer group (KIP-848's conversion), with each write's
answer held and given in log order at random points. Once every answer is
given, what the coordinator serves (committed and pending offsets) is what
its state log holds, which is what a start loads (docs/design/0053, 0075)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import engine
from engine.errors import GroupIdNotFound
from engine.groups import GroupCoordinator
from engine.groups.consumer_heartbeat import Heartbeat
from engine.groups.records import read_state
from engine.protocol.kafka_code import KafkaCode
from engine.types import OffsetAndMetadata, TopicPartition
from tests.engine.conftest import FAST_STORE
from tests.engine.test_group_offsets_model import GROUPS, PARTITIONS, groups_, partitions_
from tests.engine.test_groups import wait_for
from tests.long_runs import sized

producers_ = st.sampled_from([7, 8])
txn = st.tuples(st.just("txn"), producers_, groups_, partitions_)
complete = st.tuples(st.just("complete"), producers_, st.booleans(), st.booleans())
answer = st.tuples(st.just("answer"))
steps = st.lists(
    st.one_of(
        st.tuples(st.just("commit"), groups_, partitions_),
        txn,
        txn,
        complete,
        complete,
        st.tuples(st.just("delete_offsets"), groups_, partitions_),
        st.tuples(st.just("delete_group"), groups_),
        st.tuples(st.just("delete_topic")),
        st.tuples(st.just("convert"), groups_),
        answer,
        answer,
    ),
    max_size=15,
)


class HeldAnswers:
    """Every write that waits for its durability has its answer held until
    ``give`` (in log order, the order the WAL makes them durable); the
    write made to fail does so as the store refusing it."""

    def __init__(self, groups: GroupCoordinator) -> None:
        self.held: list[partial[None]] = []
        self.made = 0
        self.given = 0
        self.failing = False
        self._groups = groups
        self._write = groups._run.write
        groups._run.write = self._holding  # type: ignore[method-assign]

    def _holding(
        self,
        puts: dict[Any, Any],
        deletes: list[Any],
        then: Callable[[Any], None] | None = None,
        rebuilt: bool = True,
    ) -> None:
        if then is None:
            self._write(puts, deletes, then, rebuilt)
            return
        self.made += 1
        answer = then
        if self.failing:
            self.held.append(partial(answer, KafkaCode.NOT_COORDINATOR))
            return
        self._write(puts, deletes, lambda error: self.held.append(partial(answer, error)), rebuilt)

    def give(self) -> None:
        """Gives the oldest answer held, once its write is durable."""
        if self.given == self.made:
            return
        wait_for(lambda: len(self.held) > self.given)
        with self._groups._locked():
            self.held[self.given]()
        self.given += 1

    def give_all(self) -> None:
        while self.given < self.made:
            self.give()


@pytest.mark.slow
@settings(max_examples=sized(100, 400), deadline=None)
@given(steps)
# A commit answered after its group changed protocol: the group's still.
@example([("commit", GROUPS[0], PARTITIONS[0]), ("convert", GROUPS[0]), ("answer",)])
# A commit answered after its group was deleted and made again under the
# other protocol: the deletion voided it, the new group does not take it.
@example(
    [
        ("commit", GROUPS[0], PARTITIONS[0]),
        ("delete_group", GROUPS[0]),
        ("convert", GROUPS[0]),
        ("answer",),
    ]
)
def test_what_is_served_is_what_a_start_loads(program: list[tuple[Any, ...]]) -> None:
    root = Path(tempfile.mkdtemp(prefix="tidelog-in-flight-"))
    config = engine.EngineConfig(store=FAST_STORE, cleaner_interval_s=3600)
    opened = engine.open(root / "node", f"file://{root / 'bucket'}", config)
    try:
        opened.create_topic("t", len(PARTITIONS))
        groups = opened.groups
        answers = HeldAnswers(groups)
        completing: dict[int, tuple[bool, Future[None]]] = {}
        """A producer's last completion: a transaction stays in Prepare*
        (nothing else of its producer happens) until one is durable."""
        offsets = iter(range(1_000_000))
        """Each commit's own offset, which tells whose a stored one is."""
        refusable: list[tuple[int, Future[dict[TopicPartition, KafkaCode]]]] = []

        def complete(producer: int, commit: bool, fail: bool) -> None:
            answers.failing = fail
            try:
                completing[producer] = (commit, groups.complete_transaction(producer, commit))
            finally:
                answers.failing = False

        def in_prepare(producer: int) -> bool:
            if producer not in completing:
                return False
            _, completion = completing[producer]
            return not completion.done() or completion.exception() is not None

        for step in program:
            match step:
                case ("commit", group, tp):
                    committing = {tp: OffsetAndMetadata(next(offsets))}
                    groups.commit_offsets(group, -1, "", None, committing)
                case ("txn", producer, group, tp) if not in_prepare(producer):
                    offset = next(offsets)
                    committing = {tp: OffsetAndMetadata(offset)}
                    refusable.append(
                        (
                            offset,
                            groups.commit_transactional_offsets(
                                group, producer, 0, "", -1, None, committing
                            ),
                        )
                    )
                case ("complete", producer, commit, fail):
                    if producer in completing and in_prepare(producer):
                        commit, completion = completing[producer]  # only run again
                        if not completion.done():
                            continue
                    complete(producer, commit, fail)
                case ("delete_offsets", group, tp):
                    with contextlib.suppress(GroupIdNotFound):
                        groups.delete_offsets(group, [tp])
                case ("delete_group", group):
                    groups.delete_groups([group])
                case ("convert", group):
                    # An empty classic group becomes a consumer group, and
                    # empty again, its offsets kept (KIP-848 conversion).
                    joining = Heartbeat(
                        group,
                        "member",
                        0,
                        rebalance_timeout_ms=30_000,
                        subscribed_topic_names=["t"],
                        owned_partitions={},
                    )
                    groups.consumer_group_heartbeat(joining)
                    groups.consumer_group_heartbeat(Heartbeat(group, "member", -1))
                case ("delete_topic",):
                    opened.delete_topic("t")
                    opened.create_topic("t", len(PARTITIONS))
                case ("answer",):
                    answers.give()
            refused_nowhere(groups, refusable)
        answers.give_all()
        for producer, (commit, _) in list(completing.items()):
            if in_prepare(producer):
                complete(producer, commit, fail=False)
                answers.give_all()
        assert served(groups) == stored(groups)
        refused_nowhere(groups, refusable)
    finally:
        opened.close()
        shutil.rmtree(root, ignore_errors=True)


def refused_nowhere(
    groups: GroupCoordinator, commits: list[tuple[int, Future[dict[TopicPartition, KafkaCode]]]]
) -> None:
    """A TxnOffsetCommit answered INVALID_TXN_STATE (void) is in the state
    log nowhere, from the answer on: neither committed, nor pending for a
    completion that a start would run."""
    refused = {
        offset
        for offset, answer in commits
        if answer.done() and KafkaCode.INVALID_TXN_STATE in answer.result().values()
    }
    committed, pending = stored(groups)
    assert refused.isdisjoint([*committed.values(), *pending.values()])


def served(groups: GroupCoordinator) -> tuple[dict[Any, int], dict[Any, int]]:
    """The committed offsets and the pending ones the coordinator serves."""
    committed = {
        (group, tp): found.offset
        for group in GROUPS
        for tp, (found, _) in groups.fetch_offsets(group, None).items()
        if found is not None
    }
    store = groups._offsets.store
    pending = {
        (producer, key.group_id, key.tp): offset.offset.offset
        for producer in store.pending_producers()
        for key, offset in store.pending_of(producer).items()
    }
    return committed, pending


def stored(groups: GroupCoordinator) -> tuple[dict[Any, int], dict[Any, int]]:
    """The same, as the state log holds them (what a start loads)."""
    state = read_state(groups._run.state_log.items())
    committed = {(group, tp): offset.offset for group, tp, offset in state.offsets}
    pending = {
        (producer, group, tp): offset.offset.offset for producer, group, tp, offset in state.pending
    }
    return committed, pending
