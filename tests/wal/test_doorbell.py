"""The writer's doorbell: a ring wakes a sleeper, is never kept for a later
sleep, and one that lands between a timeout and the relock is taken back."""

from __future__ import annotations

import threading
from typing import cast

from wal.doorbell import Doorbell


def _ring_a_sleeper(timeout: float) -> list[bool]:
    """Rings a sleeper asleep for up to ``timeout``; whether it was rung,
    and whether it held the lock again once woken."""
    lock = threading.Lock()
    bell = Doorbell(lock)
    about_to_sleep = threading.Event()
    woken: list[bool] = []

    def sleeper() -> None:
        with lock:
            about_to_sleep.set()
            woken.append(bell.sleep(timeout=timeout))
            woken.append(lock.locked())

    thread = threading.Thread(target=sleeper)
    thread.start()
    assert about_to_sleep.wait(timeout=30)
    with lock:  # taken only once the sleeper let it go, asleep
        bell.ring()
    thread.join(timeout=30)
    return woken


def test_a_ring_wakes_the_sleeper_which_holds_the_lock_again() -> None:
    assert _ring_a_sleeper(timeout=30) == [True, True]


def test_a_sleep_longer_than_a_lock_can_time_waits_for_its_ring() -> None:
    """The writer's sleep under the ``interval`` policy lasts the interval:
    one of inf (or of centuries) made the lock's acquire raise, which ended
    the writer thread and left every later append unanswered."""
    assert _ring_a_sleeper(timeout=float("inf")) == [True, True]


def test_a_ring_with_nobody_asleep_does_not_wake_a_later_sleep() -> None:
    lock = threading.Lock()
    bell = Doorbell(lock)
    with lock:
        bell.ring()
        bell.ring()
        assert bell.sleep(timeout=0.01) is False


class _RingOnRelock:
    """A lock that lets a ringer in right after the sleeper's wait timed
    out, before the sleeper has the lock again (as an appender taking the
    lock at that moment would)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.bell: Doorbell | None = None
        self.rings_left = 0

    def acquire(self) -> bool:
        self._lock.acquire()
        if self.rings_left and self.bell is not None:
            self.rings_left -= 1
            self.bell.ring()
        return True

    def release(self) -> None:
        self._lock.release()


def test_a_ring_between_the_timeout_and_the_relock_counts_and_is_not_kept() -> None:
    lock = _RingOnRelock()
    bell = Doorbell(cast(threading.Lock, lock))
    lock.bell = bell
    lock.acquire()
    lock.rings_left = 1
    assert bell.sleep(timeout=0.01) is True  # rung, though its wait timed out
    # Kept, the ring would end this sleep at once, rung by nobody.
    assert bell.sleep(timeout=0.01) is False
    lock.release()


def test_rings_from_many_threads_against_short_timed_sleeps_lose_no_work() -> None:
    """Ringers queue work and ring while the sleeper's waits keep timing
    out around them: every item is taken, and no ring releases the bell
    twice (which would raise in the ringer)."""
    lock = threading.Lock()
    bell = Doorbell(lock)
    queued: list[int] = []
    taken: list[int] = []
    errors: list[BaseException] = []
    ringers, each = 4, 300

    def ringer(number: int) -> None:
        try:
            for i in range(each):
                with lock:
                    queued.append(number * each + i)
                    if len(queued) == 1:
                        bell.ring()
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=ringer, args=(n,)) for n in range(ringers)]
    for thread in threads:
        thread.start()
    with lock:
        while len(taken) < ringers * each:
            if not queued and not bell.sleep(timeout=0.0005):
                continue
            taken.extend(queued)
            queued.clear()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert sorted(taken) == list(range(ringers * each))
