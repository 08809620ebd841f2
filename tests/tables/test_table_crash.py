"""kill -9 of a ``tidelog serve`` whose table topic is being written: after
a restart the table holds every record of the topic exactly once."""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from tests.server.conftest import ServerProcess, quiet_librdkafka
from tests.tables.conftest import TABLE_ON
from tests.tables.swap_kill import (
    SWAP_KILLS,
    kill_at_the_swap,
    log_after_restart,
    table_of,
    table_records,
)

TOPIC = "memory.steps"
PARTITIONS = 2
ROUNDS = 4 if os.environ.get("TIDELOG_FAULTS") == "full" else 1
"""Kills of the server while its table is written (each costs a restart)."""

CONFIG = """
[store]
upload_interval_s = 0.05
wal_segment_bytes = 1048576
wal_preallocate = false

[tables]
poll_interval_s = 0.02
"""


class Writer:
    """Produces numbered records until stopped; remembers the acknowledged ones."""

    def __init__(self, bootstrap: str, first: int) -> None:
        self.acked: set[bytes] = set()
        self._next = first
        self._stop = threading.Event()
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "linger.ms": 2,
                "message.timeout.ms": 20000,
                # Back to the restarted server soon: the backoff doubles at
                # each refused connection while it is down.
                "reconnect.backoff.max.ms": 200,
                **quiet_librdkafka(),
                "log_level": 0,  # refused connections while the server is down are the point
            }
        )
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _delivered(self, error: object, message: object) -> None:
        if error is None:
            self.acked.add(message.value())  # type: ignore[attr-defined]

    def _run(self) -> None:
        while not self._stop.is_set():
            for _ in range(20):
                value = f"step-{self._next}".encode()
                self._next += 1
                self._producer.produce(TOPIC, value, on_delivery=self._delivered)
            self._producer.poll(0.02)

    def stop(self) -> int:
        """Stops producing; returns the number the next writer starts at."""
        self._stop.set()
        self._thread.join(10)
        return self._next

    def settle(self) -> None:
        """Waits for the answers still owed, once the server is back: the
        records sent into the kill are retried to it. Waited for while the
        server was down, they could only time out, and the wait ran to its
        end at every kill."""
        self._producer.flush(10)


def _bad_table_configs_are_invalid_config(admin: AdminClient) -> None:
    """Over the wire, as from any Kafka admin client."""
    bad = NewTopic("bad-table", 1, config={"tidelog.table.enable": "sometimes"})
    with pytest.raises(KafkaException) as refused:
        admin.create_topics([bad])["bad-table"].result(30)
    assert refused.value.args[0].code() == KafkaError.INVALID_CONFIG
    interval = ConfigEntry(
        "tidelog.table.commit.interval.ms",
        "5",
        incremental_operation=AlterConfigOpType.SET,
    )
    resource = ConfigResource(ResourceType.TOPIC, TOPIC, incremental_configs=[interval])
    with pytest.raises(KafkaException) as refused:
        admin.incremental_alter_configs([resource])[resource].result(30)
    assert refused.value.args[0].code() == KafkaError.INVALID_CONFIG


def _table_rows(data_dir: Path) -> int:
    try:
        table = table_of(data_dir.parent, "memory_steps")
    except Exception:  # not created yet
        return 0
    return int(table.scan().to_arrow().num_rows)


@pytest.mark.slow
def test_kill_9_mid_write_leaves_each_record_in_the_table_once(tmp_path: Path) -> None:
    config = tmp_path / "serve.toml"
    config.write_text(CONFIG)
    server = ServerProcess(tmp_path / "data", args=["--config", str(config)]).start()
    acked: set[bytes] = set()
    try:
        admin = AdminClient({"bootstrap.servers": server.bootstrap, **quiet_librdkafka()})
        configs = {"tidelog.table.enable": "true", "tidelog.table.commit.interval.ms": "100"}
        created = admin.create_topics([NewTopic(TOPIC, PARTITIONS, config=configs)])
        created[TOPIC].result(30)
        _bad_table_configs_are_invalid_config(admin)
        first = 0
        rng = random.Random(20261204)
        for _ in range(ROUNDS):
            writer = Writer(server.bootstrap, first)
            seen = _table_rows(tmp_path / "data")
            deadline = time.monotonic() + 30
            while _table_rows(tmp_path / "data") <= seen and time.monotonic() < deadline:
                time.sleep(0.05)  # the table is being written while records arrive
            assert _table_rows(tmp_path / "data") > seen, server.log()
            time.sleep(rng.uniform(0.0, 0.3))
            server.kill()
            first = writer.stop()
            server.start()
            writer.settle()
            acked |= writer.acked
        assert server.stop() == 0, server.log()
    finally:
        server.kill()

    in_log = log_after_restart(tmp_path / "data", tmp_path / "data" / "objects", TOPIC)
    in_table = table_records(table_of(tmp_path, "memory_steps"))
    # Each record of the log once, at its offset (a producer's retry after a
    # lost answer is a second record of the log, and so a second row).
    assert in_table == in_log
    assert acked <= {value for _, _, value in in_table}


@pytest.mark.parametrize("when", SWAP_KILLS)
def test_kill_9_at_the_catalog_swap_leaves_each_record_once(tmp_path: Path, when: str) -> None:
    """A writer killed with its Parquet files written but the catalog not
    yet swapped, or right after the swap: the next one writes the records
    the table lacks and none it has."""
    kill_at_the_swap(tmp_path, when, 100, TABLE_ON)
    assert table_of(tmp_path).scan().to_arrow().num_rows == (0 if when == "before-swap" else 100)
    written = list((tmp_path / "objects" / "tables").rglob("*.parquet"))
    assert written  # the kill came after the commit's data files were written
    in_log = log_after_restart(tmp_path / "data", tmp_path / "objects")
    assert len(in_log) == 100
    assert table_records(table_of(tmp_path)) == in_log
