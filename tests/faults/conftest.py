"""The S3 fault proxy as a fixture: moto's server (the session's, from
tests/s3stream/conftest.py) behind a proxy that injects faults.

``s3_fault_proxy`` is a started :class:`S3FaultProxy`; ``faulty_endpoint``
names the same bucket through it, so ``faulty_endpoint.store(prefix)`` or
``faulty_endpoint.store_url(prefix)`` reach moto with faults on the way.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.faults.s3_proxy import S3FaultProxy
from tests.s3stream.conftest import S3Endpoint, s3_endpoint  # noqa: F401

FULL = os.environ.get("TIDELOG_FAULTS") == "full"
"""``TIDELOG_FAULTS=full`` runs the long campaigns; the default is a short run."""


@pytest.fixture
def s3_fault_proxy(s3_endpoint: S3Endpoint) -> Iterator[S3FaultProxy]:  # noqa: F811
    seed = int(os.environ.get("TIDELOG_FAULTS_SEED", "0"))
    with S3FaultProxy(s3_endpoint.url, seed=seed) as proxy:
        yield proxy


@pytest.fixture
def faulty_endpoint(s3_endpoint: S3Endpoint, s3_fault_proxy: S3FaultProxy) -> S3Endpoint:  # noqa: F811
    return S3Endpoint(
        s3_fault_proxy.url,
        s3_endpoint.bucket,
        s3_endpoint.region,
        s3_endpoint.access_key_id,
        s3_endpoint.secret_access_key,
    )
