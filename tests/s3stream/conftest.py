"""Object stores for the tests: in memory, a local directory, and a real
HTTP S3 server — moto's on loopback, or any S3-compatible endpoint (MinIO,
AWS) named by TIDELOG_TEST_S3_ENDPOINT with TIDELOG_TEST_S3_BUCKET,
AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from s3stream.store import LocalStore, MemoryStore, ObjectStore, S3Store


@dataclass(frozen=True)
class S3Endpoint:
    url: str
    bucket: str
    region: str
    access_key_id: str
    secret_access_key: str

    def store(self, prefix: str, **options: Any) -> S3Store:
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
        return (
            f"s3://{self.bucket}/{prefix}?endpoint={self.url}&region={self.region}"
            f"&access_key_id={self.access_key_id}&secret_access_key={self.secret_access_key}"
        )


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[S3Endpoint]:
    url = os.environ.get("TIDELOG_TEST_S3_ENDPOINT")
    if url:
        endpoint = S3Endpoint(
            url,
            os.environ.get("TIDELOG_TEST_S3_BUCKET", "tidelog-test"),
            os.environ.get("TIDELOG_TEST_S3_REGION", "us-east-1"),
            os.environ.get("AWS_ACCESS_KEY_ID", ""),
            os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
        )
        endpoint.store("").create_bucket_if_missing()
        yield endpoint
        return
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = S3Endpoint(f"http://{host}:{port}", "tidelog-test", "us-east-1", "test", "test")
    endpoint.store("").create_bucket_if_missing()
    yield endpoint
    server.stop()


@pytest.fixture
def s3_store(s3_endpoint: S3Endpoint) -> Iterator[S3Store]:
    store = s3_endpoint.store(f"test-{uuid.uuid4().hex}")
    yield store
    store.close()


@pytest.fixture
def local_store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "bucket")


@pytest.fixture
def memory_store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture(params=["memory", "local", "s3"])
def any_store(request: pytest.FixtureRequest) -> ObjectStore:
    store: ObjectStore = request.getfixturevalue(f"{request.param}_store")
    return store
