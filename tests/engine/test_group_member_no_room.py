"""An embedded group member whose group's writes the store refuses for
room (past its unuploaded headroom, docs/design/0099): the coordinator
answers COORDINATOR_NOT_AVAILABLE, which the member raises as the typed,
retriable `CoordinatorNotAvailable` (no `GroupError`): a join or sync
refused so is sent again after a backoff, as Kafka's consumer rejoins
after a retriable error, and poll goes on; a commit refused so is sent
again until its timeout, then raises it, and the same commit goes through
once the store has room."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import Future
from typing import Any

import pytest

import engine
from engine.client.consumer import Consumer
from engine.errors import CoordinatorNotAvailable, GroupError
from engine.groups.records import OFFSET
from engine.types import TopicPartition
from s3stream import NoRoom
from tests.engine.conftest import EngineFactory

TIMEOUT = 20.0
FAST_GROUPS = engine.GroupConfig(
    group_min_session_timeout_ms=10, group_initial_rebalance_delay_ms=0
)
MEMBER: dict[str, Any] = {
    "group_id": "g",
    "auto_offset_reset": "earliest",
    "enable_auto_commit": False,
    "session_timeout_ms": 3000,
    "heartbeat_interval_ms": 50,
    "max_poll_interval_ms": 5000,
}


class RefusedGroupWrites:
    """The groups state log refuses every write whose keys are of ``kind``
    (nothing accepted), until ``heal``: for room (NoRoom) unless
    ``refusal`` makes another error of the stream id."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        e: engine.Engine,
        kind: str,
        refusal: Callable[[int], BaseException] | None = None,
    ) -> None:
        state_log = e.groups._run.state_log
        update = state_log.update
        self._refusing = True
        self.refused = 0
        self._lock = threading.Lock()

        def refusing(puts: Any = None, deletes: Any = None) -> Future[int]:
            keys: list[Hashable] = [*(puts or {}), *(deletes or [])]
            with self._lock:
                if self._refusing and any(_kind(key) == kind for key in keys):
                    self.refused += 1
                    if refusal is not None:
                        raise refusal(state_log.stream_id)
                    raise NoRoom(state_log.stream_id, 1 << 30, 1 << 20)
            return update(puts=puts, deletes=deletes)

        monkeypatch.setattr(state_log, "update", refusing)

    def heal(self) -> None:
        with self._lock:
            self._refusing = False


def _kind(key: Hashable) -> str:
    """ "offset" for a committed offset's key, "group" for any other."""
    return "offset" if isinstance(key, tuple) and key and key[0] == OFFSET else "group"


def three_records(engine_factory: EngineFactory) -> engine.Engine:
    """An engine with fast group timings and topic t's one partition
    holding a, b and c: what the modules on a member's refused writes
    start from."""
    opened = engine_factory(groups=FAST_GROUPS)
    opened.create_topic("t", 1)
    with opened.producer() as producer:
        for value in (b"a", b"b", b"c"):
            producer.send("t", value, partition=0).result(TIMEOUT)
    return opened


@pytest.fixture
def e(engine_factory: EngineFactory) -> engine.Engine:
    return three_records(engine_factory)


@pytest.fixture
def consumer(e: engine.Engine) -> Iterator[Consumer]:
    made = e.consumer("t", **MEMBER)
    yield made
    made.close()


def _read(consumer: Consumer, count: int) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + TIMEOUT
    while len(got) < count:
        assert time.monotonic() < deadline, f"read {got}"
        got += [r.value for r in consumer.poll(timeout=0.1) if r.value is not None]
    return got


def test_a_member_whose_group_record_is_refused_for_room_joins_again_once_it_fits(
    e: engine.Engine, consumer: Consumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = RefusedGroupWrites(monkeypatch, e, "group")
    deadline = time.monotonic() + TIMEOUT
    while refused.refused < 3:  # refused, then sent again: poll raises nothing
        assert time.monotonic() < deadline, f"refused {refused.refused} times"
        assert consumer.poll(timeout=0.05) == []
    assert consumer.assignment() == set()
    refused.heal()
    assert _read(consumer, 3) == [b"a", b"b", b"c"]
    assert consumer.assignment() == {TopicPartition("t", 0)}


def test_a_commit_refused_for_room_raises_the_typed_retriable_error(
    e: engine.Engine, consumer: Consumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _read(consumer, 3) == [b"a", b"b", b"c"]
    refused = RefusedGroupWrites(monkeypatch, e, "offset")
    with pytest.raises(CoordinatorNotAvailable) as raised:
        consumer.commit(timeout=1.0)  # sent again until its timeout
    assert refused.refused >= 2
    assert not isinstance(raised.value, GroupError | engine.EngineClosed)
    assert raised.value.code.retriable
    assert consumer.poll(timeout=0.05) == []  # still a member
    refused.heal()
    consumer.commit()
    tp = TopicPartition("t", 0)
    assert consumer.committed([tp])[tp].offset == 3  # type: ignore[union-attr]
