"""Every object-store backend keeps the contract of base.py; S3 against a real HTTP server."""

from __future__ import annotations

import errno
import multiprocessing
import os
import shutil
import socket
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
import urllib3
from botocore.stub import Stubber
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3stream.store import (
    LocalStore,
    MemoryStore,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    PreconditionFailed,
    S3Store,
    open_store,
)
from s3stream.store import local as local_module
from tests.s3stream.conftest import S3Endpoint

MiB = 1024 * 1024


def race(threads: int, attempt: Callable[[int], None]) -> None:
    """Runs ``attempt(n)`` on ``threads`` threads released together."""
    barrier = threading.Barrier(threads)
    failures: list[BaseException] = []

    def run(n: int) -> None:
        barrier.wait()
        try:
            attempt(n)
        except BaseException as error:
            failures.append(error)

    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if failures:
        raise failures[0]


# -- the contract, on every backend ----------------------------------------------


def test_put_get_round_trip(any_store: ObjectStore) -> None:
    data = os.urandom(3000)
    version = any_store.put("a/b/object", data)
    assert any_store.get("a/b/object") == data
    assert any_store.get_versioned("a/b/object") == (data, version)
    any_store.put("from-bytearray", bytearray(b"xyz"))
    any_store.put("from-memoryview", memoryview(b"--xyz--")[2:5])
    assert any_store.get("from-bytearray") == any_store.get("from-memoryview") == b"xyz"
    any_store.put("empty", b"")
    assert any_store.get("empty") == b""
    assert any_store.get_versioned("empty")[0] == b""


def test_ranged_gets(any_store: ObjectStore) -> None:
    data = bytes(range(256)) * 4
    any_store.put("k", data)
    assert any_store.get("k", 10) == data[10:]
    assert any_store.get("k", 0, 20) == data[:20]
    assert any_store.get("k", 10, 20) == data[10:20]
    assert any_store.get("k", 1000, 5000) == data[1000:]  # cut at the end
    assert any_store.get("k", 1023, 1024) == data[-1:]
    assert any_store.get("k", 5, 5) == b""
    assert any_store.get("k", 7, 3) == b""
    assert any_store.get("k", 1024) == b""  # starts exactly at the end
    assert any_store.get("k", 1024, 2000) == b""
    with pytest.raises(ObjectNotFound):
        any_store.get("k", 1025)  # starts past the end
    with pytest.raises(ObjectNotFound):
        any_store.get("k", 2000, 2000)
    with pytest.raises(ValueError):
        any_store.get("k", -1)
    any_store.put("empty", b"")
    assert any_store.get("empty", 0, 10) == b""
    assert any_store.get("empty", 0) == b""


def test_missing_keys(any_store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound) as caught:
        any_store.get("nope")
    assert caught.value.key == "nope"
    assert not caught.value.transient
    with pytest.raises(ObjectNotFound):
        any_store.get("nope", 3, 9)
    with pytest.raises(ObjectNotFound):
        any_store.get("nope", 0, 0)
    with pytest.raises(ObjectNotFound):
        any_store.head("nope")
    with pytest.raises(ObjectNotFound):
        any_store.get_versioned("nope")


def test_put_if_absent_wins_once(any_store: ObjectStore) -> None:
    version = any_store.put_if_absent("k", b"first")
    with pytest.raises(PreconditionFailed) as caught:
        any_store.put_if_absent("k", b"second")
    assert caught.value.key == "k"
    assert not caught.value.transient
    assert any_store.get_versioned("k") == (b"first", version)
    any_store.delete("k")
    any_store.put_if_absent("k", b"third")  # absent again
    assert any_store.get("k") == b"third"


def test_put_if_version_replaces_only_the_current_version(any_store: ObjectStore) -> None:
    v1 = any_store.put("k", b"one")
    v2 = any_store.put_if_version("k", b"two", v1)
    assert v2 != v1
    with pytest.raises(PreconditionFailed):
        any_store.put_if_version("k", b"three", v1)
    assert any_store.get_versioned("k") == (b"two", v2)
    v3 = any_store.put_if_version("k", b"three", v2)
    assert any_store.get_versioned("k") == (b"three", v3)
    with pytest.raises(PreconditionFailed):
        any_store.put_if_version("absent", b"x", v3)
    with pytest.raises(ObjectNotFound):
        any_store.head("absent")
    any_store.delete("k")
    with pytest.raises(PreconditionFailed):
        any_store.put_if_version("k", b"four", v3)  # deleted: no version matches


def test_every_write_changes_the_version(any_store: ObjectStore) -> None:
    contents = [b"one", b"two", b"three", b"", b"four", b"one!"]
    versions = [any_store.put("k", data) for data in contents]
    assert len(set(versions)) == len(versions)
    # Every way of reading the version agrees with what the write returned.
    assert any_store.head("k") == ObjectInfo("k", 4, versions[-1])
    assert any_store.get_versioned("k")[1] == versions[-1]
    assert any_store.list("k") == [ObjectInfo("k", 4, versions[-1])]


def test_rewriting_the_same_bytes_changes_the_version(any_store: ObjectStore) -> None:
    if isinstance(any_store, S3Store):
        pytest.skip("an S3 version is the ETag, the MD5 of the content (see s3.py)")
    versions = [any_store.put("k", b"same bytes") for _ in range(20)]
    assert len(set(versions)) == 20


def test_delete_is_idempotent(any_store: ObjectStore) -> None:
    any_store.put("d/k", b"x")
    any_store.delete("d/k")
    any_store.delete("d/k")
    any_store.delete("never/was")
    with pytest.raises(ObjectNotFound):
        any_store.get("d/k")
    assert any_store.list() == []


def test_delete_many_removes_every_key_given_missing_ones_included(
    any_store: ObjectStore,
) -> None:
    for key in ("m/1", "m/2", "m/3", "keep"):
        any_store.put(key, b"x")
    any_store.delete_many(["m/1", "m/3", "never/was", "m/2"])
    any_store.delete_many([])
    assert [info.key for info in any_store.list()] == ["keep"]


def test_list_by_prefix_is_sorted_and_exact(any_store: ObjectStore) -> None:
    versions = {key: any_store.put(key, key.encode() * 2) for key in ("b", "ab", "a/2", "a/1")}
    assert any_store.list("a/") == [
        ObjectInfo("a/1", 6, versions["a/1"]),
        ObjectInfo("a/2", 6, versions["a/2"]),
    ]
    assert [i.key for i in any_store.list()] == ["a/1", "a/2", "ab", "b"]
    assert [i.key for i in any_store.list("a")] == ["a/1", "a/2", "ab"]
    assert [i.key for i in any_store.list("a/1")] == ["a/1"]
    assert any_store.list("a/3") == []
    assert any_store.list("c") == []
    assert any_store.list("a/1/") == []


def test_head(any_store: ObjectStore) -> None:
    version = any_store.put("dir/k", b"12345")
    assert any_store.head("dir/k") == ObjectInfo("dir/k", 5, version)


def test_concurrent_put_if_absent_has_one_winner(any_store: ObjectStore) -> None:
    winners: list[int] = []

    def attempt(n: int) -> None:
        try:
            any_store.put_if_absent("contended", b"%d" % n)
            winners.append(n)
        except PreconditionFailed:
            pass

    race(8, attempt)
    assert len(winners) == 1
    assert any_store.get("contended") == b"%d" % winners[0]


def test_concurrent_put_if_version_has_one_winner(any_store: ObjectStore) -> None:
    base = any_store.put("contended", b"base")
    winners: list[int] = []

    def attempt(n: int) -> None:
        try:
            any_store.put_if_version("contended", b"%d" % n, base)
            winners.append(n)
        except PreconditionFailed:
            pass

    race(8, attempt)
    assert len(winners) == 1
    assert any_store.get("contended") == b"%d" % winners[0]


# -- the contract as a state machine: random operations against a dict -------------

# (operation, key, data, which version a put_if_version offers: 0 the current, else an old one)
Op = tuple[str, str, bytes, int]
operations = st.lists(
    st.tuples(
        st.sampled_from(["put", "put_if_absent", "put_if_version", "delete", "get"]),
        st.sampled_from(["x", "y", "d/z"]),
        st.binary(max_size=48),
        st.integers(0, 4),
    ),
    max_size=30,
)


def check_against_a_dict(store: ObjectStore, ops: list[Op], *, unique_versions: bool) -> None:
    model: dict[str, tuple[bytes, str]] = {}
    seen: dict[str, list[str]] = {}  # every version each key has had, oldest first

    def wrote(key: str, data: bytes, version: str) -> None:
        if unique_versions:
            assert version not in seen.get(key, [])
        model[key] = (data, version)
        seen.setdefault(key, []).append(version)

    for name, key, data, which in ops:
        if name == "put":
            wrote(key, data, store.put(key, data))
        elif name == "put_if_absent":
            if key in model:
                with pytest.raises(PreconditionFailed):
                    store.put_if_absent(key, data)
            else:
                wrote(key, data, store.put_if_absent(key, data))
        elif name == "put_if_version":
            history = seen.get(key, ["never-a-version"])
            offered = (
                model[key][1] if key in model and which == 0 else history[which % len(history)]
            )
            # By token, not by age: on S3 an old version equals the current one
            # when the same bytes were written again.
            if key in model and offered == model[key][1]:
                wrote(key, data, store.put_if_version(key, data, offered))
            else:
                with pytest.raises(PreconditionFailed):
                    store.put_if_version(key, data, offered)
        elif name == "delete":
            store.delete(key)
            model.pop(key, None)
        elif key in model:
            assert store.get_versioned(key) == model[key]
            assert store.head(key) == ObjectInfo(key, len(model[key][0]), model[key][1])
        else:
            with pytest.raises(ObjectNotFound):
                store.get(key)
    assert store.list() == [ObjectInfo(k, len(d), v) for k, (d, v) in sorted(model.items())]
    assert {key: store.get(key) for key in model} == {k: d for k, (d, _) in model.items()}


@given(operations)
def test_memory_store_matches_a_dict(ops: list[Op]) -> None:
    check_against_a_dict(MemoryStore(), ops, unique_versions=True)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(operations)
def test_local_store_matches_a_dict(tmp_path: Path, ops: list[Op]) -> None:
    check_against_a_dict(LocalStore(tmp_path / uuid.uuid4().hex), ops, unique_versions=True)


# Every example is a few dozen HTTP requests: a smaller run than the others.
@settings(
    max_examples=20,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations)
def test_s3_store_matches_a_dict(s3_endpoint: S3Endpoint, ops: list[Op]) -> None:
    store = s3_endpoint.store(f"model-{uuid.uuid4().hex}")
    try:
        check_against_a_dict(store, ops, unique_versions=False)
    finally:
        store.close()


# -- S3 specifics ---------------------------------------------------------------


def unfinished_uploads(endpoint: S3Endpoint, store: S3Store) -> list[Any]:
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint.url,
        region_name=endpoint.region,
        aws_access_key_id=endpoint.access_key_id,
        aws_secret_access_key=endpoint.secret_access_key,
    )
    try:
        found = client.list_multipart_uploads(Bucket=endpoint.bucket, Prefix=store.prefix)
        return list(found.get("Uploads", []))
    finally:
        client.close()


def test_multipart_uploads_round_trip_and_keep_their_conditions(s3_endpoint: S3Endpoint) -> None:
    # Parts must be at least 5 MiB but the last: 11 MiB goes up as 5 + 5 + 1.
    store = s3_endpoint.store(
        f"mp-{uuid.uuid4().hex}", multipart_threshold=5 * MiB + 1, part_size=5 * MiB
    )
    try:
        data = os.urandom(11 * MiB)
        version = store.put_if_absent("big", data)
        assert version.strip('"').endswith("-3")  # a multipart ETag counts its parts
        assert store.get_versioned("big") == (data, version)
        assert store.get("big", 5 * MiB - 3, 5 * MiB + 3) == data[5 * MiB - 3 : 5 * MiB + 3]
        with pytest.raises(PreconditionFailed):
            store.put_if_absent("big", data[::-1])
        with pytest.raises(PreconditionFailed):
            store.put_if_version("big", data[::-1], '"0123456789abcdef0123456789abcdef-3"')
        with pytest.raises(PreconditionFailed):
            store.put_if_version("absent", data[::-1], version)
        assert store.get_versioned("big") == (data, version)
        replaced = store.put_if_version("big", memoryview(data)[::-1], version)
        assert replaced != version
        assert store.get("big") == data[::-1]
        store.put("plain", bytearray(data[: 5 * MiB + 2]))  # 5 MiB + a 2-byte last part
        assert store.get("plain") == data[: 5 * MiB + 2]
        # An object given in parts goes up in its own parts (multipart) above
        # the threshold, and from its parts in one PUT below it.
        pieces = [data[:3], memoryview(data)[3 : 6 * MiB], bytearray(data[6 * MiB : 6 * MiB + 5])]
        store.put("pieces", pieces)
        assert store.get("pieces") == data[: 6 * MiB + 5]
        store.put("small-pieces", pieces[:1] + pieces[2:])
        assert store.get("small-pieces") == data[:3] + data[6 * MiB : 6 * MiB + 5]
        assert unfinished_uploads(s3_endpoint, store) == []  # the losers were aborted
        with pytest.raises(ObjectNotFound):
            store.head("absent")
    finally:
        store.close()


def test_single_uploads_carry_the_crc32_botocore_would_compute(s3_store: S3Store) -> None:
    from botocore.httpchecksum import Crc32Checksum

    for size in (0, 1, 1000, MiB + 7):
        data = os.urandom(size)
        s3_store.put(f"crc-{size}", data)
        stored = s3_store._client.head_object(
            Bucket=s3_store.bucket, Key=s3_store._key(f"crc-{size}"), ChecksumMode="ENABLED"
        )
        computed = Crc32Checksum()
        computed.update(data)
        assert stored["ChecksumCRC32"] == computed.b64digest()


def test_uploads_are_sent_unsigned_with_their_crc32_over_http(s3_store: S3Store) -> None:
    # Signing the payload over http would SHA-256 every byte on the upload's
    # thread; the CRC32 header checks the body on the way in instead.
    sent: list[dict[str, str]] = []

    def capture(request: Any, **_: Any) -> None:
        sent.append({k.lower(): _text(v) for k, v in request.headers.items()})

    s3_store._client.meta.events.register("before-send.s3.PutObject", capture)
    s3_store.put("unsigned", [b"a" * 1000, b"b" * 24])
    s3_store.put_if_absent("unsigned-if-absent", b"c" * 100)
    assert len(sent) == 2
    for headers in sent:
        assert headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
        assert "x-amz-checksum-crc32" in headers
        assert "Signature=" in headers["authorization"]  # the request itself is signed
    assert s3_store.get("unsigned") == b"a" * 1000 + b"b" * 24


def test_uploads_without_checksums_keep_their_payload_signed(
    s3_endpoint: S3Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    store = s3_endpoint.store(f"signed-{uuid.uuid4().hex}")
    sent: list[str] = []
    store._client.meta.events.register(
        "before-send.s3.PutObject",
        lambda request, **_: sent.append(_text(request.headers["X-Amz-Content-SHA256"])),
    )
    try:
        store.put("signed", b"x" * 100)
    finally:
        store.close()
    assert sent and sent[0] not in ("UNSIGNED-PAYLOAD", "")


class _Raw:
    """What botocore reads an HTTP response's body from."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body


def test_an_object_sent_from_its_parts_is_sent_whole_again_on_a_retry(s3_store: S3Store) -> None:
    from botocore.awsrequest import AWSResponse

    parts = [os.urandom(n) for n in (100_000, 1, 0, 70_000, 3)]
    failed: list[int] = []

    def fail_first_attempt_halfway(request: Any, **_: Any) -> AWSResponse | None:
        if failed:
            return None
        failed.append(len(request.body.read(85_000)))  # part of it went out; then a 500
        error = b"<Error><Code>InternalError</Code><Message>injected</Message></Error>"
        return AWSResponse(request.url, 500, {}, _Raw(error))

    s3_store._client.meta.events.register("before-send.s3.PutObject", fail_first_attempt_halfway)
    s3_store.put("retried", parts)
    assert failed == [85_000]
    assert s3_store.get("retried") == b"".join(parts)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def test_s3_delete_many_sends_one_request_per_thousand_keys(
    s3_store: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from s3stream.store import s3

    monkeypatch.setattr(s3, "_MAX_KEYS_PER_DELETE", 2)  # S3's thousand, in miniature
    keys = [f"many/{i}" for i in range(5)]
    for key in keys:
        s3_store.put(key, b"x")
    sent: list[str] = []
    s3_store._client.meta.events.register(
        "before-send.s3", lambda request, **_: sent.append(request.method)
    )
    s3_store.delete_many(keys)
    assert sent == ["POST", "POST", "POST"]  # DeleteObjects, never a DELETE per key
    assert s3_store.list("many/") == []


def test_s3_delete_many_deletes_one_by_one_where_delete_objects_is_not_implemented(
    s3_store: S3Store,
) -> None:
    from botocore.awsrequest import AWSResponse

    keys = [f"one-by-one/{i}" for i in range(3)]
    for key in keys:
        s3_store.put(key, b"x")
    sent: list[str] = []

    def not_implemented(request: Any, **_: Any) -> AWSResponse | None:
        sent.append(request.method)
        if request.method != "POST":
            return None
        error = b"<Error><Code>NotImplemented</Code><Message>no multi-delete</Message></Error>"
        return AWSResponse(request.url, 501, {}, _Raw(error))

    s3_store._client.meta.events.register("before-send.s3", not_implemented)
    s3_store.delete_many(keys)
    s3_store.delete_many([])
    assert s3_store.list("one-by-one/") == []
    # Asked once; from then on, a DELETE per key.
    s3_store.put("one-by-one/again", b"x")
    s3_store.delete_many(["one-by-one/again"])
    assert [m for m in sent if m in ("POST", "DELETE")] == ["POST", *["DELETE"] * 4]
    assert s3_store.list("one-by-one/") == []


def test_small_parts_are_refused(s3_endpoint: S3Endpoint) -> None:
    with pytest.raises(ValueError, match="5 MiB"):
        s3_endpoint.store("x", part_size=MiB)


def test_unreachable_endpoint_is_a_transient_error() -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = S3Store(
        "bucket",
        endpoint_url=f"http://127.0.0.1:{port}",
        region="us-east-1",
        access_key_id="a",
        secret_access_key="b",
        max_attempts=2,
        connect_timeout=0.5,
        read_timeout=0.5,
    )
    try:
        for operation in (lambda: store.put("k", b"x"), lambda: store.get("k", 1, 2)):
            with pytest.raises(ObjectStoreError) as caught:
                operation()
            assert caught.value.transient
            assert type(caught.value) is ObjectStoreError
    finally:
        store.close()


def test_missing_bucket_is_a_permanent_error(s3_endpoint: S3Endpoint) -> None:
    store = S3Store(
        f"no-such-bucket-{uuid.uuid4().hex[:8]}",
        endpoint_url=s3_endpoint.url,
        region=s3_endpoint.region,
        access_key_id=s3_endpoint.access_key_id,
        secret_access_key=s3_endpoint.secret_access_key,
    )
    try:
        with pytest.raises(ObjectStoreError) as caught:
            store.put("k", b"x")
        assert not caught.value.transient
        assert "NoSuchBucket" in str(caught.value)
    finally:
        store.close()


def test_create_bucket_if_missing_is_idempotent(s3_endpoint: S3Endpoint) -> None:
    if os.environ.get("TIDELOG_TEST_S3_ENDPOINT"):
        pytest.skip("creates a bucket; only on the private moto server")
    store = S3Store(
        f"fresh-{uuid.uuid4().hex[:8]}",
        endpoint_url=s3_endpoint.url,
        region=s3_endpoint.region,
        access_key_id=s3_endpoint.access_key_id,
        secret_access_key=s3_endpoint.secret_access_key,
    )
    try:
        store.create_bucket_if_missing()
        store.create_bucket_if_missing()
        store.put("k", b"v")
        assert store.get("k") == b"v"
    finally:
        store.close()


# What S3 can answer, and what the store must make of it. Stubbed, as moto
# does not produce throttling or conflicts on demand.
@pytest.mark.parametrize(
    ("code", "status", "expected", "transient"),
    [
        ("PreconditionFailed", 412, PreconditionFailed, False),
        ("NoSuchKey", 404, PreconditionFailed, False),  # If-Match on a missing key
        ("ConditionalRequestConflict", 409, ObjectStoreError, True),
        ("SlowDown", 503, ObjectStoreError, True),
        ("InternalError", 500, ObjectStoreError, True),
        ("AccessDenied", 403, ObjectStoreError, False),
        ("NoSuchBucket", 404, ObjectStoreError, False),
    ],
)
def test_s3_answers_to_a_conditional_put_become_typed_errors(
    s3_store: S3Store, code: str, status: int, expected: type[Exception], transient: bool
) -> None:
    with Stubber(s3_store._client) as stub:
        stub.add_client_error("put_object", service_error_code=code, http_status_code=status)
        with pytest.raises(ObjectStoreError) as caught:
            s3_store.put_if_version("k", b"x", '"etag"')
    assert type(caught.value) is expected
    assert caught.value.transient is transient


def test_s3_answers_to_a_get_become_typed_errors(s3_store: S3Store) -> None:
    with Stubber(s3_store._client) as stub:
        stub.add_client_error("get_object", service_error_code="NoSuchKey", http_status_code=404)
        stub.add_client_error("get_object", service_error_code="AccessDenied", http_status_code=403)
        with pytest.raises(ObjectNotFound):
            s3_store.get("k")
        with pytest.raises(ObjectStoreError) as caught:
            s3_store.get("k")
    assert not caught.value.transient


class _BrokenBody:
    """A response body whose connection fails after the headers arrived."""

    def __init__(self, failure: Exception) -> None:
        self.failure = failure

    def read(self, amt: int | None = None) -> bytes:
        raise self.failure


@pytest.mark.parametrize(
    "failure",
    [
        urllib3.exceptions.SSLError("[SSL: SSLV3_ALERT_BAD_RECORD_MAC] bad record mac"),
        urllib3.exceptions.DecodeError("Received response with content-encoding: gzip"),
        botocore.exceptions.ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
        botocore.exceptions.ResponseStreamingError(error="Connection broken"),
    ],
    ids=["tls-failure", "decode-failure", "read-timeout", "connection-broken"],
)
def test_a_body_cut_short_by_the_connection_is_a_transient_store_error(
    s3_store: S3Store, monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    """Whatever the connection fails with while a GET's body is read, the
    caller gets the store's transient error (the read is asked again),
    never the HTTP library's own: a TLS record that fails its MAC reaches
    botocore's caller as urllib3's SSLError."""
    s3_store.put("k", b"x" * 100)
    answer = s3_store._client.get_object
    monkeypatch.setattr(
        s3_store._client,
        "get_object",
        lambda **request: {**answer(**request), "Body": _BrokenBody(failure)},
    )
    for read in (lambda: s3_store.get("k", 0, 10), lambda: s3_store.get_versioned("k")):
        with pytest.raises(ObjectStoreError) as caught:
            read()
        assert caught.value.transient and not caught.value.misconfigured


def test_prefixes_are_normalised_and_keep_stores_apart(s3_endpoint: S3Endpoint) -> None:
    name = uuid.uuid4().hex
    stores = [s3_endpoint.store(prefix) for prefix in (f"{name}/p", f"{name}/p/", f"/{name}/p/")]
    other = s3_endpoint.store(f"{name}/q")
    try:
        stores[0].put("k", b"1")
        other.put("k", b"2")
        assert [store.get("k") for store in stores] == [b"1", b"1", b"1"]
        assert [store.url for store in stores] == [f"s3://{s3_endpoint.bucket}/{name}/p/"] * 3
        assert [i.key for i in stores[2].list()] == ["k"]
        assert [i.key for i in s3_endpoint.store(name).list()] == ["p/k", "q/k"]
    finally:
        for store in [*stores, other]:
            store.close()


# -- URLs -------------------------------------------------------------------------


def test_open_store_urls(tmp_path: Path, s3_endpoint: S3Endpoint) -> None:
    memory = open_store("memory://")
    assert isinstance(memory, MemoryStore)
    assert memory.url == "memory://"

    local = open_store(f"file://{tmp_path}/objects")
    assert isinstance(local, LocalStore)
    assert (local.root, local.url) == (f"{tmp_path}/objects", f"file://{tmp_path}/objects")
    assert os.path.isdir(local.root)
    assert isinstance(open_store(f"file://localhost{tmp_path}/other"), LocalStore)
    plain = open_store(str(tmp_path / "plain" / "deeper"))
    assert isinstance(plain, LocalStore)
    assert os.path.isdir(tmp_path / "plain" / "deeper")

    prefix = f"via-url/{uuid.uuid4().hex}"
    s3 = open_store(s3_endpoint.store_url(prefix) + "&multipart_threshold=6000000&max_attempts=3")
    assert isinstance(s3, S3Store)
    assert (s3.bucket, s3.prefix, s3.multipart_threshold) == (
        s3_endpoint.bucket,
        f"{prefix}/",
        6000000,
    )
    try:
        s3.put("k", b"v")
        assert s3_endpoint.store(prefix).get("k") == b"v"
    finally:
        s3.close()
    bare = open_store("s3://bucket")
    assert isinstance(bare, S3Store)
    assert (bare.prefix, bare.url) == ("", "s3://bucket/")
    bare.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://", "no bucket"),
        ("s3:///prefix", "no bucket"),
        ("s3://b/p?colour=red&size=1", "unknown s3 URL parameters colour, size"),
        ("s3://b/p?part_size=big", "part_size"),
        ("s3://b/p?part_size=", "part_size"),
        ("s3://b/p?region=a&region=b", "region given 2 times"),
        ("s3://b/p?part_size=1024", "5 MiB"),
        ("ftp://host/path", "unsupported"),
        ("file://host/path", "not a host"),
        ("file://", "no directory"),
        ("memory://somewhere", "memory://"),
    ],
)
def test_open_store_rejects_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_store(url)


def test_open_store_errors_do_not_repeat_secrets() -> None:
    for url in (
        "s3://b/p?secret_access_key=hunter2&colour=red",
        "s3://b/p?secret_access_key=hunter2&secret_access_key=hunter2",
        "s3://b/p?secret_access_key=",
    ):
        with pytest.raises(ValueError) as caught:
            open_store(url)
        assert "hunter2" not in str(caught.value)


# -- the local directory ------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["", "/abs", "a/../b", "..", "../escape", "a//b", "a/", ".hidden", "a/.tmp-x", "./a"]
)
def test_local_store_rejects_keys_that_are_not_plain_paths(
    local_store: LocalStore, key: str
) -> None:
    for operation in (
        lambda: local_store.put(key, b"x"),
        lambda: local_store.put_if_absent(key, b"x"),
        lambda: local_store.get(key),
        lambda: local_store.head(key),
        lambda: local_store.delete(key),
    ):
        with pytest.raises(ValueError):
            operation()


def test_local_store_lists_nothing_outside_its_root(tmp_path: Path) -> None:
    (tmp_path / "outside").write_bytes(b"secret")
    store = LocalStore(tmp_path / "objects")
    store.put("inside", b"x")
    assert store.list("../") == []
    assert store.list("..") == []
    assert [i.key for i in store.list()] == ["inside"]


def test_local_store_never_lists_temp_files_or_its_lock(local_store: LocalStore) -> None:
    local_store.put_if_absent("k", b"v")
    local_store.put("d/k", b"v")
    root = Path(local_store.root)
    assert (root / ".lock").exists()
    (root / ".tmp-leftover").write_bytes(b"partial")
    (root / "d" / ".tmp-leftover").write_bytes(b"partial")
    assert [i.key for i in local_store.list()] == ["d/k", "k"]
    assert [i.key for i in local_store.list("d/")] == ["d/k"]


def test_local_store_failed_write_keeps_the_old_object_and_no_temp_file(
    local_store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = local_store.put("d/k", b"old")

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "injected I/O error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(ObjectStoreError) as caught:
        local_store.put("d/k", b"new")
    assert caught.value.transient
    monkeypatch.undo()
    assert local_store.get_versioned("d/k") == (b"old", version)
    assert os.listdir(Path(local_store.root, "d")) == ["k"]


def test_local_store_objects_are_not_directories(local_store: LocalStore) -> None:
    local_store.put("a/b", b"x")
    with pytest.raises(ObjectNotFound):
        local_store.head("a")
    with pytest.raises(ObjectNotFound):
        local_store.get("a")
    with pytest.raises(ObjectNotFound):
        local_store.get("a/b/c")
    with pytest.raises(ObjectStoreError) as caught:
        local_store.put("a/b/c", b"y")  # "a/b" is a file: no room for keys under it
    assert not caught.value.transient
    local_store.delete("a")
    local_store.delete("a/b/c")
    assert [i.key for i in local_store.list()] == ["a/b"]


def _synced_directories(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records the path of every directory the local store fsyncs."""
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if os.path.isdir(path):
            synced.append(path)
        real(fd)

    monkeypatch.setattr(local_module.os, "fsync", fsync)
    return synced


def test_a_put_makes_a_directory_another_writer_made_durable(
    local_store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A directory made by another writer of the store (a thread, or a
    process sharing the directory) that has not synced its parent yet: a
    put into it that returned could lose its object with the directory's
    entry, unless it syncs the parent itself. Once per directory: later
    puts do not."""
    root = Path(local_store.root)
    (root / "objects" / "0000000002").mkdir(parents=True)  # its parents' entries not synced
    synced = _synced_directories(monkeypatch)
    local_store.put("objects/0000000002/1.sso", b"first")
    assert str(root) in synced and str(root / "objects") in synced
    synced.clear()
    local_store.put("objects/0000000002/2.sso", b"second")
    assert synced == [str(root / "objects" / "0000000002")]  # the rename's only


def _race_in_a_process(
    root: str, keys: list[str], n: int, barrier: Any, wins: Any
) -> None:  # pragma: no cover - runs in the child process
    store = LocalStore(root)
    barrier.wait()
    for key in keys:
        try:
            store.put_if_absent(key, b"%d" % n)
            wins.put((key, n))
        except PreconditionFailed:
            pass
    wins.put(None)


def test_local_store_conditional_puts_hold_across_processes(tmp_path: Path) -> None:
    processes, keys = 2, [f"contended/{i}" for i in range(40)]
    context = multiprocessing.get_context("spawn")
    barrier, wins = context.Barrier(processes), context.Queue()
    children = [
        context.Process(target=_race_in_a_process, args=(str(tmp_path), keys, n, barrier, wins))
        for n in range(processes)
    ]
    for child in children:
        child.start()
    winners: dict[str, list[int]] = {}
    finished = 0
    while finished < processes:
        won = wins.get(timeout=60)
        if won is None:
            finished += 1
        else:
            winners.setdefault(won[0], []).append(won[1])
    for child in children:
        child.join(60)
        assert child.exitcode == 0
    store = LocalStore(tmp_path)
    assert sorted(winners) == sorted(keys)
    for key, won in winners.items():
        assert len(won) == 1, key
        assert store.get(key) == b"%d" % won[0]


def _count_in_a_process(root: str, increments: int, barrier: Any) -> None:  # pragma: no cover
    store = LocalStore(root)
    barrier.wait()
    done = 0
    while done < increments:
        data, version = store.get_versioned("counter")
        try:
            store.put_if_version("counter", b"%d" % (int(data) + 1), version)
            done += 1
        except PreconditionFailed:
            pass  # the other process got there first: read again


def test_local_store_compare_and_swap_loses_no_updates_across_processes(tmp_path: Path) -> None:
    processes, increments = 2, 100
    LocalStore(tmp_path).put("counter", b"0")
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    children = [
        context.Process(target=_count_in_a_process, args=(str(tmp_path), increments, barrier))
        for _ in range(processes)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
        assert child.exitcode == 0
    assert LocalStore(tmp_path).get("counter") == b"%d" % (processes * increments)


def test_an_object_put_in_parts_is_their_concatenation(any_store: ObjectStore) -> None:
    """Objects are put as parts (stored batches by reference); every store
    keeps them as one object, in order, whatever their sizes and number."""
    parts = [os.urandom(n) for n in (0, 1, 5 * 1024 * 1024, 7, 3000)] + [b"x"] * 2500
    any_store.put("parts", [memoryview(p) if i % 2 else p for i, p in enumerate(parts)])
    assert any_store.get("parts") == b"".join(parts)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=3000), st.integers(1, 9 * 1024 * 1024))
def test_local_store_writes_any_parts_in_order(
    tmp_path_factory: pytest.TempPathFactory, parts: list[bytes], big: int
) -> None:
    store = LocalStore(tmp_path_factory.mktemp("parts"))
    large = os.urandom(big)
    parts = [*parts[: len(parts) // 2], large, *parts[len(parts) // 2 :]]
    try:
        store.put("object", parts)
        assert store.get("object") == b"".join(parts)
    finally:
        shutil.rmtree(store.root, ignore_errors=True)  # up to 9 MiB per example
