"""A catalog whose next write fails as the object store would: for the
all-or-nothing tests of admin requests."""

from __future__ import annotations

from typing import Any

import pytest

from engine.catalog import Catalog
from s3stream import S3StreamError


def fail_next_catalog_write(monkeypatch: pytest.MonkeyPatch, catalog: Catalog) -> None:
    """The catalog's next append raises S3StreamError, writing nothing; the
    ones after it are written."""
    written = catalog.append
    failures = iter([S3StreamError("the object store is down")])

    def append_failing_once(record: list[Any]) -> None:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        written(record)

    monkeypatch.setattr(catalog, "append", append_failing_once)
