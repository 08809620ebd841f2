"""moto's S3 server with S3's atomic conditional writes.

S3 decides a conditional write (If-Match, If-None-Match: *) atomically: "if
multiple conditional writes occur for the same object name, the first write
operation to finish succeeds" and the others get 412 (or 409
ConditionalRequestConflict), as AWS's user guide on conditional requests says.
moto 5 checks the condition, then builds the new object, then stores it, each
request on its own thread: two writers that both offer the current ETag can
both pass the check before either stores, and both get 200. On a loaded
machine the test process's threads (moto's server shares their GIL) are
switched between the check and the store often enough that eight threads
racing one If-Match saw two winners in 5 of 150 rounds.

``make_object_writes_atomic`` makes every request that changes an object
(PutObject, CopyObject, CompleteMultipartUpload, DeleteObject,
DeleteObjects) run under one lock, so a check and the write it guards are one
step, as on S3. Reads take no lock: moto stores an object in one assignment.
Part uploads take none either: they change no object, and a multipart
upload's parts keep going up side by side.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from moto.s3.responses import S3Response

_object_writes = threading.Lock()
_patching = threading.Lock()
_MARK = "_object_writes_atomic"


def make_object_writes_atomic() -> None:
    """Serialises the object-changing requests of this process's moto S3
    servers (idempotent). Raises AttributeError if moto's handlers have moved:
    the tests' conditional writes would otherwise race again, unnoticed."""
    with _patching:
        if getattr(S3Response, _MARK, False):
            return
        handlers = {
            "_key_response_put": _locked_unless_part,
            "_key_response_post": _locked,
            "_key_response_delete": _locked,
            "_bucket_response_delete_keys": _locked,
        }
        for name, lock in handlers.items():
            setattr(S3Response, name, lock(getattr(S3Response, name)))
        setattr(S3Response, _MARK, True)


def _locked(handler: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(handler)
    def under_lock(*args: Any, **kwargs: Any) -> Any:
        with _object_writes:
            return handler(*args, **kwargs)

    return under_lock


def _locked_unless_part(handler: Callable[..., Any]) -> Callable[..., Any]:
    """``_key_response_put(self, query, key_name)``, locked unless it uploads a part."""

    @functools.wraps(handler)
    def under_lock(self: S3Response, query: dict[str, Any], key_name: str) -> Any:
        if "partNumber" in query and "uploadId" in query:
            return handler(self, query, key_name)
        with _object_writes:
            return handler(self, query, key_name)

    return under_lock
