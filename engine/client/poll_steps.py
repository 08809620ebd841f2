"""The consumer's poll, written once for threads and for asyncio.

A poll is a generator that yields what it has to wait on (a fetch, a
commit before partitions are revoked, new data) and gets the answer back.
:func:`run` does each wait on the calling thread; :func:`run_async` awaits
it on the running event loop (object-storage reads run off the loop). So
the sync and asyncio polls share every decision and differ only in how
they wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator, Mapping, Sequence
from concurrent import futures
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, Protocol, TypeVar

from engine.errors import EngineError
from engine.partition import PartitionFetch
from engine.types import TopicPartition

if TYPE_CHECKING:
    from engine.client.host import ClientHost
    from engine.partition import Partition, Watched

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

API_TIMEOUT_S = 60.0
"""How long commit and committed wait at most (Kafka's default.api.timeout.ms)."""
RETRY_BACKOFF_S = 0.1
"""How soon a poll looks again at what it cannot wait on directly: a
rebalance under way while it reads on, an offset a transaction has pending
(Kafka's retry.backoff.ms)."""


class Wait(Protocol[T_co]):
    """Something a poll waits on, done either way."""

    def run(self) -> T_co: ...
    async def run_async(self) -> T_co: ...


Steps = Generator[Wait[Any], Any, T]
"""A poll (or a part of one): yields waits, returns its result."""


def run(steps: Steps[T]) -> T:
    """Runs ``steps`` on this thread; a wait's error is raised inside them."""
    driver = _Driver(steps)
    while (wait := driver.next_wait()) is not None:
        try:
            driver.answer = wait.run()
        except Exception as failure:
            driver.error = failure
    return driver.result


async def run_async(steps: Steps[T]) -> T:
    """Runs ``steps`` on the running event loop, never blocking it."""
    driver = _Driver(steps)
    while (wait := driver.next_wait()) is not None:
        try:
            driver.answer = await wait.run_async()
        except Exception as failure:
            driver.error = failure
    return driver.result


class _Driver(Generic[T]):
    """Hands a wait's answer (or error) back to the steps and takes the next wait."""

    def __init__(self, steps: Steps[T]) -> None:
        self.steps = steps
        self.answer: Any = None
        self.error: BaseException | None = None
        self.result: T

    def next_wait(self) -> Wait[Any] | None:
        """The next wait; None once the steps returned (``result``)."""
        try:
            if self.error is None:
                wait = self.steps.send(self.answer)
            else:
                wait = self.steps.throw(self.error)
        except StopIteration as done:
            self.result = done.value
            return None
        self.answer, self.error = None, None
        return wait


Read = tuple["Partition", PartitionFetch]
"""A partition's fetch, with the partition it read: a wait for more data
watches that partition, not whichever a lookup by name finds. A plain
tuple, built and unpacked once per fetch on the tail path."""


class Fetch(NamedTuple):
    """Stored batches of one partition from ``position``."""

    host: ClientHost
    tp: TopicPartition
    position: int
    max_bytes: int
    isolation_level: str

    def run(self) -> Read:
        tp = self.tp
        leader = self.host.partition(tp.topic, tp.partition)
        return leader, self.host.fetch_from(
            leader, self.position, self.max_bytes, self.isolation_level
        )

    async def run_async(self) -> Read:
        tp = self.tp
        leader = self.host.partition(tp.topic, tp.partition)
        fetched = await self.host.fetch_from_async(
            leader, self.position, self.max_bytes, self.isolation_level
        )
        return leader, fetched


Answered = tuple[Fetch, "Read | Exception"]
"""A fetch with its read, or the error it raised."""


class FetchPlanned(NamedTuple):
    """The fetches of ``planned`` (partitions with their positions, in plan
    order) within ``budget`` bytes, answered in plan order for the
    partitions whose fetch started; ``check`` is called on each partition
    before its fetch starts.

    On a thread they run in turn, each asking for what is left of the
    budget (at most ``max_partition_bytes``) once those before it are
    counted at their size, as a Kafka broker reads one Fetch's partitions
    (ReplicaManager.readFromLog).

    On an event loop they run together, as Kafka's consumer sends one
    Fetch per node naming all its partitions: each asks for an equal share
    of the budget among the partitions with records to read (those behind
    their high watermark; at most ``max_partition_bytes``), and starts
    while the shares of the fetches under way (those answered counted at
    their size) leave it room. Shares of the partitions behind fit in the
    budget together, so when their object reads stall the poll waits for
    the slowest of them (each bounded by remote_fetch_max_wait_ms), not
    once per group. The reads themselves queue for the store's fetch
    threads (read_workers), its bound on reads of the object store; a
    partition at its end answers from the log cache at once, freeing its
    share.

    Either way a partition whose batch (``seen``, else a guess: see
    ``_batch``) does not fit what is left is passed over, unless no read
    before it held records (its are the poll's first): read, that batch
    would only be dropped. The
    partitions after it are still fetched, as a broker goes on to a
    Fetch's later partitions; on an event loop a partition passed over
    starts once answers leave it room."""

    host: ClientHost
    planned: Sequence[tuple[TopicPartition, int]]
    budget: int
    max_partition_bytes: int
    isolation_level: str
    check: Callable[[TopicPartition], None]
    seen: Mapping[TopicPartition, int]
    """The size of each partition's batch as last seen at or before its
    position: what its fetch will answer at least, however little it asks
    (a fetch answers one whole batch)."""
    read_from: Mapping[TopicPartition, Partition]
    """The leader each partition's last fetch read (a guess needs no lookup)."""
    guess: int
    """The largest batch the consumer has seen of its partitions (0: none):
    a guess at a batch nothing else tells of."""
    may_pass: bool
    """Whether no records were taken yet this poll: the first read that
    holds records may pass the budget by one batch; no other's is taken
    past it."""

    def _batch(self, tp: TopicPartition, learned: int) -> int | None:
        """What ``tp``'s fetch will answer at least, as far as is known: its
        batch as last seen; not seen yet (a first poll, a seek), the largest
        batch appended to it since the engine opened, else ``learned``
        (the largest batch the consumer has seen, this poll's answers
        included); None if nothing is known, as in a first poll after the
        engine reopened."""
        size = self.seen.get(tp)
        if size is not None:
            return size
        leader = self.read_from.get(tp)
        if leader is None:
            try:
                leader = self.host.partition(tp.topic, tp.partition)
            except EngineError:
                return learned or None  # its fetch raises why
        return leader.largest_batch_appended or learned or None

    def _fits(self, tp: TopicPartition, left: int, learned: int) -> bool:
        """Whether ``tp``'s fetch is worth starting with ``left`` bytes of
        the budget free: a batch that does not fit would be read only to be
        dropped, as a broker leaves out a partition whose first batch does
        not fit what is left of a Fetch (ReplicaManager.readFromLog's
        minOneMessage, until a partition answers records). A batch of unknown
        size is read: on a thread the fetch asks for what is left, and the
        reads stop once they reach the budget."""
        if left <= 0:
            return False
        if self.may_pass and left >= self.budget:
            # Nothing read yet holds records: this fetch's are the poll's
            # first, taken whatever their size (minOneMessage holds until a
            # partition answers records). A caught-up poll asks no more.
            return True
        size = self._batch(tp, learned)
        return size is None or size <= left

    def _at_end(self, tp: TopicPartition, position: int) -> bool:
        """Whether ``tp`` has nothing to read at ``position``. Past a
        partition passed over, such a fetch is not started: it would
        answer nothing (a plan that stopped there never read it either),
        and a later poll reads it while the budget holds or it heads the
        plan. One whose leader is not found is read: its fetch raises why."""
        try:
            return position >= self.host.partition(tp.topic, tp.partition).high_watermark
        except EngineError:
            return False

    def _fetch(self, tp: TopicPartition, position: int, asked: int) -> Fetch:
        self.check(tp)
        return Fetch(self.host, tp, position, asked, self.isolation_level)

    def _share(self) -> int:
        """Each async fetch's ask: the budget over the partitions behind
        their high watermark (one whose leader is not found counts: its
        fetch raises why), at least one byte (a fetch answers one whole
        batch whatever it asks)."""
        behind = 0
        for tp, position in self.planned:
            try:
                leader = self.host.partition(tp.topic, tp.partition)
            except EngineError:
                behind += 1
                continue
            behind += position < leader.high_watermark
        return min(self.max_partition_bytes, max(1, self.budget // max(1, behind)))

    def run(self) -> list[Answered]:
        answers: list[Answered] = []
        left = self.budget
        learned = self.guess
        passed = False
        for tp, position in self.planned:
            if left <= 0:
                break
            if not self._fits(tp, left, learned):
                passed = True  # left at its position for a later poll
                continue
            if passed and self._at_end(tp, position):
                continue
            fetch = self._fetch(tp, position, min(left, self.max_partition_bytes))
            try:
                read = fetch.run()
            except Exception as failure:
                answers.append((fetch, failure))
                continue
            left -= _size(read) or self._held(fetch, read, learned)
            learned = max(learned, _largest(read))
            answers.append((fetch, read))
        return answers

    def _held(self, fetch: Fetch, read: Read, learned: int) -> int:
        """What a fetch answered with its store read still going on
        (read_pending) keeps of the budget: the batch it will answer, as far
        as known, else what it asked. The next poll takes that batch; given
        back, the budget would start another partition's read in its place,
        and on a slow store one after another until every partition behind
        is read, past the budget, and the poll waits once per budget's
        worth. On a thread, a fetch of a batch not known asked for what was
        left: a stalled store costs the blocking poll one wait, not one a
        partition."""
        if not read[1].read_pending:
            return 0
        return self._batch(fetch.tp, learned) or fetch.max_bytes

    async def run_async(self) -> list[Answered]:
        if len(self.planned) == 1:  # a consumer of one partition: no task
            tp, position = self.planned[0]
            if not self._fits(tp, self.budget, self.guess):
                return []
            fetch = self._fetch(tp, position, min(self.budget, self.max_partition_bytes))
            try:
                return [(fetch, await fetch.run_async())]
            except Exception as failure:
                return [(fetch, failure)]
        left = self.budget
        share = self._share()
        learned = self.guess
        answered = False  # whether some fetch of this plan has answered
        waiting = list(range(len(self.planned)))
        """Plan indices not started yet, in plan order."""
        started: dict[int, tuple[Fetch, asyncio.Task[Read]]] = {}
        running: set[asyncio.Task[Read]] = set()
        shares: dict[asyncio.Task[Read], int] = {}
        fetches: dict[asyncio.Task[Read], Fetch] = {}
        try:
            while True:
                passed_over: list[int] = []
                for at in waiting:
                    tp, position = self.planned[at]
                    if not self._fits(tp, left, learned):
                        passed_over.append(at)
                        continue
                    if passed_over and self._at_end(tp, position):
                        continue
                    # Counted at its batch as far as known, if that is more
                    # than it asks: what it will answer at least. Known not
                    # at all before any fetch answered, it is counted at
                    # what is left, so it runs alone and its answer tells
                    # what the others may hold; once one answered (with no
                    # records, its store read still going on, say) the
                    # others are counted at their ask and run together, so
                    # a stalled store costs two waits, not one a partition.
                    size = self._batch(tp, learned)
                    if size is None:
                        size = 0 if answered else left
                    fetch = self._fetch(tp, position, min(left, share))
                    task = asyncio.ensure_future(fetch.run_async())
                    counted = max(fetch.max_bytes, size)
                    left -= counted
                    shares[task] = counted
                    fetches[task] = fetch
                    started[at] = (fetch, task)
                    running.add(task)
                waiting = passed_over
                if not running:
                    break
                done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                answered = True
                for task in done:
                    left += shares.pop(task)
                    if not task.cancelled() and task.exception() is None:
                        read = task.result()
                        fetch = fetches[task]
                        left -= _size(read) or self._held(fetch, read, learned)
                        learned = max(learned, _largest(read))
        finally:
            # Cancelled, or a check raised: no fetch outlives the poll, and
            # none left unanswered warns of an error nobody read.
            for task in running:
                task.cancel()
            for _, task in started.values():
                if task.done() and not task.cancelled():
                    task.exception()
        answers: list[Answered] = []
        for at in sorted(started):
            fetch, task = started[at]
            try:
                answers.append((fetch, task.result()))  # a cancelled fetch's error goes on up
            except Exception as failure:
                answers.append((fetch, failure))
        return answers


def _size(read: Read) -> int:
    return sum(len(batch) for batch in read[1].records)


def _largest(read: Read) -> int:
    records = read[1].records
    return max(map(len, records)) if records else 0


class AwaitCommit(NamedTuple):
    """A commit made before partitions are revoked, waited for (at most
    API_TIMEOUT_S): their next owner starts where this consumer stopped."""

    commit: Future[Any] | None

    def run(self) -> None:
        if self.commit is not None:
            futures.wait([self.commit], API_TIMEOUT_S)

    async def run_async(self) -> None:
        if self.commit is not None:
            await asyncio.wait([asyncio.wrap_future(self.commit)], timeout=API_TIMEOUT_S)


class AwaitData(NamedTuple):
    """Waits up to ``remaining`` seconds for data in the ``watched``
    partitions, those the consumer read (None: it has no partitions yet),
    or for the ``rebalance`` under way to need the consumer; a wait for
    data alone lasts at most ``cap``. A watched partition deleted since
    its read ends the wait: the consumer's next look finds it gone."""

    host: ClientHost
    watched: Mapping[int, Watched] | None
    rebalance: Future[None] | None
    remaining: float
    cap: float

    def run(self) -> None:
        if self.watched is None:
            assert self.rebalance is not None
            futures.wait([self.rebalance], self.remaining)
            return
        # A thread cannot wait on both at once: it looks at the rebalance again soon.
        cap = self.cap if self.rebalance is None else min(self.remaining, RETRY_BACKOFF_S)
        self.host.wait_for_reads(self.watched, cap)

    async def run_async(self) -> None:
        waits: set[asyncio.Future[Any]] = set()
        if self.rebalance is not None:
            waits.add(asyncio.wrap_future(self.rebalance))
        if self.watched is not None:
            data = self.host.wait_for_reads_async(self.watched, self.cap)
            waits.add(asyncio.ensure_future(data))
        _, pending = await asyncio.wait(
            waits, timeout=self.remaining, return_when=asyncio.FIRST_COMPLETED
        )
        for waiter in pending:
            waiter.cancel()
