"""Checks of offered passwords (SASL/PLAIN), on threads of their own.

Checking a password derives its salted keys again: PBKDF2 of 4096 to 16384
rounds, 1 to 10 ms of CPU, for a message of a few bytes. On the event loop
a client sending wrong passwords as fast as it can would hold the loop, and
every other connection's produce and fetch would wait. hashlib's PBKDF2
releases the GIL, so here it runs on a small pool of threads at the
background priority (wal/thread_priority.py) while the loop serves others.

The checks admitted at once are bounded: the pool's threads, and at most
``max_queued`` waiting for one. A check past that is refused at once
(``PasswordChecksBusy``), never queued: a flood of logins then costs the
queue's length in waiting, not an unbounded backlog that honest logins
would wait behind.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import os
import threading

from engine.credentials import (
    MIN_ITERATIONS,
    PLAIN,
    SALT_BYTES,
    ScramCredential,
    hash_of,
    password_matches,
)
from wal.thread_priority import ThreadPriority

NO_SUCH_USER = ScramCredential(
    salt=bytes(SALT_BYTES),
    # Random: no password derives it (and its check's outcome is not used).
    stored_key=os.urandom(hashlib.new(hash_of(PLAIN)).digest_size),
    server_key=b"",
    iterations=MIN_ITERATIONS,  # what a password set with no iteration count costs
)
"""What an unknown user's password is checked against (as PLAIN), as long
to derive as a user's credential made with the default iteration count:
refused at once, a login would tell whether a user name exists by how
soon its answer comes (a known user's wrong password costs a derivation)."""


class PasswordChecksBusy(Exception):
    """Every thread checks a password and ``max_queued`` more wait."""

    def __init__(self, admitted: int) -> None:
        super().__init__(f"{admitted} password checks are running or waiting")
        self.admitted = admitted


class PasswordChecks:
    """A bounded pool deriving offered passwords' keys off the event loop."""

    def __init__(self, threads: int, max_queued: int, priority: ThreadPriority) -> None:
        self._pool = priority.pool(threads, "tidelog-password-check")
        self._capacity = threads + max_queued
        self._lock = threading.Lock()
        """Guards ``admitted``: a check is released on the pool's thread."""
        self.admitted = 0
        """Checks running or waiting for a thread."""
        self.refused = 0
        """Checks refused because the pool was full."""
        self.stopped = False
        """Shut down: every check from now on is refused."""

    async def matches(self, credential: ScramCredential, mechanism: str, password: bytes) -> bool:
        """Whether ``password`` derives ``credential``'s keys; raises
        PasswordChecksBusy when the pool and its queue are full."""
        with self._lock:
            if self.admitted >= self._capacity:
                self.refused += 1
                raise PasswordChecksBusy(self.admitted)
            self.admitted += 1
        try:
            future = self._pool.submit(password_matches, credential, mechanism, password)
        except RuntimeError:  # shut down: the server is stopping
            self._release()
            raise PasswordChecksBusy(self._capacity) from None
        # Released when the derivation ends, not when its waiter goes: a
        # check whose client disconnected still holds its thread till then.
        future.add_done_callback(self._release)
        return await asyncio.wrap_future(future)

    def _release(self, _done: concurrent.futures.Future[bool] | None = None) -> None:
        with self._lock:
            self.admitted -= 1

    def shutdown(self) -> None:
        """Stops the threads once their checks end; waiting checks are cancelled."""
        self.stopped = True
        self._pool.shutdown(wait=False, cancel_futures=True)
