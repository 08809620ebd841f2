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
would wait behind. One client address has at most ``per_address`` of
those checks admitted (running or waiting), so that a peer flooding from
one address leaves the rest of the queue to everyone else.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
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
from engine.server.address_shares import AddressShares, Refusal
from engine.server.sasl import PasswordCheck
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
    """Every thread checks a password and ``max_queued`` more wait, or the
    client's address has its share of them."""

    def __init__(self, admitted: int, address: str | None = None) -> None:
        whose = "" if address is None else f" from {address}, its share of the queue,"
        super().__init__(f"{admitted} password checks{whose} are running or waiting")
        self.admitted = admitted
        self.address = address
        """The address whose share is taken; None when the whole queue is."""


class PasswordChecks:
    """A bounded pool deriving offered passwords' keys off the event loop."""

    def __init__(
        self, threads: int, max_queued: int, per_address: int, priority: ThreadPriority
    ) -> None:
        self._pool = priority.pool(threads, "tidelog-password-check")
        self._shares = AddressShares(threads + max_queued, per_address)
        """The checks running or waiting for a thread, by address."""
        self._lock = threading.Lock()
        """Guards ``_shares``: a check is released on the pool's thread."""
        self.refused = 0
        """Checks refused because the pool, or their address's share, was full."""
        self.stopped = False
        """Shut down: every check from now on is refused."""

    @property
    def admitted(self) -> int:
        """Checks running or waiting for a thread."""
        return self._shares.admitted

    @property
    def by_address(self) -> dict[str, int]:
        """The admitted checks of each address that has any."""
        with self._lock:
            return dict(self._shares.by_address)

    def for_address(self, address: str) -> PasswordCheck:
        """The check a connection from ``address`` asks: its logins count
        against that address's share."""
        return functools.partial(self.matches, address)

    async def matches(
        self, address: str, credential: ScramCredential, mechanism: str, password: bytes
    ) -> bool:
        """Whether ``password`` derives ``credential``'s keys; raises
        PasswordChecksBusy when the pool and its queue are full, when
        ``address`` has its share of them, or once the pool is shut down."""
        with self._lock:
            refusal = self._shares.admit(address)
            if refusal is not None:
                self.refused += 1
                if refusal is Refusal.FULL:
                    raise PasswordChecksBusy(self._shares.admitted)
                raise PasswordChecksBusy(self._shares.by_address[address], address)
        release = functools.partial(self._release, address)
        try:
            future = self._pool.submit(password_matches, credential, mechanism, password)
        except RuntimeError:  # shut down: the server is stopping
            release()
            raise PasswordChecksBusy(self._shares.capacity) from None
        # Released when the derivation ends, not when its waiter goes: a
        # check whose client disconnected still holds its thread till then.
        future.add_done_callback(release)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if _cancelled_by_its_caller():
                raise
            # shutdown() cancelled it while it waited for a thread, not its
            # caller: refused as a check arriving after the shutdown is (try
            # again). Raised on, a cancellation nobody asked for would end
            # the caller's task: the Schema Registry API, serving on past
            # its Server's stop, would drop the connection unanswered.
            raise PasswordChecksBusy(self._shares.capacity) from None

    def _release(self, address: str, _done: concurrent.futures.Future[bool] | None = None) -> None:
        with self._lock:
            self._shares.release(address)

    def shutdown(self) -> None:
        """Stops the threads once their checks end; checks waiting for a
        thread are refused (PasswordChecksBusy)."""
        self.stopped = True
        self._pool.shutdown(wait=False, cancel_futures=True)


def _cancelled_by_its_caller() -> bool:
    """Whether the task awaiting a check was cancelled itself (its client
    went), not only the check's future under it."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
