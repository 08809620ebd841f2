"""A transaction coordinator whose markers wait to be written: for the
tests of requests that meet a completion under way."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from engine.transactions.completion import TransactionCompleter


def hold_markers(monkeypatch: pytest.MonkeyPatch, timeout: float) -> threading.Event:
    """From now on markers are written only once the event is set (the
    write fails its assertion if it is not set within ``timeout``: a test
    that never sets it must not hang)."""
    released = threading.Event()
    write_markers = TransactionCompleter._write_markers

    def held(self: TransactionCompleter, *args: Any) -> None:
        assert released.wait(timeout)
        write_markers(self, *args)

    monkeypatch.setattr(TransactionCompleter, "_write_markers", held)
    return released
