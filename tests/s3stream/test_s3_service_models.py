"""An S3Store's client is built from service models the process read once:
botocore's JSON (the S3 model, endpoints, partitions, ruleset) is parsed by
the first store, not again by each one after it (s3stream/store/s3.py)."""

from __future__ import annotations

from typing import Any

import botocore.loaders
import pytest

from s3stream.store.s3 import S3Store

UNREACHABLE = "http://127.0.0.1:1"
"""No request is sent: building the client reads only local files."""


def _store(prefix: str, **credentials: Any) -> S3Store:
    return S3Store("bucket", prefix, endpoint_url=UNREACHABLE, region="us-east-1", **credentials)


def test_a_second_store_reads_no_service_model_file(monkeypatch: pytest.MonkeyPatch) -> None:
    _store("first").close()
    read: list[str] = []
    load_file = botocore.loaders.JSONFileLoader.load_file

    def counted(self: Any, file_path: str, *args: Any) -> Any:
        read.append(file_path)
        return load_file(self, file_path, *args)

    monkeypatch.setattr(botocore.loaders.JSONFileLoader, "load_file", counted)
    second = _store("second", access_key_id="id", secret_access_key="secret")
    second.close()
    assert read == []


def test_stores_sharing_the_models_keep_their_own_credentials_and_region() -> None:
    first = _store("first", access_key_id="id-1", secret_access_key="secret-1")
    second = S3Store(
        "bucket",
        "second",
        endpoint_url=UNREACHABLE,
        region="eu-west-1",
        access_key_id="id-2",
        secret_access_key="secret-2",
    )
    try:
        one, two = first.connection(), second.connection()
        assert (one.region, one.access_key_id, one.secret_access_key) == (
            "us-east-1",
            "id-1",
            "secret-1",
        )
        assert (two.region, two.access_key_id, two.secret_access_key) == (
            "eu-west-1",
            "id-2",
            "secret-2",
        )
    finally:
        first.close()
        second.close()
