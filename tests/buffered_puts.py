"""The local object store's writer through the page cache, for tests of it.

Objects of a MiB or more are written past the page cache where the
filesystem takes O_DIRECT (s3stream/store/direct_writes.py); tests of the
buffered writer (write spans, write-out, page release, their faults) give
it the platform a filesystem without O_DIRECT gives it."""

from __future__ import annotations

import pytest

from s3stream.store import direct_writes


def without_direct_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(direct_writes, "_O_DIRECT", 0)
