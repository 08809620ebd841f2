"""An append accepted just before its topic is deleted, whose wait to be
acknowledged then meets the deletion (a ``remote`` topic's append waits
for its object, and the deletion of its stream fails that wait), is
answered as every other path over a deletion answers:
UNKNOWN_TOPIC_OR_PARTITION on the wire, ``UnknownTopic`` in the embedded
API (engine/store_errors.py's answer_over_deletion, docs/design/0144),
never KAFKA_STORAGE_ERROR, on which a client retries the same log instead
of refreshing its metadata. A live topic's storage failure still answers
a storage error; and an append acknowledged before the deletion stays
acknowledged, the deletion's to remove."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import engine
import native
from engine.acks import CallThen
from engine.errors import StorageError, UnknownTopic
from engine.partition import AppendResult
from engine.protocol.kafka_code import KafkaCode
from native import RecordSpec
from s3stream import StreamStoreConfig
from s3stream.errors import StoreFailed
from s3stream.uploader import Uploader

TIMEOUT = 30.0
BATCH = bytes(native.encode_batch([RecordSpec(0, None, b"waiting", ())]))

HELD = StreamStoreConfig(upload_interval_s=3600, remote_linger_s=3600, compaction_interval_s=3600)
"""No upload starts on its own: a remote append waits for its object until
its topic's deletion fails the wait."""

UPLOADING = StreamStoreConfig(upload_interval_s=3600, compaction_interval_s=3600)
"""A remote append's upload starts after the default linger (2 ms)."""

PATHS = ["submit", "submit_async", "submit_then", "submit_then_to"]
"""The embedded API's appends: a concurrent future, an asyncio one, a call
(Engine.submit_then's CallThen), a call to a leader already looked up."""


@pytest.fixture
def held(tmp_path: Path) -> Iterator[engine.Engine]:
    with engine.open(tmp_path / "node", config=engine.EngineConfig(store=HELD)) as opened:
        opened.create_topic("r", 1, {"tidelog.ack.durability": "remote"})
        yield opened


async def _append_then(
    opened: engine.Engine, path: str, accepted: Callable[[], object]
) -> BaseException | None:
    """Appends to "r" 0 by ``path``, calls ``accepted`` (off the loop) once
    the append is accepted and before it is answered, and returns the
    append's error (None: acknowledged)."""
    loop = asyncio.get_running_loop()
    called: asyncio.Future[BaseException | None] = loop.create_future()

    def then(_: AppendResult, error: BaseException | None) -> None:
        called.set_result(error)

    answered: asyncio.Future[Any]
    if path == "submit":
        answered = asyncio.wrap_future(opened.submit("r", 0, BATCH))
    elif path == "submit_async":
        answered = opened.submit_async("r", 0, BATCH)
    elif path == "submit_then":
        opened.submit_then("r", 0, BATCH, then)
        answered = called
    else:
        opened.submit_then_to(opened.partition("r", 0), BATCH, CallThen(then))
        answered = called
    assert not answered.done()
    await asyncio.to_thread(accepted)
    try:
        outcome = await asyncio.wait_for(answered, TIMEOUT)
    except Exception as error:
        return error
    return outcome if isinstance(outcome, BaseException) else None


@pytest.mark.parametrize("path", PATHS)
def test_a_remote_append_whose_topic_is_deleted_before_its_object_answers_unknown_topic(
    held: engine.Engine, path: str
) -> None:
    error = asyncio.run(_append_then(held, path, lambda: held.delete_topic("r")))
    assert isinstance(error, UnknownTopic), repr(error)
    assert error.code is KafkaCode.UNKNOWN_TOPIC_OR_PARTITION
    assert "r" not in held.list_topics()


@pytest.mark.parametrize("path", PATHS)
def test_a_remote_append_of_a_live_topic_whose_upload_fails_answers_a_storage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    def failed(*_: object) -> bool:
        raise OSError("the upload failed")

    monkeypatch.setattr(Uploader, "_upload", failed)
    config = engine.EngineConfig(store=UPLOADING)
    opened = engine.open(tmp_path / "node", config=config)
    try:
        opened.create_topic("r", 1, {"tidelog.ack.durability": "remote"})
        error = asyncio.run(_append_then(opened, path, lambda: None))
        assert isinstance(error, StorageError), repr(error)
        assert "r" in opened.list_topics()
    finally:
        opened.close()  # the store failed, as set up: what it held stays in the WAL


def _producers_first_batch(opened: engine.Engine) -> bytes:
    """An idempotent producer's first batch: sent again, it is a retry."""
    producer_id, epoch = opened.init_producer_id()
    return bytes(
        native.encode_batch(
            [RecordSpec(0, None, b"once", ())],
            producer_id=producer_id,
            producer_epoch=epoch,
            base_sequence=0,
        )
    )


def test_a_producers_retry_waiting_for_the_originals_object_answers_unknown_topic(
    held: engine.Engine,
) -> None:
    """A retry of a batch already appended waits until the original is in
    a committed object (Acks._retry_durable); the deletion of its topic
    fails that wait, and the retry is answered as the original is."""
    batch = _producers_first_batch(held)
    held.submit("r", 0, batch, remote=False).result(TIMEOUT)  # in the WAL: acknowledged
    retried = held.submit("r", 0, batch)
    assert not retried.done()
    held.delete_topic("r")
    error = retried.exception(TIMEOUT)
    assert isinstance(error, UnknownTopic), repr(error)


def _fail_the_wait(
    opened: engine.Engine, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    """The retry's wait for its original fails with ``error``, as a store
    stopping under it fails it (fault injection: the store cannot fail on
    cue in the middle of the wait)."""

    def failed(_: object, __: int, callback: Callable[[BaseException | None], None]) -> None:
        callback(error)

    monkeypatch.setattr(opened._waiters, "when_durable", failed)


def _retried(opened: engine.Engine) -> BaseException | None:
    """A producer's batch appended, then sent again: the retry's error."""
    batch = _producers_first_batch(opened)
    opened.submit("r", 0, batch, remote=False).result(TIMEOUT)
    return opened.submit("r", 0, batch).exception(TIMEOUT)


def test_a_retry_whose_originals_wait_fails_answers_the_engines_error(
    held: engine.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store's error for a retry's failed wait is answered as the
    engine's (a storage error), as an original's failed append is: the raw
    store error reached the retry's caller, a class no Kafka code maps."""
    _fail_the_wait(held, monkeypatch, StoreFailed(OSError("the WAL failed")))
    error = _retried(held)
    assert isinstance(error, StorageError), repr(error)
    assert error.code is KafkaCode.KAFKA_STORAGE_ERROR


def test_a_retry_whose_originals_wait_fails_over_a_deletion_answers_unknown_topic(
    held: engine.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A retry whose wait fails with the stopped store's error once its
    topic is deleted is answered UnknownTopic, as its original is
    (engine_error over answer_over_deletion)."""
    leader = held.partition("r", 0)

    def deleted_then_failed(
        _: object, __: int, callback: Callable[[BaseException | None], None]
    ) -> None:
        monkeypatch.setattr(leader, "deleted", True)
        callback(StorageError("the store stopped"))

    monkeypatch.setattr(held._waiters, "when_durable", deleted_then_failed)
    error = _retried(held)
    assert isinstance(error, UnknownTopic), repr(error)
