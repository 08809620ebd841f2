"""bench/small_produce_bench.py, run as people run it, at its smallest."""

from __future__ import annotations

import json
from types import ModuleType

import pytest

from tests.bench.run import load_bench, run_bench


def _load() -> ModuleType:
    return load_bench("small_produce_bench.py", "bench_small_produce")


def test_a_thread_that_ended_between_readings_takes_nothing_from_its_namesakes() -> None:
    used_by_name = _load()._used_by_name
    before = {(1, "loop"): 1.0, (7, "pool"): 5.0, (8, "pool"): 0.5}
    # Thread 7 ended (its 5 s are gone from the reading); thread 9 started.
    after = {(1, "loop"): 1.25, (8, "pool"): 0.75, (9, "pool"): 0.5}
    assert used_by_name(before, after) == {"loop": 0.25, "pool": 0.75}


@pytest.mark.slow
def test_small_produce_bench_counts_one_record_requests_and_their_cpu() -> None:
    report = json.loads(
        run_bench("small_produce_bench.py", "--quick", "--json", "--partitions", "50")
    )
    # --quick: 1,000 records (0.5 s at 2,000 a second), each to the next
    # partition, so one record a request; a producer that a loaded machine
    # holds back sends what fell due meanwhile together: fewer requests.
    records = 1000
    assert 0 < report["requests"] <= records
    assert report["records_per_request"] == round(records / report["requests"], 3)
    assert report["server_cpu_us_per_request"] >= report["loop_cpu_us_per_request"] > 0
    assert sum(report["threads"].values()) == pytest.approx(
        report["server_cpu_us_per_request"], abs=1.0
    )
    assert report["embedded_loop_cpu_us_per_append"] > 0


def test_a_prepared_produce_frame_is_what_the_request_schema_decodes() -> None:
    from engine.protocol.codec import body_offset
    from engine.protocol.frames import parse_header
    from engine.protocol.produce import decode_produce

    frame = _load()._produce_v9(41, "small", 7, b"batch bytes")
    body = memoryview(bytearray(frame[4:]))
    header = parse_header(body)
    assert (header.api_key, header.api_version, header.correlation_id) == (0, 9, 41)
    request = decode_produce(body, body_offset(header, body), 9)
    assert (request.transactional_id, request.acks, request.timeout_ms) == (None, -1, 30_000)
    ((topic,),) = (request.topics,)
    ((partition,),) = (topic.partitions,)
    assert (topic.name, partition.partition) == ("small", 7)
    assert partition.records is not None and bytes(partition.records) == b"batch bytes"


@pytest.mark.slow
def test_the_pipelined_run_counts_its_requests_cpu() -> None:
    report = json.loads(
        run_bench(
            "small_produce_bench.py", "--quick", "--json", "--pipelined", "--partitions", "50"
        )
    )
    assert report["pipelined_requests_per_span"] == 1000
    for what in ("server", "loop"):
        low = report[f"pipelined_{what}_cpu_us_per_request_min"]
        assert 0 < low <= report[f"pipelined_{what}_cpu_us_per_request_median"]
    assert (
        report["pipelined_server_cpu_us_per_request_min"]
        >= report["pipelined_loop_cpu_us_per_request_min"]
    )
