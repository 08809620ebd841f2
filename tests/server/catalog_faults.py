"""A catalog whose next write fails as the object store would: for the
all-or-nothing tests of admin requests."""

from __future__ import annotations

import errno
from concurrent.futures import Future
from typing import Any

import pytest

from engine.catalog import Catalog
from s3stream import StoreFailed


def fail_next_catalog_write(monkeypatch: pytest.MonkeyPatch, catalog: Catalog) -> None:
    """The store refuses the catalog's next append, as a failed or fenced
    store does (StoreFailed, nothing written); the ones after it, and every
    other stream's, are written. It fails inside the catalog's write, after
    the record is built and checked."""
    submit = catalog.store.submit
    failures = iter([StoreFailed(OSError(errno.EIO, "the object store is down"))])

    def submit_failing_once(stream_id: int, *args: Any, **kwargs: Any) -> Future[int]:
        failure = next(failures, None) if stream_id == catalog.stream_id else None
        if failure is not None:
            raise failure
        return submit(stream_id, *args, **kwargs)

    monkeypatch.setattr(catalog.store, "submit", submit_failing_once)
