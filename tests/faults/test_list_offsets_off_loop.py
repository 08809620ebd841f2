"""A ListOffsets that reads object storage does not hold up the server: a
MAX_TIMESTAMP lookup after retention removed the largest record scans the
remaining batches, which are only in the bucket (no block cache); with
every GET delayed by the fault proxy, it is still waiting on its read while
another connection's ApiVersions is answered. A real engine on moto
through S3FaultProxy, its wire server in this process."""

from __future__ import annotations

import select
import time
from pathlib import Path

import engine
import native
from engine.protocol.apis import ApiKey, request_schema
from native.records import RecordSpec
from s3stream import StreamStoreConfig
from tests.faults.s3_proxy import Fault, S3FaultProxy
from tests.s3stream.conftest import S3Endpoint
from tests.server.in_process import InProcessServer
from tests.server.wire import Wire, build, response_schema_for

TIMEOUT = 60.0
T0 = 1_700_000_000_000
GET_DELAY_S = 3.0
"""Long enough that the ApiVersions round trip ends well inside it."""
NO_UPLOADS = StreamStoreConfig(
    upload_interval_s=3600, compaction_interval_s=3600, block_cache_bytes=1, readahead_bytes=0
)


def open_engine(root: Path, endpoint: S3Endpoint) -> engine.Engine:
    return engine.open(
        root / "node", endpoint.store_url("off-loop"), engine.EngineConfig(store=NO_UPLOADS)
    )


def max_timestamp_request() -> object:
    return build(
        request_schema(ApiKey.LIST_OFFSETS, 7),
        replica_id=-1,
        topics=[
            {
                "name": "t",
                "partitions": [{"partition_index": 0, "current_leader_epoch": -1, "timestamp": -3}],
            }
        ],
    )


def answered(wire: Wire) -> bool:
    """Whether the server has sent anything on ``wire`` yet (without waiting)."""
    readable, _, _ = select.select([wire.sock], [], [], 0)
    return bool(readable)


def test_a_lookup_reading_object_storage_leaves_the_loop_serving(
    tmp_path: Path, faulty_endpoint: S3Endpoint, s3_fault_proxy: S3FaultProxy
) -> None:
    opened = open_engine(tmp_path, faulty_endpoint)
    opened.create_topic("t", 1)
    specs = [RecordSpec(T0 + (1000 if i == 7 else i), b"k", b"v") for i in range(10)]
    opened.produce("t", 0, native.encode_batch(specs))
    assert opened.flush(TIMEOUT)
    opened.close()
    # Reopened, with no block cache: the lookup reads the bucket.
    opened = open_engine(tmp_path, faulty_endpoint)
    opened.delete_records("t", 0, 8)  # the largest timestamp (offset 7) is gone
    server = InProcessServer(opened)
    try:
        s3_fault_proxy.latency_s = GET_DELAY_S
        s3_fault_proxy.set_rates({Fault.LATENCY: 1.0}, lambda method, _: method == "GET")
        with (
            Wire(server.bootstrap, timeout=TIMEOUT) as slow,
            Wire(server.bootstrap, timeout=TIMEOUT) as other,
        ):
            request = max_timestamp_request()
            slow.send(request)
            deadline = time.monotonic() + TIMEOUT
            while s3_fault_proxy.stats.faults[Fault.LATENCY.value] == 0:
                assert time.monotonic() < deadline, "the lookup never read the bucket"
                time.sleep(0.01)
            # The lookup is now waiting on a delayed GET.
            versions = other.request(build(request_schema(ApiKey.API_VERSIONS, 3)))
            assert versions.error_code == 0
            assert not answered(slow), "ApiVersions waited for the lookup"
            s3_fault_proxy.heal()
            _, body = slow.receive(response_schema_for(request))
            [partition] = body.topics[0].partitions
            found = (partition.error_code, partition.offset, partition.timestamp)
            assert found == (0, 9, T0 + 9)
    finally:
        s3_fault_proxy.heal()
        server.stop()
        opened.close()
