"""librdkafka (confluent-kafka) answered FENCED_LEADER_EPOCH at Fetch v16,
which names this broker, at its new epoch, as the partition's current
leader (KIP-951): the consumer takes the new epoch and reads on, after one
metadata refresh at most, never a loop of them.

A real restart cannot get the answer to librdkafka: it sees the
disconnect and refreshes its metadata before it fetches again. Here the
consumer reaches the server through a proxy that keeps its connections
open while the engine is reopened (a new leader epoch) behind it, so its
next Fetch carries the epoch it had: as a client of a broker that lost
leadership and won it back would."""

from __future__ import annotations

import logging
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

import engine
import native
from engine.protocol.apis import ApiKey
from engine.server.config import ServerConfig
from tests.server.held_proxy import HeldProxy
from tests.server.in_process import InProcessServer

TOPIC = "fenced"
TIMEOUT = 30.0
POLLS_AFTER = 30
"""Polls of the consumer once it has read everything: a loop of metadata
refreshes would show in their count."""
MOST_REFRESHES = 2
"""The partition leader query the fenced fetch asks for, and one to spare."""


def _open(root: Path) -> engine.Engine:
    return engine.open(root / "node", f"file://{root / 'bucket'}")


def _produce(opened: engine.Engine, values: list[bytes]) -> None:
    opened.produce(
        TOPIC, 0, native.encode_batch([native.RecordSpec(0, None, v, ()) for v in values])
    )


def _read(consumer: Consumer, count: int) -> list[bytes]:
    read: list[bytes] = []
    for _ in range(int(TIMEOUT / 0.1)):
        if len(read) == count:
            break
        message = consumer.poll(0.1)
        if message is not None and message.error() is None:
            read.append(message.value())
    return read


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_a_fenced_fetch_follows_the_named_leader_without_a_metadata_loop(tmp_path: Path) -> None:
    proxy = HeldProxy()
    config = ServerConfig(advertised_host="127.0.0.1", advertised_port=proxy.port)
    opened = _open(tmp_path)
    opened.create_topic(TOPIC, 1)
    _produce(opened, [b"before-%d" % i for i in range(3)])
    server = InProcessServer(opened, config=config)
    proxy.target = ("127.0.0.1", server.server.port)
    lines = _Lines()
    log = logging.getLogger("librdkafka.fenced")
    log.addHandler(lines)
    log.setLevel(logging.DEBUG)
    consumer = Consumer(
        {
            "bootstrap.servers": f"127.0.0.1:{proxy.port}",
            "group.id": "fenced-readers",
            "enable.auto.commit": False,
            "debug": "fetch",
        },
        logger=log,
    )
    try:
        consumer.assign([TopicPartition(TOPIC, 0, 0)])
        assert _read(consumer, 3) == [b"before-%d" % i for i in range(3)]
        first_epoch = opened.leader_epoch
        with proxy.held(TIMEOUT):
            server.stop()
            opened.close()
            opened = _open(tmp_path)
            _produce(opened, [b"after-%d" % i for i in range(3)])
            server = InProcessServer(opened, config=config)
        assert opened.leader_epoch > first_epoch
        proxy.resume(("127.0.0.1", server.server.port))
        assert _read(consumer, 3) == [b"after-%d" % i for i in range(3)]
        for _ in range(POLLS_AFTER):
            consumer.poll(0.1)
    finally:
        consumer.close()
        server.stop()
        opened.close()
        proxy.close()
        log.removeHandler(lines)
        log.setLevel(logging.NOTSET)
    assert any("FENCED_LEADER_EPOCH" in line for line in lines.lines), "no fetch was fenced"
    answered = server.server.request_metrics.requests
    fetches = sum(n for (key, version, _), n in answered.items() if key == ApiKey.FETCH)
    refreshes = sum(n for (key, _, _), n in answered.items() if key == ApiKey.METADATA)
    assert {v for (key, v, _) in answered if key == ApiKey.FETCH} == {16}
    assert fetches > 0
    assert refreshes <= MOST_REFRESHES
