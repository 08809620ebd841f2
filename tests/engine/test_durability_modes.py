"""The two acknowledgement levels of a topic (``tidelog.ack.durability``):
``local`` answers once the append is fsynced in the WAL, ``remote`` once the
object holding it is committed to the manifest, so a remote acknowledgement
survives the loss of the machine. Engines upload only on flush or close
here (QUIET_STORE), so whatever is in the bucket got there for an ack.
"""

from __future__ import annotations

import asyncio
import shutil
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path

import pytest

import engine
from engine.config import ACK_DURABILITY, ConfigSource
from engine.partition import AppendResult
from tests.engine.conftest import QUIET_STORE, EngineFactory
from tests.engine.helpers_records import batch, read_partition

REMOTE = {ACK_DURABILITY: "remote"}


def remote_end(e: engine.Engine, topic: str, partition: int = 0) -> int:
    return e.store.remote_end_offset(e.partition(topic, partition).stream_id)


def values(e: engine.Engine, topic: str) -> list[bytes | None]:
    return [r.value for r in read_partition(e, topic, 0)]


def test_a_remote_ack_comes_once_the_record_is_committed_to_the_manifest(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory(store=QUIET_STORE)
    e.create_topic("remote", 1, configs=REMOTE)
    e.create_topic("local", 1)
    for i in range(5):
        appended = e.produce("remote", 0, batch([b"r%d" % i]))
        assert remote_end(e, "remote") > appended.last_offset
    appended = e.produce("local", 0, batch([b"l"]))
    assert remote_end(e, "local") == 0  # local acks do not wait for (or cause) an upload
    assert values(e, "remote") == [b"r%d" % i for i in range(5)]


def test_concurrent_remote_acks_share_objects(engine_factory: EngineFactory) -> None:
    store = replace(QUIET_STORE, remote_linger_s=0.05)
    e = engine_factory(store=store)
    e.create_topic("remote", 2, configs=REMOTE)
    uploads_before = e.store.stats.uploads
    futures: list[Future[AppendResult]] = [
        e.submit("remote", i % 2, batch([b"v%d" % i])) for i in range(200)
    ]
    results = [f.result(60) for f in futures]
    uploads = e.store.stats.uploads - uploads_before
    assert 1 <= uploads < 50, uploads  # one object per append would be 200
    for partition in (0, 1):
        last = max(r.last_offset for i, r in enumerate(results) if i % 2 == partition)
        assert remote_end(e, "remote", partition) > last


def test_an_async_remote_ack_never_blocks_the_event_loop(engine_factory: EngineFactory) -> None:
    e = engine_factory(store=replace(QUIET_STORE, remote_linger_s=0.05))
    e.create_topic("remote", 1, configs=REMOTE)

    async def main() -> tuple[int, int]:
        ticks = 0
        done = False

        async def tick() -> None:
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0)

        ticker = asyncio.create_task(tick())
        appended = await e.produce_async("remote", 0, batch([b"async"]))
        done = True
        await ticker
        return appended.last_offset, ticks

    last, ticks = asyncio.run(main())
    assert remote_end(e, "remote") > last
    assert ticks > 1  # the loop ran other tasks while the ack waited for the upload


def test_a_retried_batch_in_remote_mode_is_answered_once_committed(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory(store=QUIET_STORE)
    e.create_topic("remote", 1, configs=REMOTE)
    producer_id, epoch = e.init_producer_id()
    sent = batch([b"once"], producer_id=producer_id, producer_epoch=epoch, base_sequence=0)
    first = e.submit("remote", 0, bytearray(sent), remote=False)  # acked locally ...
    assert first.result(30).base_offset == 0
    assert remote_end(e, "remote") == 0
    retry = e.produce("remote", 0, bytearray(sent))  # ... its retry waits for the upload
    assert retry.duplicate and retry.base_offset == 0
    assert remote_end(e, "remote") == 1


@pytest.mark.parametrize("mode", ["local", "remote"])
def test_what_survives_the_loss_of_the_machine(tmp_path: Path, s3_url: str, mode: str) -> None:
    """The machine goes with its disk before anything was uploaded on its
    own: a new machine with only the bucket has every remote-acked record,
    and none of the local-acked ones."""
    config = engine.EngineConfig(store=QUIET_STORE, topic_defaults={ACK_DURABILITY: mode})
    lost = engine.open(tmp_path / "lost", s3_url, config)
    lost.create_topic("agent", 1)
    assert lost.flush(30)  # the topic itself is in the bucket
    acked = [lost.produce("agent", 0, batch([b"m%d" % i])).base_offset for i in range(10)]
    assert acked == list(range(10))
    lost.close(flush=False)  # no upload at close: the machine is gone
    shutil.rmtree(tmp_path / "lost")
    with engine.open(tmp_path / "fresh", s3_url, config) as fresh:
        found = values(fresh, "agent")
    assert found == ([b"m%d" % i for i in range(10)] if mode == "remote" else [])


def test_the_mode_is_a_topic_config(engine_factory: EngineFactory) -> None:
    e = engine_factory(store=QUIET_STORE, topic_defaults={ACK_DURABILITY: "remote"})
    e.create_topic("default", 1)
    e.create_topic("override", 1, configs={ACK_DURABILITY: "local"})
    with pytest.raises(engine.InvalidConfig, match=ACK_DURABILITY):
        e.create_topic("bad", 1, configs={ACK_DURABILITY: "sometimes"})

    def described(topic: str) -> tuple[str, ConfigSource]:
        [entry] = e.topic_config(topic).describe({ACK_DURABILITY})
        return entry.value, entry.source

    assert described("default") == ("remote", ConfigSource.STATIC_BROKER)
    assert described("override") == ("local", ConfigSource.TOPIC)
    e.produce("override", 0, batch([b"local"]))
    assert remote_end(e, "override") == 0
    e.alter_configs("override", {ACK_DURABILITY: "remote"})
    assert described("override") == ("remote", ConfigSource.TOPIC)
    appended = e.produce("override", 0, batch([b"remote"]))
    assert remote_end(e, "override") > appended.last_offset
