"""The session's moto server decides a conditional write atomically, as S3 does
(tests/s3stream/atomic_moto.py): a write stopped between its check and its
store holds back a second writer offering the same ETag, which then gets 412.

Both writers are stopped on cue (fault injection into moto's backend), so the
interleaving that gave two winners on a loaded machine happens every run.
"""

from __future__ import annotations

import os
import threading
from types import TracebackType
from typing import Any

import pytest
from moto.s3.models import S3Backend

from s3stream.store import PreconditionFailed, S3Store
from tests.s3stream import atomic_moto

CUE_TIMEOUT = 30.0
"""Only a stuck run waits this long: each cue comes within the test's own requests."""


class WatchedLock:
    """atomic_moto's lock, telling when a request waits on it."""

    def __init__(self, inner: Any, waited: threading.Event) -> None:
        self._inner = inner
        self._waited = waited

    def __enter__(self) -> None:
        if self._inner.locked():
            self._waited.set()
        self._inner.acquire()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._inner.release()


def test_a_conditional_write_between_its_check_and_its_store_holds_back_a_second(
    s3_store: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.environ.get("TIDELOG_TEST_S3_ENDPOINT"):
        pytest.skip("stops moto's backend on cue; only on the private moto server")
    base = s3_store.put("contended", b"base")
    first_stopped = threading.Event()
    second_past_check_or_waiting = threading.Event()
    monkeypatch.setattr(
        atomic_moto,
        "_object_writes",
        WatchedLock(atomic_moto._object_writes, second_past_check_or_waiting),
    )
    store_object = S3Backend.put_object

    def stopping_store(backend: S3Backend, bucket: str, key: str, value: bytes, **kw: Any) -> Any:
        # Called after moto checked If-Match: the first writer stays here until
        # the second has checked too (no lock) or waits for the lock.
        if key.endswith("/contended") and value == b"first":
            first_stopped.set()
            assert second_past_check_or_waiting.wait(CUE_TIMEOUT)
        elif key.endswith("/contended") and value == b"second":
            second_past_check_or_waiting.set()
        return store_object(backend, bucket, key, value, **kw)

    monkeypatch.setattr(S3Backend, "put_object", stopping_store)
    outcomes: dict[str, str | BaseException] = {}

    def write(data: bytes) -> None:
        try:
            outcomes[data.decode()] = s3_store.put_if_version("contended", data, base)
        except BaseException as error:
            outcomes[data.decode()] = error

    first = threading.Thread(target=write, args=(b"first",))
    first.start()
    assert first_stopped.wait(CUE_TIMEOUT)
    second = threading.Thread(target=write, args=(b"second",))
    second.start()
    first.join()
    second.join()

    assert isinstance(outcomes["first"], str), outcomes["first"]
    assert isinstance(outcomes["second"], PreconditionFailed), outcomes["second"]
    assert s3_store.get_versioned("contended") == (b"first", outcomes["first"])
