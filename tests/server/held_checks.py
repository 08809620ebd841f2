"""Password derivations held back until released: a check as slow as a
test wants it, by fault injection at engine.credentials (which both the
server's PLAIN checks and the pool's tests reach)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from engine import credentials

TIMEOUT = 30.0
"""The longest a derivation is held: a test that fails never leaves one waiting."""


class HeldChecks:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.started = 0
        """Derivations begun (held or not)."""
        self.finished = 0
        self._released = threading.Event()
        derive = credentials.salted_password

        def held(hash_name: str, password: bytes, salt: bytes, iterations: int) -> bytes:
            self.started += 1
            self._released.wait(TIMEOUT)
            self.finished += 1
            return derive(hash_name, password, salt, iterations)

        monkeypatch.setattr(credentials, "salted_password", held)

    def hold(self) -> None:
        self._released.clear()

    def release(self) -> None:
        self._released.set()


@contextmanager
def held_checks(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldChecks]:
    """Derivations held from the start; all released on exit."""
    checks = HeldChecks(monkeypatch)
    try:
        yield checks
    finally:
        checks.release()  # never leave a server's threads (or its loop) waiting
