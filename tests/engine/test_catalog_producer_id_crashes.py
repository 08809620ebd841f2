"""Producer ids across crashes among block reservations and snapshots:
blocks reserved while a snapshot is packed (which they never wait for),
snapshots in one record or in parts, and a crash at each point of what
was written. After it, no id is handed out twice: every id handed out before
the crash is below the end a reopened catalog resumes at."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import hypothesis.strategies as st
import msgpack
import pytest
from hypothesis import given, settings

from engine import catalog as catalog_module
from engine.catalog import Catalog, CatalogState, start_damage
from s3stream import AppendOptions

JOIN_S = 10.0
"""How long ids taken during a packing may take: far more than they need
(a block write waiting for the packing never ends while it is held)."""


class EventLog:
    """A store whose appends are durable as they are submitted, and which
    notes every append and trim in order: a crash keeps any prefix of them
    (a WAL's torn tail cut; a trim is made only after what it trims to is
    durable)."""

    def __init__(self, max_append_bytes: int) -> None:
        self.max_append_bytes = max_append_bytes
        self.events: list[tuple[str, Any]] = []
        self._end = 0

    def next_offset(self, stream_id: int) -> int:
        return self._end

    def submit(
        self,
        stream_id: int,
        base_offset: int,
        last_offset: int,
        payload: bytes,
        options: AppendOptions,
    ) -> Future[int]:
        assert base_offset == self._end, "an append at an offset another took"
        self.events.append(("append", bytes(payload)))
        self._end += 1
        durable: Future[int] = Future()
        durable.set_result(self._end)
        return durable

    def trim(self, stream_id: int, offset: int) -> None:
        self.events.append(("trim", offset))

    @contextlib.contextmanager
    def gathered(self) -> Iterator[None]:
        yield


def reread(events: list[tuple[str, Any]]) -> CatalogState:
    """The state a reopened catalog reads from what a crash kept."""
    kept: list[bytes] = []
    start = 0
    for kind, value in events:
        if kind == "append":
            kept.append(value)
        else:
            start = max(start, value)
    state = CatalogState()
    records = [msgpack.unpackb(p, raw=False, strict_map_key=False) for p in kept[start:]]
    for record in records:
        state.apply(record)
    state.log_ended()
    damage = start_damage(1, records[0] if records else None, state)
    assert damage is None, damage
    return state


class PackingState(CatalogState):
    """Runs ``during_packing`` once the snapshot has turned the state to its
    wire form, under the catalog's lock: the blocks it takes are past the
    end the snapshot holds."""

    during_packing: Callable[[], None] | None = None

    def to_wire(self) -> dict[str, Any]:
        wire = super().to_wire()
        during, self.during_packing = self.during_packing, None
        if during is not None:
            during()
        return wire


def taken_meanwhile(taker: threading.Thread) -> None:
    """Ids taken on another thread while the packing goes on: a block they
    reserve must not wait for it."""
    taker.start()
    taker.join(JOIN_S)
    assert not taker.is_alive(), "a block waited for the snapshot's packing"


steps = st.lists(
    st.one_of(
        st.tuples(st.just("ids"), st.integers(1, 5)),
        st.tuples(st.just("change"), st.integers(1, 150)),
        st.tuples(st.just("snapshot"), st.integers(0, 5)),
    ),
    min_size=1,
    max_size=25,
)


@pytest.mark.parametrize("max_append_bytes", [1 << 20, 256], ids=["one-record", "in-parts"])
@settings(max_examples=60, deadline=None)
@given(steps=steps, block=st.integers(1, 4))
def test_no_id_is_handed_out_twice_across_a_crash_among_blocks_and_snapshots(
    max_append_bytes: int, steps: list[tuple[str, int]], block: int
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(catalog_module, "PRODUCER_ID_BLOCK", block)
        # Snapshots only where the steps take them, on this thread.
        patch.setattr(catalog_module, "SNAPSHOT_EVERY", 10**9)
        store = EventLog(max_append_bytes)
        state = PackingState()
        catalog = Catalog(store, 1, state)  # type: ignore[arg-type]
        catalog.append(["catalog", catalog_module.FORMAT_VERSION, 0])
        handed: list[tuple[int, int]] = []
        """(events written when the id was handed out, the id)"""

        def take(count: int) -> None:
            for _ in range(count):
                producer_id = catalog.allocate_producer_id()
                handed.append((len(store.events), producer_id))

        for n, (kind, size) in enumerate(steps):
            if kind == "ids":
                take(size)
            elif kind == "change":
                catalog.append(["internal_stream", f"s{n}" + "x" * size, n])
            else:
                taker = threading.Thread(target=take, args=(size,), name="taker", daemon=True)
                state.during_packing = functools.partial(taken_meanwhile, taker)
                catalog._snapshotting = True  # claimed, as a write that made it due does
                catalog._snapshot()
                assert not taker.is_alive()
        ids = [producer_id for _, producer_id in handed]
        assert len(set(ids)) == len(ids), "an id was handed out twice before the crash"
        for crash in range(len(store.events) + 1):  # every point a crash may cut at
            before = [producer_id for written, producer_id in handed if written <= crash]
            reopened = reread(store.events[:crash])
            assert all(producer_id < reopened.producer_ids_end for producer_id in before), (
                f"ids {before} handed out before the crash at event {crash}, "
                f"the next after it {reopened.producer_ids_end}"
            )
            # Nor after it: a catalog reopened on what the crash kept goes
            # on from there.
            again = Catalog(EventLog(max_append_bytes), 1, reopened)  # type: ignore[arg-type]
            after = [again.allocate_producer_id() for _ in range(block + 1)]
            assert not set(after) & set(before)
