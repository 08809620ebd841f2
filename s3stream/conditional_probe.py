"""The check, at open, that the object store enforces conditional writes.

Fencing rests on them: exactly one writer creates each manifest version
(create-if-absent). Some S3-compatible servers accept ``If-None-Match`` and
``If-Match`` and ignore them; on those two writers both commit, the history
forks, and acknowledged records vanish. So before the manifest writes
anything, the opener checks on a key of its own, under ``manifest/probe/``:

1. create-if-absent of a new key succeeds;
2. create-if-absent of it again must fail (412);
3. replace-if-version with the current version succeeds;
4. replace-if-version with the version step 3 replaced (now stale) must fail;

then deletes the key. Four puts and a delete, on a key no other opener uses,
so concurrent openers do not disturb each other. A store that fails step 2
or 4 is refused with ConditionalWritesNotEnforced, unless it was opened in
single-writer mode (``ConditionalWrites.UNENFORCED_SINGLE_WRITER``), which
skips the probe.
"""

from __future__ import annotations

import contextlib
import logging
import os

from s3stream.errors import ConditionalWritesNotEnforced
from s3stream.store import ObjectStore, ObjectStoreError, PreconditionFailed
from s3stream.store.base import ConditionalWrites

log = logging.getLogger("tidelog.manifest")

PROBE_PREFIX = "manifest/probe/"


def check_conditional_writes(store: ObjectStore) -> None:
    """Raises ConditionalWritesNotEnforced if ``store`` ignores its conditions.

    Store errors (an outage) propagate as they are; the probe key is
    deleted whatever happens (a crash may leave it: a few bytes, never read).
    """
    if store.conditional_writes is ConditionalWrites.UNENFORCED_SINGLE_WRITER:
        log.warning(
            "%s: conditional writes are not relied on (single-writer mode): "
            "a second writer on this bucket and prefix would corrupt the manifest",
            store.url,
        )
        return
    key = f"{PROBE_PREFIX}{os.urandom(8).hex()}"
    try:
        first = _settled(store, key, b"tidelog probe 1", None)
        try:
            store.put_if_absent(key, b"tidelog probe 2")
        except PreconditionFailed:
            pass
        else:
            raise ConditionalWritesNotEnforced(store.url, "create-if-absent (If-None-Match)")
        _settled(store, key, b"tidelog probe 3", first)
        try:
            store.put_if_version(key, b"tidelog probe 4", first)
        except PreconditionFailed:
            pass
        else:
            raise ConditionalWritesNotEnforced(store.url, "replace-if-version (If-Match)")
    finally:
        with contextlib.suppress(ObjectStoreError):
            store.delete(key)


def _settled(store: ObjectStore, key: str, data: bytes, version: str | None) -> str:
    """A conditional put that must succeed; a 412 whose object holds ``data``
    was our own earlier attempt (a lost answer, retried), as in the manifest."""
    try:
        if version is None:
            return store.put_if_absent(key, data)
        return store.put_if_version(key, data, version)
    except PreconditionFailed:
        found, found_version = store.get_versioned(key)
        if found != data:
            raise
        return found_version
