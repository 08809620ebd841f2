"""The object-store interface every backend implements, and its errors.

An object store holds immutable-by-convention blobs under string keys
("a/b/c"). Besides plain put/get/delete/list it offers the two conditional
writes the manifest's fencing is built on: create-if-absent and
replace-if-version-matches. A version is an opaque token returned by every
write (S3's ETag; a file identity for the local directory).
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Sequence
from typing import NamedTuple

from native import join_parts
from native.buffers import BytesLike

ObjectBuffer = bytes | bytearray | memoryview
"""An object's bytes in one buffer."""
ObjectData = ObjectBuffer | Sequence[BytesLike]
"""An object's bytes: one buffer, or parts to be stored one after another
(a ByteSlice among the parts, never one alone: a stored payload is a part,
and the checks take anything but ObjectBuffer's types for parts)."""


def joined(data: ObjectData) -> BytesLike:
    """The object's bytes in one buffer."""
    if isinstance(data, bytes | bytearray | memoryview):
        return data
    # Copied with the GIL released: an object of tens of MiB joined by
    # b"".join would stop the WAL writer and the event loop meanwhile.
    return join_parts(data)


class ObjectStoreError(Exception):
    """An object-store operation failed; ``transient`` says a retry may work,
    ``misconfigured`` that the store's address or credentials are the
    likely cause (denied access, bad or missing credentials, no such
    bucket, an endpoint that cannot be reached), so that advice to check
    them is given for those errors only."""

    transient = True
    misconfigured = False

    def __init__(self, operation: str, key: str, reason: str) -> None:
        super().__init__(f"{operation} {key!r}: {reason}")
        self.operation = operation
        self.key = key
        self.reason = reason


class ObjectNotFound(ObjectStoreError):
    """The key does not exist (or the range starts past its end)."""

    transient = False

    def __init__(self, key: str) -> None:
        super().__init__("get", key, "no such object")


class ObjectStoreClosed(ObjectStoreError):
    """The object store was closed before the operation: no retry will
    work. Not s3stream.errors.StoreClosed, which is the stream store's
    (appends and reads after StreamStore.close)."""

    transient = False


class PreconditionFailed(ObjectStoreError):
    """A conditional put lost: the key exists, or its version moved on."""

    transient = False

    def __init__(self, key: str, condition: str) -> None:
        super().__init__("put", key, f"precondition failed ({condition})")
        self.condition = condition


class ConditionalWrites(enum.Enum):
    """What the store's conditional writes can be trusted with."""

    ENFORCED = "enforced"
    """The server enforces them; the manifest checks this at open (the probe)."""
    UNENFORCED_SINGLE_WRITER = "unenforced-single-writer"
    """The server may ignore them; the operator guarantees a single writer.
    The store checks each condition with a read just before the write, which
    keeps a single writer's retries and restarts safe but cannot stop two
    writers racing."""


class ObjectInfo(NamedTuple):
    key: str
    size: int
    version: str


class ObjectStore(abc.ABC):
    """Blob storage under string keys; safe to call from many threads."""

    #: A short description for logs, e.g. "s3://bucket/prefix".
    url: str
    #: Whether opening probes the conditional writes (see ConditionalWrites).
    conditional_writes = ConditionalWrites.ENFORCED
    #: The store's own code checks each condition under a lock every writer
    #: takes (the local directory and memory stores, both tidelog's): the
    #: probe at open would only test that code, so it is skipped.
    checks_its_own_conditions = False
    #: Whether a second copy of a slow request may answer sooner than the
    #: first (a remote server's stalls, S3's), so the stream store hedges
    #: them (hedged.py); not a local disk's, where the copy queues behind.
    hedgeable = False

    @abc.abstractmethod
    def put(self, key: str, data: ObjectData) -> str:
        """Stores ``data`` under ``key`` (replacing any object); returns its version."""

    @abc.abstractmethod
    def put_if_absent(self, key: str, data: ObjectBuffer) -> str:
        """Like put, but raises PreconditionFailed if ``key`` already exists."""

    @abc.abstractmethod
    def put_if_version(self, key: str, data: ObjectBuffer, version: str) -> str:
        """Like put, but raises PreconditionFailed unless ``key`` is at ``version``."""

    @abc.abstractmethod
    def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        """The bytes ``[start, end)`` of the object (to its end if ``end`` is None).

        A range reaching past the end is cut at the end, as HTTP ranges are.
        """

    @abc.abstractmethod
    def get_versioned(self, key: str) -> tuple[bytes, str]:
        """The whole object and its version, read atomically."""

    @abc.abstractmethod
    def head(self, key: str) -> ObjectInfo:
        """Size and version of the object; ObjectNotFound if absent."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Removes the object; deleting a missing key is not an error."""

    def delete_many(self, keys: Sequence[str]) -> None:
        """Removes every object of ``keys``, missing ones included, in no
        particular order: a caller that needs one deletion to precede another
        waits for this to return before it asks for the second. Backends that
        can delete many keys in one request (S3's DeleteObjects) do."""
        for key in keys:
            self.delete(key)

    @abc.abstractmethod
    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose key starts with ``prefix``, sorted by key."""

    def remove_abandoned_writes(self) -> int:
        """Removes what writes that can no longer finish left behind (a
        crashed process's temp files in a local directory), never what a
        live writer may still be writing; returns how many it removed.
        Stores whose writes leave nothing behind have nothing to do."""
        return 0

    def close(self) -> None:  # noqa: B027 - most backends hold nothing to release
        """Releases connections and files."""
