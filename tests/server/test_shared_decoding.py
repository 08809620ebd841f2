"""Fetch bodies alike byte for byte, from many consumers, are decoded once;
any other body is decoded as it always was, and a malformed one is refused
every time it comes."""

from __future__ import annotations

from typing import Any

import pytest

from engine.protocol.errors import MalformedRequest
from engine.protocol.frames import RequestHeader, parse_header
from engine.server import shared_decoding
from engine.server.shared_decoding import DecodedBodies
from tests.server.wire import encode_request, fetch_from_start


def _frame(request: Any, correlation_id: int, client_id: str) -> tuple[RequestHeader, memoryview]:
    whole = encode_request(request, correlation_id, client_id)[4:]  # no size prefix
    return parse_header(whole), memoryview(bytearray(whole))


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every decode_request call the cache makes (its API version)."""
    calls: list[int] = []
    decode = shared_decoding.decode_request

    def counted(header: RequestHeader, frame: memoryview) -> Any:
        calls.append(header.api_version)
        return decode(header, frame)

    monkeypatch.setattr(shared_decoding, "decode_request", counted)
    return calls


@pytest.mark.parametrize("version", [11, 12, 15])
def test_the_same_body_from_many_clients_is_decoded_once(decodes: list[int], version: int) -> None:
    bodies = DecodedBodies()
    request = fetch_from_start("t", version)
    answers = [
        bodies.decode(*_frame(request, correlation_id, f"consumer-{correlation_id}"))
        for correlation_id in range(8)
    ]
    assert decodes == [version]
    assert all(answer is answers[0] for answer in answers)
    assert answers[0] == request  # what kio's reader makes of it
    assert bodies.hits == 7


def test_a_different_body_is_decoded_on_its_own(decodes: list[int]) -> None:
    bodies = DecodedBodies()
    first = fetch_from_start("t")
    other = fetch_from_start("u")
    assert bodies.decode(*_frame(first, 1, "a")) == first
    assert bodies.decode(*_frame(other, 2, "a")) == other
    newer = fetch_from_start("t", 12)
    assert bodies.decode(*_frame(newer, 3, "a")) == newer
    assert decodes == [11, 11, 12]  # another version of the same request too


def test_a_malformed_body_is_refused_each_time_and_never_kept(decodes: list[int]) -> None:
    bodies = DecodedBodies()
    header, frame = _frame(fetch_from_start("t"), 1, "a")
    cut = frame[: len(frame) - 3]
    for _ in range(2):
        with pytest.raises(MalformedRequest):
            bodies.decode(header, cut)
    assert len(bodies) == 0 and len(decodes) == 2


def test_long_bodies_are_not_kept_and_the_entries_are_bounded(decodes: list[int]) -> None:
    bodies = DecodedBodies(max_entries=2, max_body=100)
    long_request = fetch_from_start("a-topic-name-long-enough-for-a-body-of-over-a-hundred-bytes")
    for _ in range(2):
        bodies.decode(*_frame(long_request, 1, "a"))
    assert len(bodies) == 0 and len(decodes) == 2
    for name in ("a", "b", "c", "a"):
        bodies.decode(*_frame(fetch_from_start(name), 1, "a"))
    assert len(bodies) == 2
    assert len(decodes) == 6  # "a" was dropped for "c", and decoded again
