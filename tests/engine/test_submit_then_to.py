"""Engine.submit_then_to appends to a leader its caller looked up: one
whose topic was deleted since (and perhaps created again under the same
name) is never appended to, since its stream went with the topic and an
acknowledgement there would be of records no one can read. The append
goes to the partition the name now stands for, as a look-up by name
(Engine.submit_then) finds it, or is refused as that look-up refuses.
And it takes the topic's own durability: a ``remote`` topic's append is
answered only once the object holding it is committed."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

import engine
import native
from engine.acks import AppendCall, CallThen
from engine.engine import Engine
from engine.errors import StorageError, UnknownTopic
from engine.partition import AppendResult, Partition
from engine.protocol.kafka_code import KafkaCode
from native import RecordSpec
from s3stream import StoreFailed, StreamStore
from s3stream.store import ObjectStoreClosed
from tests.engine.conftest import FAST_STORE
from tests.s3stream.conftest import S3Endpoint, s3_endpoint  # noqa: F401

BATCH = bytes(native.encode_batch([RecordSpec(0, None, b"kept", ())]))


def _appended(opened: Engine, stale: Partition) -> tuple[AppendResult, BaseException | None]:
    async def append() -> tuple[AppendResult, BaseException | None]:
        done: asyncio.Future[tuple[AppendResult, BaseException | None]] = (
            asyncio.get_running_loop().create_future()
        )
        then: AppendCall = lambda result, error: done.set_result((result, error))  # noqa: E731
        opened.submit_then_to(stale, BATCH, CallThen(then))
        return await asyncio.wait_for(done, 30)

    return asyncio.run(append())


def test_an_append_to_a_deleted_leader_goes_to_the_topic_created_again(tmp_path: Path) -> None:
    with engine.open(tmp_path / "node") as opened:
        opened.create_topic("t", 1)
        stale = opened.partition("t", 0)
        opened.delete_topic("t")
        opened.create_topic("t", 1)
        result, error = _appended(opened, stale)
        assert error is None
        fresh = opened.partition("t", 0)
        assert fresh is not stale
        assert result.base_offset == 0
        assert fresh.high_watermark == 1
        fetched = opened.fetch("t", 0, 0, 1 << 20)
        assert b"kept" in b"".join(bytes(batch) for batch in fetched.records)


def test_an_append_to_a_deleted_leader_is_refused_when_the_topic_is_gone(
    tmp_path: Path,
) -> None:
    with engine.open(tmp_path / "node") as opened:
        opened.create_topic("t", 1)
        stale = opened.partition("t", 0)
        opened.delete_topic("t")
        with pytest.raises(UnknownTopic):
            _appended(opened, stale)
        assert "t" not in opened.list_topics()


def test_a_remote_topics_append_is_answered_once_its_object_is_committed(
    tmp_path: Path,
) -> None:
    with engine.open(tmp_path / "node") as opened:
        opened.create_topic("r", 1, {"tidelog.ack.durability": "remote"})
        leader = opened.partition("r", 0)
        committed_when_answered: list[bool] = []

        async def append() -> BaseException | None:
            done: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

            def then(result: AppendResult, error: BaseException | None) -> None:
                uploaded = leader.store.when_remote(leader.stream_id, result.last_offset + 1)
                committed_when_answered.append(uploaded.done())
                done.set_result(error)

            opened.submit_then_to(leader, BATCH, CallThen(then))
            return await asyncio.wait_for(done, 60)

        assert asyncio.run(append()) is None
    assert committed_when_answered == [True]


def test_a_remote_append_over_an_object_store_closed_under_it_is_answered_not_left_waiting(
    tmp_path: Path,
    s3_endpoint: S3Endpoint,  # noqa: F811
) -> None:
    """The Produce path's settle object (Acks.submit_then, append_offsets
    read without the store's lock) against a stream store failed by its
    owner's close of the object store: an append waiting for its object
    is answered with the engine's StorageError, and one made after is
    refused as it is made, with the same error, never accepted and left
    waiting for an upload that cannot come."""
    objects = s3_endpoint.store(f"closed-produce-{uuid.uuid4().hex}/")
    opened = engine.open(tmp_path / "node", objects, engine.EngineConfig(store=FAST_STORE))
    try:
        opened.create_topic("r", 1, {"tidelog.ack.durability": "remote"})
        leader = opened.partition("r", 0)
        objects.close()

        async def append() -> tuple[BaseException | None, BaseException]:
            done: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
            then: AppendCall = lambda _, error: done.set_result(error)  # noqa: E731
            opened.submit_then_to(leader, BATCH, CallThen(then))
            answered = await asyncio.wait_for(done, 60)
            with pytest.raises(StorageError) as refused:
                opened.submit_then_to(leader, BATCH, CallThen(then))
            return answered, refused.value

        answered, refused = asyncio.run(append())
        assert isinstance(answered, StorageError), answered
        assert isinstance(answered.__cause__, StoreFailed), answered.__cause__
        assert isinstance(answered.__cause__.cause, ObjectStoreClosed)
        assert isinstance(refused.__cause__, StoreFailed), refused.__cause__
    finally:
        opened.close()


def _deleting_at_the_append(
    monkeypatch: pytest.MonkeyPatch, opened: Engine, topic: str
) -> list[bool]:
    """The topic deleted once, as the append first reads its stream's
    offsets: after the caller's look at the partition, before the store
    takes the append (a DeleteTopics racing the Produce)."""
    read_offsets = StreamStore.append_offsets
    deleted: list[bool] = []

    def deleted_first(store: StreamStore, stream_id: int) -> tuple[int, int]:
        if not deleted:
            deleted.append(True)
            opened.delete_topic(topic)
        return read_offsets(store, stream_id)

    monkeypatch.setattr(StreamStore, "append_offsets", deleted_first)
    return deleted


@pytest.mark.parametrize("path", ["submit", "submit_async", "submit_then_to"])
def test_an_append_whose_topic_is_deleted_under_it_is_refused_as_unknown_topic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """UNKNOWN_TOPIC_OR_PARTITION, on which a producer refreshes its
    metadata, as a read over a deletion answers: never KAFKA_STORAGE_ERROR
    for a stream gone with its topic, which has it retry the same log."""
    with engine.open(tmp_path / "node") as opened:
        opened.create_topic("t", 1)
        leader = opened.partition("t", 0)
        deleted = _deleting_at_the_append(monkeypatch, opened, "t")

        async def append() -> None:
            if path == "submit_async":
                await opened.submit_async("t", 0, BATCH)
            else:
                unanswered: AppendCall = lambda _, error: None  # noqa: E731
                opened.submit_then_to(leader, BATCH, CallThen(unanswered))

        with pytest.raises(UnknownTopic) as refused:
            if path == "submit":
                opened.submit("t", 0, BATCH).result(30)
            else:
                asyncio.run(append())
        assert deleted, "the append never read its stream's offsets"
        assert refused.value.code == KafkaCode.UNKNOWN_TOPIC_OR_PARTITION
        assert "t" not in opened.list_topics()
