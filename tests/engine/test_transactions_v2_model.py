"""The transactions v2 state machine against a model: a v2 client's sends
(each with its implicit add), commits, aborts, retried ends, late writes
at a fenced epoch, InitProducerId and restarts, in any order and from
any epoch up to the last, each answered as the model says; at the end a
read_committed reader sees exactly the committed values, in order
(docs/design/0076)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from engine.errors import InvalidTxnState, ProducerFenced
from engine.transactions.metadata import MAX_EPOCH, TV_2
from engine.types import TopicPartition
from tests.engine.test_transactions import TIMEOUT, values
from tests.engine.test_transactions_v2 import TV2Client, at_epoch, markers_of

OPS = ("send", "commit", "abort", "retry", "late", "init", "restart")
_RUNS = itertools.count()


@dataclass
class Model:
    producer_id: int
    epoch: int
    ongoing: bool = False
    pending: list[bytes] = field(default_factory=list)
    committed: list[bytes] = field(default_factory=list)
    last_end: tuple[int, int, bool] | None = None
    """(producer id, epoch, commit) of an end nothing has followed since."""

    def ended(self, commit: bool, answer: tuple[int, int]) -> None:
        """An end of the open transaction (or an abort of nothing)."""
        self.last_end = (self.producer_id, self.epoch, commit)
        if self.epoch >= MAX_EPOCH - 1:  # rotated: a new id at epoch 0
            assert answer[0] != self.producer_id and answer[1] == 0
        else:
            assert answer == (self.producer_id, self.epoch + 1)
        self.producer_id, self.epoch = answer
        if commit:
            self.committed += self.pending
        self.pending, self.ongoing = [], False


def start(tmp: Path, high: bool) -> tuple[engine.Engine, TV2Client]:
    e = engine.open(tmp)
    e.create_topic("t", 1)
    client = TV2Client(e, "app")
    if high:  # near the last epoch: ends rotate the producer id
        at_epoch(e, "app", MAX_EPOCH - 3)
        e.close()
        e = engine.open(tmp)
        client.engine, client.epoch = e, MAX_EPOCH - 3
    return e, client


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(st.sampled_from(OPS), max_size=14), high=st.booleans())
def test_a_v2_client_against_the_model(tmp_path: Path, ops: list[str], high: bool) -> None:
    data_dir = tmp_path / f"run{next(_RUNS)}"
    e, client = start(data_dir, high)
    model = Model(client.producer_id, client.epoch)
    try:
        for number, op in enumerate(ops):
            if op == "send":
                value = b"v%d" % number
                client.begin(("t", 0))  # the implicit add of a Produce v12
                client.send("t", 0, value)
                model.pending.append(value)
                model.ongoing, model.last_end = True, None
            elif op in ("commit", "abort"):
                commit = op == "commit"
                if not model.ongoing and commit:
                    with pytest.raises(InvalidTxnState):
                        client.commit()
                    continue
                client.end(commit)  # an abort of nothing ends an empty transaction
                model.ended(commit, (client.producer_id, client.epoch))
            elif op == "retry" and model.last_end is not None:
                pid, epoch, commit = model.last_end
                assert client.ended(commit, pid, epoch) == (model.producer_id, model.epoch)
            elif op == "late" and model.epoch > 0:
                with pytest.raises(ProducerFenced):
                    e.transactions.add_partitions(
                        "app", model.producer_id, model.epoch - 1, [TopicPartition("t", 0)], TV_2
                    ).result(TIMEOUT)
            elif op == "init":
                client.init()  # aborts an open transaction first
                model.producer_id, model.epoch = client.producer_id, client.epoch
                model.pending, model.ongoing, model.last_end = [], False, None
            elif op == "restart":
                e.close(flush=False)
                e = engine.open(data_dir)
                client.engine = e
        assert values(e, "t", "read_committed") == model.committed
        # Every marker carries an epoch above the records of its transaction.
        assert all(epoch > 0 for _, epoch, _ in markers_of(e, "t"))
    finally:
        e.close()
