"""An S3Store's client is built from service models the process read once:
botocore's JSON (the S3 model, endpoints, partitions, ruleset) is parsed by
the first store, not again by each one after it (s3stream/store/s3.py)."""

from __future__ import annotations

import gzip
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import botocore.loaders
import pytest

import s3stream.store.s3
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


def test_a_store_on_another_data_path_reads_the_models_found_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS_DATA_PATH names models that take the place of botocore's own
    (patched or newer ones): a store opened with it set reads them, though
    an earlier store already shares the models botocore ships."""
    _store("first").close()
    shipped = Path(botocore.loaders.Loader.BUILTIN_DATA_PATH, "s3", "2006-03-01")
    model = json.loads(gzip.decompress((shipped / "service-2.json.gz").read_bytes()))
    model["metadata"]["serviceFullName"] = "S3, as patched here"
    patched = tmp_path / "s3" / "2006-03-01"
    patched.mkdir(parents=True)
    (patched / "service-2.json").write_text(json.dumps(model))
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))
    store = _store("patched")
    try:
        metadata = store._client.meta.service_model.metadata
        assert metadata["serviceFullName"] == "S3, as patched here"
    finally:
        store.close()


def test_stores_opened_at_once_from_threads_share_one_loader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As an engine's store, its uploader and the tables' catalog open
    theirs: the first stores of the process, all at once, end with one
    loader, and each its working client."""
    monkeypatch.setattr(s3stream.store.s3, "_service_models", {})
    threads = 6
    together = threading.Barrier(threads)

    def opened(number: int) -> S3Store:
        together.wait(10)
        return _store(f"thread-{number}")

    with ThreadPoolExecutor(threads) as pool:
        stores = list(pool.map(opened, range(threads)))
    try:
        loaders = {id(store._session.get_component("data_loader")) for store in stores}
        assert len(loaders) == 1
        assert all(store._client.meta.service_model.service_name == "s3" for store in stores)
    finally:
        for store in stores:
            store.close()


def test_empty_keys_leave_the_credentials_to_the_default_chain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As a store built on boto3's Session did: empty keys are none given."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "id-from-the-environment")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-from-the-environment")
    store = _store("empty", access_key_id="", secret_access_key="")
    try:
        connection = store.connection()
        assert (connection.access_key_id, connection.secret_access_key) == (
            "id-from-the-environment",
            "secret-from-the-environment",
        )
    finally:
        store.close()
