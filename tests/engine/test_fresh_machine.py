"""A fresh machine with only the bucket gets everything back.

An engine on S3 (moto's server) creates topics with configs, produces with
idempotent producers, deletes records, closes cleanly; then its whole data
directory (WAL, caches, everything local) is deleted and another engine
opens a new directory on the same bucket and prefix. Topics, topic ids,
configs with their sources, records (offsets, keys, values, headers,
timestamps), log start offsets and the idempotent producers' state are all
back: the leader is stateless.
"""

from __future__ import annotations

import shutil
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import engine
from engine import ConfigSource
from tests.engine.conftest import QUIET_STORE
from tests.engine.helpers_records import batch, consume_all

CONFIG = engine.EngineConfig(
    store=QUIET_STORE,
    cleaner_interval_s=3600,
    topic_defaults={"retention.bytes": "1000000000"},
)
TOPICS: dict[str, tuple[int, dict[str, object]]] = {
    "audit": (
        2,
        {
            "retention.ms": 86_400_000,
            "max.message.bytes": 65536,
            "message.timestamp.type": "LogAppendTime",
        },
    ),
    "decisions": (1, {"cleanup.policy": "compact", "min.compaction.lag.ms": "1000"}),
    "tools": (3, {}),
}
T0 = 1_700_000_000_000


def snapshot(e: engine.Engine) -> dict[str, Any]:
    """Everything a reader can see of every topic."""
    out: dict[str, Any] = {}
    for name in e.list_topics():
        description = e.describe_topic(name)
        out[name] = {
            "topic_id": description.topic_id,
            "partitions": [
                (p.partition, p.log_start_offset, p.high_watermark) for p in description.partitions
            ],
            "configs": {c.name: (c.value, c.source) for c in description.configs},
            "records": consume_all(e, name),
            "times": [
                e.list_offset(name, p.partition, timestamp)
                for p in description.partitions
                for timestamp in (T0, T0 + 5, T0 + 50, T0 + 10_000)
            ],
        }
    return out


def test_fresh_machine_with_only_the_bucket_recovers_everything(
    tmp_path: Path, s3_url: str
) -> None:
    first = tmp_path / "first"
    e = engine.open(first, s3_url, CONFIG)
    try:
        for name, (partitions, configs) in TOPICS.items():
            e.create_topic(name, partitions, configs)
        e.create_topic("scratch", 1)
        e.alter_configs("tools", {"retention.ms": 3_600_000, "segment.bytes": 1 << 20})
        e.alter_configs("tools", {"segment.bytes": None})

        with e.producer() as plain, e.producer(compression="gzip", linger_ms=2) as gzipped:
            futures: list[Future[engine.RecordMetadata]] = []
            for i in range(60):
                producer = plain if i % 2 else gzipped
                headers = [("step", b"%d" % i), ("empty", None)]
                futures.extend(
                    producer.send(
                        topic,
                        b"value-%d" % i,
                        key=b"key-%d" % (i % 7),
                        headers=headers,
                        timestamp=T0 + i,
                    )
                    for topic in ("audit", "decisions", "tools")
                )
                futures.append(plain.send("tools", None, key=b"tomb-%d" % i, partition=0))
            plain.flush()
            gzipped.flush()
        assert all(f.result().offset >= 0 for f in futures)
        e.produce("scratch", 0, batch([b"gone"]))
        e.delete_topic("scratch")

        producer_id, epoch = e.init_producer_id()
        retried = batch(
            [b"r0", b"r1", b"r2"], producer_id=producer_id, producer_epoch=epoch, base_sequence=0
        )
        second = batch(
            [b"r3", b"r4"], producer_id=producer_id, producer_epoch=epoch, base_sequence=3
        )
        first_result = e.produce("tools", 1, retried)
        second_result = e.produce("tools", 1, second)
        assert not first_result.duplicate and not second_result.duplicate
        assert e.produce("tools", 1, retried) == first_result._replace(duplicate=True)

        assert e.delete_records("tools", 0, 25) == 25

        before = snapshot(e)
        audit = before["audit"]["records"]
        assert audit and all(r.timestamp_type == 1 and r.timestamp > T0 + 60 for r in audit)
        assert before["tools"]["partitions"][0][1] == 25
    finally:
        e.close()
    shutil.rmtree(first)

    with engine.open(tmp_path / "second", s3_url, CONFIG) as e:
        assert e.list_topics() == sorted(TOPICS)
        after = snapshot(e)
        assert after.keys() == before.keys()
        for name in before:
            for part in ("topic_id", "partitions", "records", "times"):
                assert after[name][part] == before[name][part], f"{name}: {part}"

        # The producer state came back: retries are recognised, gaps refused.
        end = e.offsets("tools", 1)[1]
        assert e.produce("tools", 1, retried) == first_result._replace(
            duplicate=True, log_start_offset=0
        )
        assert e.produce("tools", 1, second).duplicate
        assert e.offsets("tools", 1)[1] == end
        gap = batch([b"r9"], producer_id=producer_id, producer_epoch=epoch, base_sequence=9)
        try:
            e.produce("tools", 1, gap)
            raise AssertionError("a sequence gap was accepted: the producer state is gone")
        except engine.OutOfOrderSequence as error:
            assert (error.expected, error.found) == (5, 9)
        following = batch([b"r5"], producer_id=producer_id, producer_epoch=epoch, base_sequence=5)
        assert e.produce("tools", 1, following).base_offset == end

        # New producer ids are new; the log goes on after what was there.
        assert e.init_producer_id()[0] > producer_id
        with e.producer() as producer:
            for name, (partitions, _) in TOPICS.items():
                for p in range(partitions):
                    metadata = producer.send(name, b"after", key=b"k", partition=p).result()
                    assert metadata == (p, e.offsets(name, p)[1] - 1)
                    assert metadata.offset == before[name]["partitions"][p][2] + (
                        1 if (name, p) == ("tools", 1) else 0
                    )
        records = [r for r in consume_all(e, "tools") if r.partition == 0]
        assert records[0].offset == 25

        # Configs, with where each value comes from, as DescribeConfigs reports them.
        for name in before:
            assert after[name]["configs"] == before[name]["configs"], f"{name}: configs"
        configs = after["audit"]["configs"]
        assert configs["message.timestamp.type"] == ("LogAppendTime", ConfigSource.TOPIC)
        assert configs["max.message.bytes"] == ("65536", ConfigSource.TOPIC)
        assert configs["retention.ms"] == ("86400000", ConfigSource.TOPIC)
        assert configs["retention.bytes"] == ("1000000000", ConfigSource.STATIC_BROKER)
        assert configs["segment.ms"] == ("604800000", ConfigSource.DEFAULT)
        assert after["decisions"]["configs"]["cleanup.policy"] == ("compact", ConfigSource.TOPIC)
        assert after["tools"]["configs"]["retention.ms"] == ("3600000", ConfigSource.TOPIC)
        assert after["tools"]["configs"]["segment.bytes"][1] == ConfigSource.DEFAULT
