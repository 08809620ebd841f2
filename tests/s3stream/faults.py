"""A wrapper store that fails on command: the faults a real store cannot be
told to produce (an outage, a timeout, a lost response)."""

from __future__ import annotations

import threading

from native.buffers import BytesLike
from s3stream.store import LocalStore, ObjectInfo, ObjectStore, ObjectStoreError
from s3stream.store.base import ConditionalWrites

STALL_LIMIT_S = 60.0
"""The longest a stalled GET waits for release(): a test that forgets to
release never hangs the run."""


class InjectedFault(ObjectStoreError):
    def __init__(self, operation: str, key: str) -> None:
        super().__init__(operation, key, "injected fault")


class FaultyStore(ObjectStore):
    """Delegates to ``inner``; operations named in ``failing`` raise a
    transient error until healed. ``lose_put_responses`` makes puts succeed
    in the inner store but report failure, as a timed-out request would.
    ``retry_lost_puts`` (a count) makes that many conditional puts under
    ``retry_lost_prefix`` succeed, lose their answer and be sent again inside
    the same call, as botocore's retries do: the second attempt meets the
    first one's object."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.url = f"faulty+{inner.url}"
        self.failing: set[str] = set()
        self.failing_prefix = ""
        self.lose_put_responses = False
        self.retry_lost_puts = 0
        self.retry_lost_prefix = ""
        self.calls: dict[str, int] = {}
        self.failures = 0
        self.transient = True
        """Whether the injected faults are transient (a retry may succeed) or
        permanent (as denied access is)."""
        self.misconfigured = False
        """Whether the injected faults point at the store's address or
        credentials (as denied access does)."""
        self.stalled_prefix: str | None = None
        """GETs of keys starting with it wait until release()."""
        self.stalls = 0
        """GETs that were stalled."""
        self.stalled_now = 0
        """GETs waiting for release() now."""
        self._released = threading.Event()
        self._lock = threading.Lock()

    @property
    def conditional_writes(self) -> ConditionalWrites:  # type: ignore[override]
        return self.inner.conditional_writes

    def fail(self, *operations: str, prefix: str = "") -> None:
        """Fails ``operations`` (all of them if none is named) on keys that
        start with ``prefix``."""
        self.failing = set(operations) or {"put", "get", "delete", "list", "head"}
        self.failing_prefix = prefix

    def stall_gets(self, prefix: str) -> None:
        """GETs of keys under ``prefix`` wait until release(), as a store
        whose responses stop coming does (at most STALL_LIMIT_S)."""
        self._released.clear()
        self.stalled_prefix = prefix

    def release(self) -> None:
        self.stalled_prefix = None
        self._released.set()

    def _stall(self, key: str) -> None:
        prefix = self.stalled_prefix
        if prefix is None or not key.startswith(prefix):
            return
        with self._lock:
            self.stalls += 1
            self.stalled_now += 1
        try:
            self._released.wait(STALL_LIMIT_S)
        finally:
            with self._lock:
                self.stalled_now -= 1

    def heal(self) -> None:
        self.release()
        self.failing = set()
        self.transient = True
        self.misconfigured = False
        self.failing_prefix = ""
        self.lose_put_responses = False

    def _check(self, operation: str, key: str) -> None:
        with self._lock:
            self.calls[operation] = self.calls.get(operation, 0) + 1
            if operation in self.failing and key.startswith(self.failing_prefix):
                self.failures += 1
                fault = InjectedFault(operation, key)
                fault.transient = self.transient
                fault.misconfigured = self.misconfigured
                raise fault

    def _after_put(self, key: str) -> None:
        if self.lose_put_responses:
            with self._lock:
                self.failures += 1
            raise InjectedFault("put", key)

    def put(self, key: str, data: BytesLike) -> str:
        self._check("put", key)
        version = self.inner.put(key, data)
        self._after_put(key)
        return version

    def put_if_absent(self, key: str, data: BytesLike) -> str:
        self._check("put", key)
        version = self.inner.put_if_absent(key, data)
        if self._retry_lost(key):
            version = self.inner.put_if_absent(key, data)  # 412: the first attempt's object
        self._after_put(key)
        return version

    def put_if_version(self, key: str, data: BytesLike, version: str) -> str:
        self._check("put", key)
        new_version = self.inner.put_if_version(key, data, version)
        if self._retry_lost(key):
            new_version = self.inner.put_if_version(key, data, version)
        self._after_put(key)
        return new_version

    def _retry_lost(self, key: str) -> bool:
        with self._lock:
            if self.retry_lost_puts <= 0 or not key.startswith(self.retry_lost_prefix):
                return False
            self.retry_lost_puts -= 1
            self.failures += 1
            return True

    def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        self._check("get", key)
        self._stall(key)
        return self.inner.get(key, start, end)

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        self._check("get", key)
        self._stall(key)
        return self.inner.get_versioned(key)

    def head(self, key: str) -> ObjectInfo:
        self._check("head", key)
        return self.inner.head(key)

    def delete(self, key: str) -> None:
        self._check("delete", key)
        self.inner.delete(key)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        self._check("list", prefix)
        return self.inner.list(prefix)


class IgnoresConditions(ObjectStore):
    """A store that accepts conditional puts and does not enforce them, as
    some S3-compatible servers do (s3rver): every put simply replaces.
    ``conditional_writes`` says what its operator claimed about it."""

    def __init__(
        self,
        inner: ObjectStore,
        conditional_writes: ConditionalWrites = ConditionalWrites.ENFORCED,
    ) -> None:
        self.inner = inner
        self.url = f"ignores-conditions+{inner.url}"
        self.conditional_writes = conditional_writes

    def put(self, key: str, data: BytesLike) -> str:
        return self.inner.put(key, data)

    def put_if_absent(self, key: str, data: BytesLike) -> str:
        return self.inner.put(key, data)

    def put_if_version(self, key: str, data: BytesLike, version: str) -> str:
        return self.inner.put(key, data)

    def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        return self.inner.get(key, start, end)

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        return self.inner.get_versioned(key)

    def head(self, key: str) -> ObjectInfo:
        return self.inner.head(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        return self.inner.list(prefix)


class FailsOneHead(LocalStore):
    """A local store that fails the next HEAD of ``unreachable`` (once, a
    transient error): set to the manifest's next version, it is a fence
    check's question, whether another writer created that version."""

    unreachable: str | None = None

    def head(self, key: str) -> ObjectInfo:
        if key == self.unreachable:
            self.unreachable = None
            raise InjectedFault("head", key)
        return super().head(key)


class LoseThenFail(FaultyStore):
    """Once ``armed``, a manifest delta's put lands but its answer is lost,
    then the store goes down (until healed): the commit's outcome is left
    unknown for the next one to settle."""

    armed = False

    def _after_put(self, key: str) -> None:
        if self.armed and key.startswith("manifest/log/") and not self.failing:
            self.fail("put")
            raise InjectedFault("put", key)
