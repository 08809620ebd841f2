"""Closing a store stops its uploader however the two interleave: a close
that lands between the uploader's look at the stop flag and its wait must
still end the wait, not leave close waiting out the upload interval."""

from __future__ import annotations

import threading
from pathlib import Path

from s3stream import StreamStore, StreamStoreConfig
from s3stream.store import MemoryStore

STEP_TIMEOUT_S = 10.0
"""A bound on each wait of the test; close needs no more than an instant."""


def test_a_close_between_the_uploaders_stop_check_and_its_wait_ends_the_wait(
    tmp_path: Path,
) -> None:
    config = StreamStoreConfig(upload_interval_s=3600, compaction_interval_s=3600)
    store = StreamStore.open(tmp_path / "data", MemoryStore(), config)
    state = store._state
    stop = state.stop
    checked, proceed = threading.Event(), threading.Event()
    real_is_set = stop.is_set

    def is_set_then_pause() -> bool:
        """The uploader's look at the flag, held until the close is done."""
        seen = real_is_set()
        if threading.current_thread().name == "s3stream-upload" and not checked.is_set():
            checked.set()
            proceed.wait(STEP_TIMEOUT_S)
        return seen

    stop.is_set = is_set_then_pause  # type: ignore[method-assign]
    with state.lock:
        state.changed.notify_all()  # the uploader wakes and looks at the flag again
    assert checked.wait(STEP_TIMEOUT_S), "the uploader did not look at its stop flag"

    closer = threading.Thread(target=store.close, kwargs={"flush": False}, name="closer")
    closer.start()
    try:
        assert stop.wait(STEP_TIMEOUT_S), "close did not set the stop flag"
        with state.lock:  # close's notify, made under the lock, has happened
            pass
        proceed.set()  # the uploader goes on with the flag it saw: not set
        closer.join(STEP_TIMEOUT_S)
        assert not closer.is_alive(), "close waited on an uploader that missed the stop"
    finally:
        proceed.set()
        with state.lock:
            state.changed.notify_all()  # frees an uploader that missed the stop
        closer.join(STEP_TIMEOUT_S)
