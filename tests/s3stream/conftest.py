"""Object stores for the tests: in memory, a local directory, and a real HTTP
S3 server.

The S3 server is moto's, started once per session on loopback, unless
TIDELOG_TEST_S3_ENDPOINT names another (MinIO, AWS) with
TIDELOG_TEST_S3_BUCKET (default "tidelog-test"), TIDELOG_TEST_S3_REGION
(default us-east-1) and, if the usual chain should not supply them,
AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY. Each test gets its own prefix.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from s3stream.store import LocalStore, MemoryStore, ObjectStore, ObjectStoreError, S3Store

BUCKET = "tidelog-test"


@dataclass(frozen=True)
class S3Endpoint:
    url: str
    bucket: str
    region: str
    access_key_id: str | None
    secret_access_key: str | None

    def store(self, prefix: str, **options: Any) -> S3Store:
        """An S3Store on this endpoint under ``prefix``; ``options`` go to S3Store."""
        return S3Store(
            self.bucket,
            prefix,
            endpoint_url=self.url,
            region=self.region,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            **options,
        )

    def store_url(self, prefix: str) -> str:
        """An s3:// URL for open_store naming the same place as ``store(prefix)``."""
        query = {"endpoint": self.url, "region": self.region}
        if self.access_key_id is not None and self.secret_access_key is not None:
            query |= {
                "access_key_id": self.access_key_id,
                "secret_access_key": self.secret_access_key,
            }
        return f"s3://{self.bucket}/{quote(prefix)}?{urlencode(query)}"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[S3Endpoint]:
    url = os.environ.get("TIDELOG_TEST_S3_ENDPOINT")
    if url:
        endpoint = S3Endpoint(
            url,
            os.environ.get("TIDELOG_TEST_S3_BUCKET", BUCKET),
            os.environ.get("TIDELOG_TEST_S3_REGION", "us-east-1"),
            os.environ.get("AWS_ACCESS_KEY_ID"),
            os.environ.get("AWS_SECRET_ACCESS_KEY"),
        )
        _create_bucket(endpoint)
        yield endpoint
        return

    from moto.server import ThreadedMotoServer

    from tests.s3stream.atomic_moto import make_object_writes_atomic

    make_object_writes_atomic()  # as S3's: a check and its write in one step
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # else a log line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = S3Endpoint(f"http://{host}:{port}", BUCKET, "us-east-1", "test", "test")
        _create_bucket(endpoint)
        yield endpoint
    finally:
        server.stop()


def _create_bucket(endpoint: S3Endpoint) -> None:
    store = endpoint.store("")
    try:
        store.create_bucket_if_missing()
    finally:
        store.close()


@pytest.fixture
def s3_store(s3_endpoint: S3Endpoint) -> Iterator[S3Store]:
    store = s3_endpoint.store(f"test-{uuid.uuid4().hex}")
    yield store
    # A shared bucket on a real endpoint should not fill up with test debris.
    with contextlib.suppress(ObjectStoreError):
        # DeleteObjects, a thousand keys a request: a DELETE each cost a
        # test that left some 300 objects 3 s of its teardown.
        store.delete_many([info.key for info in store.list()])
    store.close()


@pytest.fixture
def local_store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "objects")


@pytest.fixture
def memory_store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture(params=["memory", "local", "s3"])
def any_store(request: pytest.FixtureRequest) -> ObjectStore:
    """Each backend in turn, through the fixture above of the same name."""
    store: ObjectStore = request.getfixturevalue(f"{request.param}_store")
    return store
