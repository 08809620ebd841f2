"""An append's look at its stream's offsets (StreamStore.append_offsets)
takes no lock: the partition's lock orders the stream's appends, so its
next offset cannot move under the read, and a start moved by a
DeleteRecords racing the append is seen before or after the move, never
past the append's own base offset."""

from __future__ import annotations

import threading
from pathlib import Path

import engine
import native
from native import RecordSpec

NOW = 1_700_000_000_000


def _batch(value: bytes) -> bytes:
    return bytes(native.encode_batch([RecordSpec(NOW, None, value, ())]))


def test_append_offsets_reads_while_the_store_lock_is_held(tmp_path: Path) -> None:
    with engine.open(tmp_path / "node") as opened:
        opened.create_topic("t", 1)
        opened.submit("t", 0, _batch(b"one")).result(30)
        stream_id = opened.partition("t", 0).stream_id
        store = opened.store
        read: list[tuple[int, int]] = []
        reader = threading.Thread(target=lambda: read.append(store.append_offsets(stream_id)))
        with store._state.lock:  # held as a commit or an upload holds it
            reader.start()
            reader.join(30)
            answered_while_held = not reader.is_alive()
        reader.join(30)
        assert answered_while_held, "append_offsets waited for the store's lock"
        assert read == [(0, 1)]


def test_an_append_answers_a_log_start_the_stream_had(tmp_path: Path) -> None:
    with engine.open(tmp_path / "node") as opened:
        opened.create_topic("t", 1)
        opened.submit("t", 0, _batch(b"first")).result(30)
        stop = threading.Event()
        moved_to = [0]
        failed: list[BaseException] = []

        def delete_records() -> None:
            # A failure here would end the moves and leave the assertions
            # below checking appends that raced nothing: it fails the test.
            try:
                while not stop.is_set():
                    moved_to.append(opened.delete_records("t", 0, -1))
            except BaseException as error:
                failed.append(error)

        deleter = threading.Thread(target=delete_records)
        deleter.start()
        try:
            results = [opened.submit("t", 0, _batch(b"%d" % i)).result(30) for i in range(300)]
        finally:
            stop.set()
            deleter.join(30)
        assert not failed and not deleter.is_alive()
        assert len(moved_to) > 1, "no DeleteRecords ran beside the appends"
        starts = [result.log_start_offset for result in results]
        assert [result.base_offset for result in results] == list(range(1, 301))
        assert all(r.log_start_offset <= r.base_offset for r in results)
        assert starts == sorted(starts)  # a log start never goes back
        assert set(starts) <= set(moved_to)
