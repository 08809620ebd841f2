"""On an S3 object store the warehouse is in the same bucket, under the
store's prefix, written with the store's endpoint and credentials."""

from __future__ import annotations

import uuid
from pathlib import Path

import duckdb

from tests.s3stream.conftest import S3Endpoint
from tests.tables.conftest import TABLE_ON, catalog_of, committed_records, open_engine


def test_an_s3_store_keeps_the_table_in_its_bucket(
    tmp_path: Path,
    s3_endpoint: S3Endpoint,
) -> None:
    prefix = f"tables-{uuid.uuid4().hex[:8]}"
    with open_engine(tmp_path, s3_endpoint.store_url(prefix)) as engine:
        engine.create_topic("decisions", 2, TABLE_ON)
        producer = engine.producer()
        for i in range(30):
            producer.send("decisions", f"d{i}".encode(), key=b"k", partition=i % 2)
        producer.flush()
        assert engine.flush(30)
        engine.commit_tables()
        expected = sorted(
            (r.partition, r.offset, r.value) for r in committed_records(engine, "decisions")
        )

    # Another process with the bucket's endpoint and credentials reads it.
    catalog = catalog_of(
        tmp_path,
        **{
            "s3.endpoint": s3_endpoint.url,
            "s3.region": s3_endpoint.region,
            "s3.access-key-id": s3_endpoint.access_key_id or "",
            "s3.secret-access-key": s3_endpoint.secret_access_key or "",
        },
    )
    table = catalog.load_table(("tidelog", "decisions"))
    topic_id = table.properties["tidelog.topic-id"]
    warehouse = f"s3://{s3_endpoint.bucket}/{prefix}/tables"
    assert table.location() == f"{warehouse}/tidelog/decisions-{topic_id}"
    arrow = table.scan().to_arrow()
    assert sorted((r["partition"], r["offset"], r["value"]) for r in arrow.to_pylist()) == expected
    connection = duckdb.connect()
    connection.register("decisions", arrow)
    counts = connection.execute("SELECT count(*), count(DISTINCT value) FROM decisions").fetchall()
    assert counts == [(30, 30)]

    store = s3_endpoint.store(prefix)
    try:
        keys = [info.key for info in store.list("tables/")]
    finally:
        store.close()
    assert any(key.endswith(".parquet") for key in keys)
    assert any(key.endswith(".metadata.json") for key in keys)


def test_the_stores_connection_is_handed_on_but_never_shown() -> None:
    from s3stream.store.s3 import S3Store

    store = S3Store(
        "b",
        endpoint_url="http://127.0.0.1:1",
        region="eu-west-1",
        access_key_id="AKIDEXAMPLE",
        secret_access_key="very-secret",
    )
    try:
        connection = store.connection()
    finally:
        store.close()
    assert (connection.endpoint_url, connection.region) == ("http://127.0.0.1:1", "eu-west-1")
    assert connection.access_key_id == "AKIDEXAMPLE"
    assert connection.secret_access_key == "very-secret"
    assert "very-secret" not in repr(connection) and "AKIDEXAMPLE" not in repr(connection)
