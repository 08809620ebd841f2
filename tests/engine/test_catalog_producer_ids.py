"""Producer ids: the catalog hands an id out only once a durable
``producer_ids`` record covers it, so a crash can never hand it out again."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import ClassVar

from engine.catalog import PRODUCER_ID_BLOCK, Catalog, CatalogState
from s3stream import AppendOptions


class HeldAppends:
    """A store whose appends become durable only when the test says so: the
    window between a record's apply and its durability, which a real WAL
    keeps open for one group commit."""

    max_append_bytes = 1 << 20

    def __init__(self) -> None:
        self.offset = 0
        self.appends: list[Future[int]] = []
        self.submitted = threading.Event()

    def next_offset(self, stream_id: int) -> int:
        return self.offset

    def submit(
        self,
        stream_id: int,
        base_offset: int,
        last_offset: int,
        payload: bytes,
        options: AppendOptions,
    ) -> Future[int]:
        self.offset += 1
        durable: Future[int] = Future()
        self.appends.append(durable)
        self.submitted.set()
        return durable


class GatedState(CatalogState):
    """Holds each named thread's read of producer_ids_end until its gate
    opens (or a second passes: a gate that cannot open under the code's
    locking must not hang the test)."""

    gates: ClassVar[dict[str, Callable[[], bool]]] = {}

    @property  # type: ignore[override]
    def producer_ids_end(self) -> int:
        gate = self.gates.get(threading.current_thread().name)
        if gate is not None:
            for _ in range(100):
                if gate():
                    break
                threading.Event().wait(0.01)
        return self._end

    @producer_ids_end.setter
    def producer_ids_end(self, value: int) -> None:
        self._end = value


def test_an_id_is_handed_out_only_once_the_block_covering_it_is_durable() -> None:
    store = HeldAppends()
    state = GatedState()
    catalog = Catalog(store, 1, state)  # type: ignore[arg-type]
    # The interleaving that loses an id: the first caller takes id 0, the
    # second takes id 1, the first applies the block covering both, and the
    # second reads that not yet durable block as covering its id.
    GatedState.gates = {
        "first": lambda: catalog._next_producer_id >= 2,
        "second": store.submitted.is_set,
    }
    ids: dict[str, int] = {}

    def allocate(name: str) -> None:
        ids[name] = catalog.allocate_producer_id()

    threads = [
        threading.Thread(target=allocate, args=(name,), name=name, daemon=True)
        for name in ("first", "second")
    ]
    for thread in threads:
        thread.start()
    try:
        assert store.submitted.wait(10)
        threads[1].join(0.5)
        assert "second" not in ids, "an id was handed out before the block covering it was durable"
    finally:
        # Each caller may append a block of its own, one after the other:
        # make every append durable until both have their ids.
        for _ in range(1000):
            for append in list(store.appends):
                if not append.done():
                    append.set_result(1)
            alive = [thread for thread in threads if thread.is_alive()]
            if not alive:
                break
            alive[0].join(0.01)
    assert sorted(ids.values()) == [0, 1], ids
    assert state.producer_ids_end >= PRODUCER_ID_BLOCK
