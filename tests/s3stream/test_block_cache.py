"""The block cache: read blocks go before unread read-ahead, and whatever
happens (loads, claims, fulfilments, failures, evictions) its byte bound
holds, every waiter is answered and no block is both cached and loading."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from types import FrameType

from hypothesis import given, settings
from hypothesis import strategies as st

from s3stream.block_cache import BlockCache, BlockKey
from s3stream.objects import StoredBatch


def _batches(name: str) -> list[StoredBatch]:
    return [StoredBatch(0, 1, name.encode())]


def _cached(cache: BlockCache) -> set[BlockKey]:
    return set(cache._read) | set(cache._unread)


def _fetch_ahead(cache: BlockCache, key: BlockKey, size: int) -> None:
    assert cache.claim(key)
    cache.fulfil(key, size, _batches(key[0]))


def test_blocks_already_read_are_evicted_before_unread_read_ahead() -> None:
    cache = BlockCache(30)
    _fetch_ahead(cache, ("ahead", 0), 10)  # oldest, not read yet
    cache.get(("read", 0), 10, lambda: _batches("read"))  # loaded by its reader
    _fetch_ahead(cache, ("ahead", 1), 10)
    _fetch_ahead(cache, ("ahead", 2), 10)  # one too many: the read one goes
    assert _cached(cache) == {("ahead", 0), ("ahead", 1), ("ahead", 2)}
    assert cache.evicted_unread == 0
    # Read, a block goes before the unread ones, however recently read.
    cache.get(("ahead", 2), 10, lambda: _batches("again"))
    _fetch_ahead(cache, ("ahead", 3), 10)
    assert _cached(cache) == {("ahead", 0), ("ahead", 1), ("ahead", 3)}
    assert cache.hits == 1
    # With nothing read left, the oldest unread goes, and is counted.
    _fetch_ahead(cache, ("ahead", 4), 10)
    assert _cached(cache) == {("ahead", 1), ("ahead", 3), ("ahead", 4)}
    assert cache.evicted_unread == 1


def test_a_read_block_in_another_readers_window_is_kept_as_unread() -> None:
    # Two consumers replaying one history: the first has read the block, the
    # second's read-ahead has it in its window, so it stays while newer
    # read blocks go.
    cache = BlockCache(30)
    cache.get(("shared", 0), 10, lambda: _batches("shared"))
    cache.get(("read", 0), 10, lambda: _batches("read"))
    assert cache.ahead(("shared", 0))
    assert not cache.ahead(("elsewhere", 0))
    cache.get(("read", 1), 10, lambda: _batches("read"))
    cache.get(("read", 2), 10, lambda: _batches("read"))
    assert _cached(cache) == {("shared", 0), ("read", 1), ("read", 2)}
    # A claim of a read block (another whole-object read) keeps it too.
    assert not cache.claim(("read", 1))
    cache.get(("read", 3), 10, lambda: _batches("read"))
    assert _cached(cache) == {("shared", 0), ("read", 1), ("read", 3)}
    assert cache.evicted_unread == 0


def test_a_block_its_reader_waited_for_is_read_once_it_comes() -> None:
    # The reader asks for a block its read-ahead is still fetching: it waits
    # on that fetch, and the block, fulfilled as read-ahead, is read by then.
    cache = BlockCache(30)
    assert cache.claim(("waited", 0))
    answered: list[list[StoredBatch]] = []
    reader = threading.Thread(
        target=lambda: answered.append(cache.get(("waited", 0), 10, lambda: _batches("no")))
    )
    reader.start()
    while cache.misses == 0:  # the reader is waiting on the fetch in flight
        threading.Event().wait(0.001)
    cache.fulfil(("waited", 0), 10, _batches("waited"))
    reader.join(10)
    assert answered == [_batches("waited")]
    assert set(cache._read) == {("waited", 0)} and not cache._unread
    # So it goes first, before read-ahead nobody has read.
    _fetch_ahead(cache, ("ahead", 0), 10)
    _fetch_ahead(cache, ("ahead", 1), 10)
    _fetch_ahead(cache, ("ahead", 2), 10)
    assert _cached(cache) == {("ahead", 0), ("ahead", 1), ("ahead", 2)}
    assert cache.evicted_unread == 0


KEYS = st.sampled_from([("object", position) for position in range(6)])
OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["get", "get-failing", "claim", "fulfil", "abandon", "ahead"]),
        KEYS,
        st.integers(min_value=0, max_value=40),
    ),
    max_size=60,
)


class _Failed(Exception):
    pass


@settings(max_examples=150, deadline=None)
@given(max_bytes=st.integers(min_value=0, max_value=64), operations=OPERATIONS)
def test_the_block_cache_keeps_its_bound_and_answers_every_waiter(
    max_bytes: int, operations: list[tuple[str, BlockKey, int]]
) -> None:
    cache = BlockCache(max_bytes)
    claimed: dict[BlockKey, int] = {}
    waiters: list[tuple[threading.Thread, Future[object]]] = []
    evicted_before = 0

    def wait_for(key: BlockKey, size: int) -> None:
        # A get of a block someone is loading waits for them: on a thread.
        answer: Future[object] = Future()

        def run() -> None:
            try:
                answer.set_result(cache.get(key, size, lambda: _batches("mine")))
            except _Failed as error:
                answer.set_exception(error)

        # On until it waits on the loader's future (its miss is counted
        # then), so it never loads the block itself while the steps go on.
        misses = cache.misses
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        waiters.append((thread, answer))
        for _ in range(30_000):
            if cache.misses > misses:
                break
            threading.Event().wait(0.001)
        assert cache.misses > misses, "the waiter never asked"

    for operation, key, size in operations:
        if operation in ("get", "get-failing"):
            if key in claimed:
                wait_for(key, size)
            elif operation == "get":
                assert cache.get(key, size, lambda: _batches("loaded"))
            else:

                def failing() -> list[StoredBatch]:
                    raise _Failed

                if key in _cached(cache):
                    cache.get(key, size, failing)  # a hit: the loader is not called
                else:
                    try:
                        cache.get(key, size, failing)
                    except _Failed:
                        assert key not in _cached(cache)  # a failure is not cached
                    else:
                        raise AssertionError("a failing load returned")
        elif operation == "claim":
            held = key in claimed or key in _cached(cache)
            assert cache.claim(key) is not held
            if not held:
                claimed[key] = size
        elif operation == "ahead":
            held = key in claimed or key in _cached(cache)
            assert cache.ahead(key) is held
            if key in _cached(cache):
                assert key in cache._unread
        elif key in claimed:
            claimed_size = claimed.pop(key)
            if operation == "fulfil":
                cache.fulfil(key, claimed_size, _batches("ahead"))
                # Unread unless it could never fit (a block over the bound).
                assert (key in cache._unread) is (claimed_size <= max_bytes)
            else:
                cache.abandon(key, _Failed())
        # The invariants, after every step.
        assert cache.size <= max_bytes
        assert cache.size == sum(
            size for _, size, _ in (*cache._read.values(), *cache._unread.values())
        )
        assert not set(cache._read) & set(cache._unread)
        assert not _cached(cache) & set(cache._loading)
        assert set(claimed) <= set(cache._loading)
        assert cache.evicted_unread >= evicted_before
        evicted_before = cache.evicted_unread
    for key, size in list(claimed.items()):
        cache.fulfil(key, size, _batches("late"))
    for thread, answer in waiters:
        thread.join(timeout=30)
        assert not thread.is_alive(), "a waiter was never answered"
        assert answer.done()
    assert cache.in_flight() == 0


def _python_calls_within(call: Callable[[BlockKey], object], key: BlockKey) -> list[str]:
    """The Python functions ``call(key)`` calls (builtins not counted)."""
    called: list[str] = []
    depth = [0]

    def profile(frame: FrameType, event: str, _: object) -> None:
        if event == "call":
            depth[0] += 1
            if depth[0] > 1:
                called.append(frame.f_code.co_name)
        elif event == "return":
            depth[0] -= 1

    sys.setprofile(profile)
    try:
        call(key)
    finally:
        sys.setprofile(None)
    return called


def test_read_ahead_asks_about_a_block_with_look_ups_alone() -> None:
    # Every read asks about each block of its window: tens of blocks a read,
    # cached or not, so a cached read costs what these asks cost.
    cache = BlockCache(30)
    _fetch_ahead(cache, ("unread", 0), 10)
    cache.get(("read", 0), 10, lambda: _batches("read"))
    for key in (("unread", 0), ("read", 0), ("missing", 0)):
        assert _python_calls_within(cache.ahead, key) == []


def _views(buffer: bytes, block: int) -> list[list[StoredBatch]]:
    """One block's batches a ``block`` bytes of ``buffer``: views of it,
    as parse_block makes them from a GET of several blocks."""
    return [
        [StoredBatch(0, 1, memoryview(buffer)[at : at + block])]
        for at in range(0, len(buffer), block)
    ]


def test_a_gets_buffer_is_counted_whole_while_any_of_its_blocks_is_cached() -> None:
    cache = BlockCache(16 * 1024)
    get = bytes(4096)  # one GET of four blocks
    for i, batches in enumerate(_views(get, 1024)):
        assert cache.claim(("get", i))
        cache.fulfil(("get", i), 1024, batches)
        # Each block keeps all of the GET's bytes: counted once, whole.
        assert cache.size == 4096
    for i in range(4):
        cache.get(("get", i), 1024, lambda: _batches("never"))  # read: evicted first
    cache.get(("other", 0), 12 * 1024, lambda: _batches("other"))
    assert cache.size == 16 * 1024
    cache.get(("other", 1), 1024, lambda: _batches("other"))
    # One more KiB: every block of the GET goes (an evicted one alone
    # frees nothing while its neighbours keep the buffer).
    assert not {("get", i) for i in range(4)} & _cached(cache)
    assert cache.size == 13 * 1024


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 7), st.booleans()),
        max_size=60,
    )
)
def test_the_bound_holds_for_the_bytes_cached_blocks_keep_alive(
    steps: list[tuple[int, int, bool]],
) -> None:
    # Blocks of four GETs (buffers of 8 blocks of 100 bytes) and blocks of
    # their own, inserted in any order: the cache's size is what its blocks
    # keep alive, each buffer once, and never more than its bound.
    cache = BlockCache(2000)
    gets = [bytes(800) for _ in range(4)]
    blocks = [_views(get, 100) for get in gets]
    for n, (get, block, alone) in enumerate(steps):
        key = (f"alone-{n}", 0) if alone else (f"get-{get}", block)
        batches = _batches("alone") if alone else blocks[get][block]
        cache.get(key, 100, lambda batches=batches: batches)  # type: ignore[misc]
        entries = [*cache._read.values(), *cache._unread.values()]
        held: dict[int, int] = {}
        own = 0
        for cached, size, _ in entries:
            payload = cached[0].payload
            if isinstance(payload, memoryview):
                owner = payload.obj
                assert isinstance(owner, bytes)
                held[id(owner)] = len(owner)
            else:
                own += size
        assert cache.size == own + sum(held.values()) <= cache.max_bytes


def _kept_alive(cache: BlockCache) -> int:
    """The bytes the cached blocks keep alive: each block's own where its
    batches hold their own bytes, each buffer they are views of once."""
    held: dict[int, int] = {}
    own = 0
    for cached, size, _ in (*cache._read.values(), *cache._unread.values()):
        owner = getattr(cached[0].payload, "obj", None)
        if owner is None:
            own += size
        else:
            held[id(owner)] = len(owner)
    return own + sum(held.values())


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["get", "ahead", "span"]), st.integers(0, 5), st.integers(0, 7)),
        max_size=80,
    )
)
def test_read_ahead_spans_and_reads_keep_the_bound_on_bytes_kept_alive(
    steps: list[tuple[str, int, int]],
) -> None:
    # Read-ahead fetches a span of blocks in one GET (claim, then fulfil
    # each block from one buffer), readers get blocks one GET each, and
    # read-ahead finds read blocks in its window again (ahead): whatever
    # the order, every buffer is counted once while any of its blocks is
    # cached, no more, and the bound holds for what is kept alive.
    cache = BlockCache(2400)
    for kind, obj, block in steps:
        key = (f"object-{obj}", block)
        if kind == "get":
            own = [StoredBatch(0, 1, bytes(100))]
            cache.get(key, 100, lambda own=own: own)  # type: ignore[misc]
        elif kind == "ahead":
            cache.ahead(key)
        else:
            claimed = [i for i in range(block, 8) if cache.claim((key[0], i))]
            buffer = bytes(100 * len(claimed))
            for n, i in enumerate(claimed):
                view = memoryview(buffer)[n * 100 : (n + 1) * 100]
                cache.fulfil((key[0], i), 100, [StoredBatch(0, 1, view)])
        assert cache.size == _kept_alive(cache) <= cache.max_bytes
        counted = {buffer_id for _, _, buffer_id in cache._unread.values()} | {
            buffer_id for _, _, buffer_id in cache._read.values()
        }
        assert set(cache._buffers) == counted - {0}
        assert not cache._loading
