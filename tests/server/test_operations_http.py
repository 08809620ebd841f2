"""The operations endpoints of a real ``tidelog serve`` child, scraped over
a real socket after a real Kafka client (confluent-kafka) produced and
consumed: the metrics' values, readiness under an object store that stops
answering (a fault proxy in front of moto's S3 server), and JSON log lines."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from engine.engine import Engine
from tests.faults.s3_proxy import Fault, S3FaultProxy
from tests.s3stream.conftest import S3Endpoint, s3_endpoint  # noqa: F401
from tests.server.conftest import ServerProcess, free_port

pytestmark = pytest.mark.slow  # child servers and a real client: the C pass only

TOPIC = "ops-events"
PARTITIONS = 2
PER_PARTITION = 30
CONSUMED = 10
"""Records the group consumes and commits in partition 0 (none in partition 1)."""
WAIT_S = 30.0


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(http: str) -> Samples:
    status, body = _get(f"{http}/metrics")
    assert status == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, tuple(sorted(labels.items()))]


def _requests(samples: Samples, api: str, error_code: str) -> float:
    """Requests of one API answered with ``error_code``, every version together."""
    return sum(
        value
        for (name, labels), value in samples.items()
        if name == "tidelog_requests_total"
        and dict(labels)["api"] == api
        and dict(labels)["error_code"] == error_code
    )


class Served:
    def __init__(self, server: ServerProcess, http: str) -> None:
        self.server = server
        self.http = http


def _start(root: Path, config: str, object_store: str | None = None) -> Served:
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    (root / "tidelog.toml").write_text(config)
    server = ServerProcess(
        root / "data",
        object_store=object_store,
        args=[
            "--config",
            str(root / "tidelog.toml"),
            "--http",
            f"127.0.0.1:{port}",
            "--log-format",
            "json",
        ],
    ).start()
    return Served(server, f"http://127.0.0.1:{port}")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    running = _start(
        tmp_path_factory.mktemp("operations"),
        f"[engine]\ndefault_partitions = {PARTITIONS}\n",
    )
    yield running
    running.server.end_at_teardown(graceful=True)


def _produce_and_consume(bootstrap: str) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for partition in range(PARTITIONS):
        for i in range(PER_PARTITION):
            producer.produce(TOPIC, f"event-{partition}-{i}".encode(), partition=partition)
    assert producer.flush(WAIT_S) == 0
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "ops-group",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([TopicPartition(TOPIC, 0, 0)])
        read = 0
        deadline = time.monotonic() + WAIT_S
        while read < CONSUMED and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                read += 1
        assert read == CONSUMED
        consumer.commit(offsets=[TopicPartition(TOPIC, 0, CONSUMED)], asynchronous=False)
        consumer.commit(offsets=[TopicPartition(TOPIC, 1, 0)], asynchronous=False)
    finally:
        consumer.close()


def test_metrics_after_a_real_client_produced_and_consumed(served: Served) -> None:
    _produce_and_consume(served.server.bootstrap)
    samples = _samples(served.http)

    for partition in range(PARTITIONS):
        labels = {"topic": TOPIC, "partition": str(partition)}
        assert _value(samples, "tidelog_partition_records_in_total", **labels) == PER_PARTITION
        assert _value(samples, "tidelog_partition_high_watermark", **labels) == PER_PARTITION
    lag = {"group": "ops-group", "topic": TOPIC}
    assert _value(samples, "tidelog_consumer_group_lag", partition="0", **lag) == (
        PER_PARTITION - CONSUMED
    )
    assert _value(samples, "tidelog_consumer_group_lag", partition="1", **lag) == PER_PARTITION
    assert _value(samples, "tidelog_consumer_group_committed_offset", partition="0", **lag) == (
        CONSUMED
    )

    assert _requests(samples, "Produce", error_code="0") >= 1
    assert _requests(samples, "Produce", error_code="0") == _value(
        samples, "tidelog_request_latency_seconds_count", api="Produce"
    )
    assert _requests(samples, "OffsetCommit", error_code="0") == 2
    fetch_latency = _value(samples, "tidelog_request_latency_seconds_count", api="Fetch")
    assert fetch_latency >= 1
    assert _value(samples, "tidelog_connections", listener="PLAINTEXT") >= 0
    assert _value(samples, "tidelog_connections_accepted_total") >= 2
    assert _value(samples, "tidelog_wal_fsync_seconds_count") >= 1
    assert _value(samples, "tidelog_fenced") == 0

    # The bytes counted in are the partition's stored batches, byte for byte.
    bytes_in = {
        p: _value(samples, "tidelog_partition_bytes_in_total", topic=TOPIC, partition=str(p))
        for p in range(PARTITIONS)
    }
    assert served.server.stop() == 0, served.server.log()
    with Engine.open(str(served.server.data_dir)) as engine:
        for partition in range(PARTITIONS):
            fetched = engine.fetch(TOPIC, partition, 0, max_bytes=1 << 20)
            assert sum(len(batch) for batch in fetched.records) == bytes_in[partition]


def test_log_lines_are_json_objects(served: Served) -> None:
    lines = [line for line in served.server.log().splitlines() if line.startswith("{")]
    assert any("listening on" in json.loads(line)["message"] for line in lines)
    for line in lines:
        parsed = json.loads(line)
        assert {"time", "level", "logger", "message"} <= parsed.keys()


def _wait_for(check: object, what: str, served: Served) -> None:
    assert callable(check)
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} within {WAIT_S} s:\n{served.server.log()[-3000:]}")


def test_readyz_follows_the_object_store_and_errors_are_counted(
    tmp_path: Path,
    s3_endpoint: S3Endpoint,  # noqa: F811
) -> None:
    with S3FaultProxy(s3_endpoint.url) as proxy:
        store = S3Endpoint(
            proxy.url,
            s3_endpoint.bucket,
            s3_endpoint.region,
            s3_endpoint.access_key_id,
            s3_endpoint.secret_access_key,
        ).store_url(f"ops-{tmp_path.name}")
        config = (
            "[http]\nobject_store_window_s = 0.5\nprobe_timeout_s = 0.5\n"
            "[store]\nupload_interval_s = 0.1\n"
        )
        served = _start(tmp_path, config, object_store=store + "&max_attempts=1")
        try:

            def ready() -> bool:
                status, body = _get(f"{served.http}/readyz")
                return (status, json.loads(body)["status"]) == (200, "ready")

            # A probe slower than probe_timeout_s (short, for the 503 below to
            # come soon) is answered 503 until it returns: waited for.
            _wait_for(ready, "/readyz did not answer 200 while the store answers", served)
            assert _get(f"{served.http}/healthz")[0] == 200

            def errors() -> float:
                samples = _samples(served.http)
                return sum(
                    _value(samples, "tidelog_object_store_errors_total", source=source)
                    for source in ("data", "manifest")
                )

            errors_before = errors()

            producer = Producer({"bootstrap.servers": served.server.bootstrap})
            producer.produce("ops-faults", b"the topic made while the store answers")
            assert producer.flush(WAIT_S) == 0
            proxy.set_rates({Fault.SLOW_DOWN: 1.0})
            producer.produce("ops-faults", b"kept in the WAL while the store is down")
            assert producer.flush(WAIT_S) == 0  # acknowledged from the local WAL

            def unready() -> bool:
                status, body = _get(f"{served.http}/readyz")
                return status == 503 and "object store" in json.loads(body)["reason"]

            _wait_for(unready, "/readyz did not answer 503", served)
            _wait_for(
                lambda: errors() > errors_before,
                "no object-store error was counted",
                served,
            )
            assert _get(f"{served.http}/healthz")[0] == 200  # the process is up all along
            failed = _samples(served.http)
            assert _value(failed, "tidelog_object_store_request_errors_total", operation="head") > 0
            assert _value(failed, "tidelog_object_store_requests_total", operation="head") >= (
                _value(failed, "tidelog_object_store_request_errors_total", operation="head")
            )

            proxy.heal()
            _wait_for(lambda: _get(f"{served.http}/readyz")[0] == 200, "/readyz stayed 503", served)
            _wait_for(
                lambda: _value(_samples(served.http), "tidelog_wal_unuploaded_bytes") == 0,
                "the append was not uploaded once the store answered",
                served,
            )
        finally:
            proxy.heal()
            served.server.end_at_teardown(graceful=True)
