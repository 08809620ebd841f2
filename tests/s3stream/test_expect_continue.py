"""Small uploads go out with their headers, without waiting for 100 Continue (real moto)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.awsrequest import AWSConnection

from s3stream.store import S3Store
from s3stream.store.expect_continue import EXPECT_CONTINUE_BYTES
from tests.s3stream.conftest import S3Endpoint

THRESHOLD = 4096
"""A small threshold, so the test's bodies stay small on either side of it."""


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, str]]]:
    """The method and headers of every request handed to the HTTP connection."""
    requests: list[tuple[str, dict[str, str]]] = []
    request = AWSConnection.request

    def record(
        self: Any, method: str, url: str, body: Any = None, headers: Any = None, **kw: Any
    ) -> Any:
        requests.append((method, {k.lower(): _text(v) for k, v in (headers or {}).items()}))
        return request(self, method, url, body, headers, **kw)

    monkeypatch.setattr(AWSConnection, "request", record)
    return requests


@pytest.fixture
def store(s3_endpoint: S3Endpoint) -> Iterator[S3Store]:
    store = s3_endpoint.store(f"expect-{uuid.uuid4().hex}", expect_continue_bytes=THRESHOLD)
    yield store
    store.close()


def test_the_default_threshold_is_the_aws_sdks_two_megabytes() -> None:
    assert EXPECT_CONTINUE_BYTES == 2 * 1024 * 1024


def test_small_bodies_are_sent_without_waiting_for_100_continue(
    store: S3Store, sent: list[tuple[str, dict[str, str]]]
) -> None:
    store.put("object", [b"a" * 1000, b"b" * (THRESHOLD - 1001)])
    store.put_if_absent("manifest-version", b"c" * 100)
    store.put("bytes", b"d" * 10)
    puts = [headers for method, headers in sent if method == "PUT"]
    assert len(puts) == 3
    for headers in puts:
        assert "expect" not in headers
        assert "Signature=" in headers["authorization"]  # still signed, and accepted
    assert store.get("object") == b"a" * 1000 + b"b" * (THRESHOLD - 1001)
    assert store.get("manifest-version") == b"c" * 100
    assert store.get("bytes") == b"d" * 10


def test_bodies_from_the_threshold_up_still_ask_for_100_continue(
    store: S3Store, sent: list[tuple[str, dict[str, str]]]
) -> None:
    store.put("at", [b"x" * THRESHOLD])
    store.put_if_absent("above", b"y" * (THRESHOLD + 1))
    puts = [headers for method, headers in sent if method == "PUT"]
    assert [headers.get("expect") for headers in puts] == ["100-continue", "100-continue"]
    assert store.get("at") == b"x" * THRESHOLD
    assert store.get("above") == b"y" * (THRESHOLD + 1)


def test_requests_without_a_body_never_ask_for_100_continue(
    store: S3Store, sent: list[tuple[str, dict[str, str]]]
) -> None:
    store.put("present", b"z")
    sent.clear()
    store.head("present")
    store.delete("present")
    assert [method for method, _ in sent] == ["HEAD", "DELETE"]
    assert all("expect" not in headers for _, headers in sent)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
