"""A state machine over the manifest on a store that fails on cue: commits
whose answer is lost, whose put is retried into its own 412, that fail
before reaching the store, and new writers opening in between. The log
always holds exactly what the writers were told (or, for a commit left
unsettled when a newer writer opened, either all of it or none), a writer
is never fenced by its own writes, and a writer that was superseded is."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from s3stream.errors import Fenced
from s3stream.manifest import Manifest, load_state
from s3stream.manifest_records import LOG_PREFIX
from s3stream.manifest_state import ManifestState, Op
from s3stream.store import MemoryStore, ObjectStoreError
from tests.s3stream.faults import FaultyStore
from tests.s3stream.test_manifest import add_object_op

FAULTS = ["none", "lost_response", "retried_into_412", "failed_before_the_store"]


def _wire(state: ManifestState) -> dict[str, Any]:
    return {k: v for k, v in state.to_wire().items() if k != "seq"}


class ManifestUnderFaults(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.inner = MemoryStore()
        self.faulty = FaultyStore(self.inner)
        self.faulty.retry_lost_prefix = LOG_PREFIX
        self.writer = Manifest.open(self.faulty, checkpoint_every=5)
        self.model = ManifestState()
        self._version([["fence", 1]])
        self.superseded: list[Manifest] = []
        # A commit whose outcome the writer does not know yet: (writer, ops, landed).
        self.unsettled: tuple[Manifest, list[Op], bool] | None = None

    def _ops(self, data: st.DataObject) -> list[Op]:
        state = self.model
        if not state.streams or data.draw(st.booleans()):
            return [["create_stream", state.next_stream_id, 0]]
        stream = data.draw(st.sampled_from(sorted(state.streams)))
        end = state.streams[stream].end_offset
        size = data.draw(st.integers(1, 9))
        return [add_object_op(state.next_object_id, stream, end, end + size)]

    @precondition(lambda self: self.unsettled is None)
    @rule(fault=st.sampled_from(FAULTS), data=st.data())
    def commit(self, fault: str, data: st.DataObject) -> None:
        ops = self._ops(data)
        if fault == "retried_into_412":
            self.faulty.retry_lost_puts = 1
        if fault in ("none", "retried_into_412"):
            self.writer.commit(ops)
            assert self.faulty.retry_lost_puts == 0
            self._version(ops)
            return
        if fault == "lost_response":
            self.faulty.lose_put_responses = True
        else:
            self.faulty.fail("put")
        with pytest.raises(ObjectStoreError):
            self.writer.commit(ops, deadline=0)
        self.faulty.heal()
        self.unsettled = (self.writer, ops, fault == "lost_response")

    @precondition(lambda self: self.unsettled is not None)
    @rule()
    def settle(self) -> None:
        assert self.unsettled is not None
        writer, ops, _ = self.unsettled
        self.unsettled = None
        writer.commit([])  # settles the earlier write first, then commits nothing
        self._version(ops)
        self._version([])

    @rule(retried=st.booleans())
    def a_new_writer_opens(self, retried: bool) -> None:
        if retried:
            self.faulty.retry_lost_puts = 1  # the fence's answer is lost and retried
        newer = Manifest.open(self.faulty, checkpoint_every=5)
        self.faulty.retry_lost_puts = 0
        if self.unsettled is not None:
            _, ops, landed = self.unsettled
            self.unsettled = None
            if landed:
                self._version(ops)
        self._version([["fence", self.model.epoch + 1]])
        assert newer.epoch == self.model.epoch
        self.superseded.append(self.writer)
        self.writer = newer

    @precondition(lambda self: bool(self.superseded))
    @rule(data=st.data())
    def a_superseded_writer_commits(self, data: st.DataObject) -> None:
        old = data.draw(st.sampled_from(self.superseded))
        with pytest.raises(Fenced) as caught:
            old.commit(self._ops(data))
        assert caught.value.newer_epoch > caught.value.epoch

    def _version(self, ops: list[Any]) -> None:
        """The model's next version: ``ops`` applied, as a writer commits them."""
        for op in ops:
            self.model.apply(op)
        self.model.seq += 1

    @invariant()
    def the_log_holds_what_the_writers_were_told(self) -> None:
        if self.unsettled is None:
            loaded = load_state(self.inner)
            assert _wire(loaded) == _wire(self.model)
            assert loaded.seq == self.writer.state.seq
            assert _wire(self.writer.state) == _wire(self.model)


ManifestUnderFaults.TestCase.settings = settings(
    max_examples=100, stateful_step_count=30, deadline=None
)
test_manifest_under_faults = ManifestUnderFaults.TestCase
