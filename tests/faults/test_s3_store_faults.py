"""The S3 store's conditional writes through a proxy that loses responses.

botocore retries a request whose answer was lost; when the lost request was
a conditional write that took effect, the retry meets its own object and gets
412. The store settles that by reading the object back: its own bytes mean
the write happened. A real conflict (someone else's bytes) stays a 412.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from s3stream.store import PreconditionFailed, S3Store
from tests.faults.s3_proxy import WRITE_FAULTS, Fault, S3FaultProxy, puts_to
from tests.s3stream.conftest import S3Endpoint


@pytest.fixture
def store(faulty_endpoint: S3Endpoint) -> Iterator[S3Store]:
    store = faulty_endpoint.store(f"proxy-{uuid.uuid4().hex}")
    yield store
    store.close()


@pytest.mark.parametrize("fault", WRITE_FAULTS, ids=lambda f: f.value)
def test_a_lost_create_response_is_settled_as_our_own_write(
    store: S3Store, s3_fault_proxy: S3FaultProxy, fault: Fault
) -> None:
    s3_fault_proxy.inject(fault, match=puts_to("/k1"))
    version = store.put_if_absent("k1", b"mine")
    assert s3_fault_proxy.pending == 0 and s3_fault_proxy.stats.faults[fault.value] == 1
    assert store.get_versioned("k1") == (b"mine", version)


@pytest.mark.parametrize("fault", WRITE_FAULTS, ids=lambda f: f.value)
def test_a_lost_replace_response_is_settled_as_our_own_write(
    store: S3Store, s3_fault_proxy: S3FaultProxy, fault: Fault
) -> None:
    first = store.put_if_absent("k2", b"one")
    s3_fault_proxy.inject(fault, match=puts_to("/k2"))
    version = store.put_if_version("k2", b"two", first)
    assert s3_fault_proxy.pending == 0
    assert store.get_versioned("k2") == (b"two", version)


def test_someone_elses_object_is_still_a_conflict_after_a_retry(
    store: S3Store, s3_fault_proxy: S3FaultProxy
) -> None:
    store.put("k3", b"theirs")
    # The first attempt fails before it reaches the server; botocore's retry gets the 412.
    s3_fault_proxy.inject(Fault.SLOW_DOWN, match=puts_to("/k3"))
    with pytest.raises(PreconditionFailed):
        store.put_if_absent("k3", b"mine")
    assert s3_fault_proxy.pending == 0
    stale = store.head("k3").version
    store.put("k3", b"moved on")
    s3_fault_proxy.inject(Fault.RESET, match=puts_to("/k3"))
    with pytest.raises(PreconditionFailed):
        store.put_if_version("k3", b"mine", stale)
    assert store.get("k3") == b"moved on"


@pytest.mark.parametrize("fault", [Fault.SLOW_DOWN, Fault.RESET, Fault.LATENCY])
def test_plain_faults_are_retried_by_the_store(
    store: S3Store, s3_fault_proxy: S3FaultProxy, fault: Fault
) -> None:
    s3_fault_proxy.inject(fault, count=2)
    store.put("k4", b"data")
    assert store.get("k4") == b"data"
    assert s3_fault_proxy.stats.faults[fault.value] == 2


def _completes(method: str, path: str) -> bool:
    return method == "POST" and "uploadId=" in path


@pytest.mark.parametrize("conditional", [False, True], ids=["put", "put_if_absent"])
@pytest.mark.parametrize("fault", WRITE_FAULTS, ids=lambda f: f.value)
def test_a_lost_multipart_completion_is_settled_as_our_own_write(
    faulty_endpoint: S3Endpoint, s3_fault_proxy: S3FaultProxy, fault: Fault, conditional: bool
) -> None:
    mib = 1024 * 1024
    store = faulty_endpoint.store(
        f"proxy-{uuid.uuid4().hex}", multipart_threshold=5 * mib, part_size=5 * mib
    )
    data = bytes(range(256)) * (11 * 1024 * 4)  # 11 MiB: three parts
    try:
        s3_fault_proxy.inject(fault, match=_completes)
        s3_fault_proxy.inject(Fault.NO_SUCH_UPLOAD, match=_completes)  # as S3 answers the retry
        version = store.put_if_absent("big", data) if conditional else store.put("big", data)
        assert s3_fault_proxy.pending == 0
        assert version.endswith('-3"')
        assert store.get_versioned("big") == (data, version)
    finally:
        store.delete("big")
        store.close()
