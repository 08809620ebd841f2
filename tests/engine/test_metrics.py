"""The engine's metrics registry (engine.metrics()), read in process: the
values after embedded produce and consume, the histograms' buckets, the
documented names (docs/operations.md) against what a scrape shows, and
JSON log lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from engine import Engine
from engine.log_json import JsonFormatter
from engine.log_limit import RepeatFilter
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from engine.server.config import ServerConfig
from engine.server.request_metrics import RequestMetrics, api_name
from engine.server.server import Server
from wal.histogram import PlainHistogram

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_embedded_produce_and_consume_are_counted(tmp_path: Path) -> None:
    with Engine.open(str(tmp_path)) as engine:
        engine.create_topic("events", 2)
        producer = engine.producer()
        for i in range(12):
            producer.send("events", f"event-{i}".encode(), partition=i % 2)
        producer.flush()
        consumer = engine.consumer(group_id="readers", enable_auto_commit=False)
        consumer.assign([("events", 0), ("events", 1)])
        consumer.commit({("events", 0): 4, ("events", 1): 6})
        consumer.close()
        stored = {p: sum(len(b) for b in engine.fetch("events", p, 0).records) for p in range(2)}

        samples = _samples(engine.metrics().text())

        for partition in range(2):
            labels = (("partition", str(partition)), ("topic", "events"))
            assert samples["tidelog_partition_records_in_total", labels] == 6
            assert samples["tidelog_partition_bytes_in_total", labels] == stored[partition]
            assert samples["tidelog_partition_bytes_out_total", labels] == stored[partition]
            assert samples["tidelog_partition_high_watermark", labels] == 6
        group = (("group", "readers"),)
        lag_0 = (*group, ("partition", "0"), ("topic", "events"))
        lag_1 = (*group, ("partition", "1"), ("topic", "events"))
        assert samples["tidelog_consumer_group_lag", lag_0] == 2
        assert samples["tidelog_consumer_group_lag", lag_1] == 0
        assert samples["tidelog_consumer_group_committed_offset", lag_0] == 4
        assert samples["tidelog_wal_appends_total", ()] >= 2  # a batch or more per partition
        assert (
            samples["tidelog_wal_group_commit_appends_sum", ()]
            == (samples["tidelog_wal_appends_total", ()])
        )
        assert samples["tidelog_engine_open", ()] == 1
        # the two reads above were of the tail: the log cache answered them
        assert samples["tidelog_log_cache_hits_total", ()] == 2
        assert samples["tidelog_log_cache_misses_total", ()] == 0
    assert _samples(engine.metrics().text())["tidelog_engine_open", ()] == 0

    with Engine.open(str(tmp_path)) as reopened:  # closing uploaded: reads go to objects
        assert reopened.fetch("events", 0, 0).records
        samples = _samples(reopened.metrics().text())
        assert samples["tidelog_log_cache_misses_total", ()] >= 1
        assert samples["tidelog_object_store_requests_total", (("operation", "get"),)] >= 1


def _documented() -> dict[str, tuple[str, frozenset[str]]]:
    """Each metric in docs/operations.md's table, with its type and labels."""
    table = DOC.read_text().split("## Metrics", 1)[1].split("### ", 1)[0]
    rows = re.findall(r"^\| `(tidelog_\w+)` \| (\w+) \|([^|]*)\|", table, re.MULTILINE)
    return {name: (kind, frozenset(re.findall(r"`(\w+)`", labels))) for name, kind, labels in rows}


def _labels(family: Metric) -> frozenset[str]:
    """A family's label names: its samples' (a histogram's ``le`` is the
    bucket's, not a label of the metric), or, for one with no sample yet,
    the names it was made with (prometheus-client's families keep them)."""
    named = {name for sample in family.samples for name in sample.labels} - {"le"}
    made_with: tuple[str, ...] = getattr(family, "_labelnames", ())
    return frozenset(named) or frozenset(made_with)


def test_every_metric_a_server_shows_is_documented_with_its_type_and_labels_and_every_one_shown(
    tmp_path: Path,
) -> None:
    async def collect() -> list[Metric]:
        with Engine.open(str(tmp_path)) as engine:
            engine.create_topic("events", 1)
            producer = engine.producer()
            producer.send("events", b"counted")
            producer.flush()
            consumer = engine.consumer(group_id="readers", enable_auto_commit=False)
            consumer.assign([("events", 0)])
            consumer.commit({("events", 0): 1})
            consumer.close()
            server = Server(engine, ServerConfig(host="127.0.0.1", port=0))
            await server.start()
            try:
                return list(engine.metrics().registry.collect())
            finally:
                await server.stop()

    documented = _documented()
    # prometheus-client names a counter's family without "_total"
    shown = {
        f.name + "_total" if f.name + "_total" in documented else f.name: (f.type, _labels(f))
        for f in asyncio.run(collect())
    }
    assert shown == documented


def test_every_metric_the_docs_name_is_in_the_table() -> None:
    """A metric named in prose elsewhere (docs/tables.md, the README, a
    runbook) is one a scrape shows, under its exposed name."""
    documented = _documented()
    series = re.compile(r"(tidelog_\w+?)(?:_bucket|_sum|_count)?\b")
    unknown = set()
    for document in [DOC.parents[1] / "README.md", *sorted(DOC.parent.rglob("*.md"))]:
        if "design" in document.parts:
            continue  # a decision record speaks of its own time
        for match in re.finditer(r"`[^`\n]*`", document.read_text()):
            for name in re.findall(r"\btidelog_\w+", match.group(0)):
                whole = series.fullmatch(name)
                if name not in documented and (whole is None or whole.group(1) not in documented):
                    unknown.add(f"{document.name}: {name}")
    assert sorted(unknown) == []


@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), max_size=50))
def test_histogram_buckets_count_what_is_at_or_below_each_bound(values: list[float]) -> None:
    histogram = PlainHistogram()
    for value in values:
        histogram.observe(value)
    buckets = histogram.cumulative()
    for bound, count in buckets[:-1]:
        assert count == sum(1 for v in values if v <= float(bound))
    assert buckets[-1] == ("+Inf", len(values))
    assert histogram.count == len(values)
    assert abs(histogram.sum - sum(values)) < 1e-6


def test_json_log_lines_carry_the_fields_of_the_line() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tidelog.test_json_lines")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("uploaded %d objects", 3, extra={"bucket": "b", "bytes": 42})
        try:
            raise ValueError("bad")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "uploaded 3 objects"
    assert (first["level"], first["logger"]) == ("WARNING", "tidelog.test_json_lines")
    assert (first["bucket"], first["bytes"]) == ("b", 42)
    assert first["time"].endswith("+00:00")
    assert "exception" not in first
    assert second["message"] == "failed"
    assert "ValueError: bad" in second["exception"]


def test_a_json_line_after_held_back_repeats_says_how_many_in_a_field() -> None:
    now = [0.0]
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RepeatFilter(10.0, clock=lambda: now[0]))
    logger = logging.getLogger("tidelog.test_json_repeats")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for _ in range(5):
            logger.warning("object store error (will retry): %s", "SlowDown")
        now[0] = 11.0
        logger.warning("object store error (will retry): %s", "SlowDown")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    first, last = (json.loads(line) for line in stream.getvalue().splitlines())
    assert "repeated" not in first
    assert last["repeated"] == 4


def test_requests_are_counted_by_kafka_api_name_version_and_error_code() -> None:
    metrics = RequestMetrics()
    metrics.answered(ApiKey.OFFSET_COMMIT, 8, 0, 0.002)
    metrics.answered(ApiKey.OFFSET_COMMIT, 8, KafkaCode.COORDINATOR_NOT_AVAILABLE, 0.2)
    metrics.answered(ApiKey.API_VERSIONS, 3, 0, 0.0001)
    assert api_name(ApiKey.OFFSET_COMMIT) == "OffsetCommit"
    assert metrics.requests == {
        (ApiKey.OFFSET_COMMIT, 8, 0): 1,
        (ApiKey.OFFSET_COMMIT, 8, 15): 1,
        (ApiKey.API_VERSIONS, 3, 0): 1,
    }
    assert metrics.latency[ApiKey.OFFSET_COMMIT].count == 2
