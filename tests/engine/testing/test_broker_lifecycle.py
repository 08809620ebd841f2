"""engine.testing's broker leaves nothing behind and takes little: after
close no thread, no listening port and no directory of its remain (also
when the block raised); two brokers run side by side on their own ports
and data; an empty data directory on the small profile holds a few KiB
(the default profile preallocates two 64 MiB WAL segments)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import threading
from pathlib import Path

import pytest

import engine
from engine.engine import EngineConfig
from engine.testing import async_broker, broker, start
from tests.engine.helpers_records import run_child

SMALL_DIRECTORY_BYTES = 64 * 1024
"""An empty data directory on the small profile holds less than this."""


def bytes_on_disk(directory: str | Path) -> int:
    """Allocated bytes under ``directory`` (a preallocated segment counts in full)."""
    return sum(
        os.stat(os.path.join(root, name)).st_blocks * 512
        for root, _, names in os.walk(directory)
        for name in names
    )


def send(opened: engine.Engine, topic: str, value: bytes) -> None:
    with opened.producer() as producer:
        producer.send(topic, value).result(10)


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_close_leaves_no_thread_port_or_directory() -> None:
    before = set(threading.enumerate())
    with broker() as running:
        running.create_topic("t")
        send(running.engine, "t", b"v")
        port, data_dir = running.port, running.data_dir
        assert listening(port)
        assert os.path.isdir(data_dir)
    assert running.closed
    assert running.engine.closed
    assert not listening(port)
    assert not os.path.exists(data_dir)
    assert set(threading.enumerate()) - before == set()


def test_a_failing_block_still_cleans_up() -> None:
    before = set(threading.enumerate())
    with pytest.raises(RuntimeError, match="the test failed"), broker() as running:
        port, data_dir = running.port, running.data_dir
        raise RuntimeError("the test failed")
    assert not listening(port)
    assert not os.path.exists(data_dir)
    assert set(threading.enumerate()) - before == set()


def test_the_async_broker_cleans_up_too() -> None:
    async def scenario() -> tuple[int, str]:
        async with async_broker() as running:
            assert listening(running.port)
            return running.port, running.data_dir

    before = set(threading.enumerate())
    port, data_dir = asyncio.run(scenario())
    assert not listening(port)
    assert not os.path.exists(data_dir)
    assert set(threading.enumerate()) - before == set()


def test_two_brokers_side_by_side_keep_their_own_data() -> None:
    with broker() as first, broker() as second:
        assert first.port != second.port
        assert first.data_dir != second.data_dir
        first.create_topic("only-in-first")
        send(first.engine, "only-in-first", b"one")
        assert "only-in-first" in first.engine.list_topics()
        assert "only-in-first" not in second.engine.list_topics()
        assert listening(first.port)
        assert listening(second.port)


def test_a_given_data_directory_is_kept_and_reopens(tmp_path: Path) -> None:
    directory = tmp_path / "data"
    with broker(data_dir=str(directory), object_store=f"file://{tmp_path}/objects") as running:
        running.create_topic("kept")
        send(running.engine, "kept", b"durable")
    assert directory.is_dir()
    with broker(data_dir=str(directory), object_store=f"file://{tmp_path}/objects") as again:
        consumer = again.engine.consumer()
        consumer.assign([("kept", 0)])
        consumer.seek_to_beginning()
        assert [r.value for r in consumer.poll(10)] == [b"durable"]
        consumer.close()


def test_an_empty_data_directory_on_the_small_profile_holds_a_few_kib(tmp_path: Path) -> None:
    small = tmp_path / "small"
    with engine.open(small, "memory://", EngineConfig.small()):
        assert bytes_on_disk(small) < SMALL_DIRECTORY_BYTES
    with broker() as running:
        assert bytes_on_disk(running.data_dir) < SMALL_DIRECTORY_BYTES


def test_the_default_profile_preallocates_its_wal(tmp_path: Path) -> None:
    """The contrast the small profile is for: the bound above is not vacuous."""
    default = tmp_path / "default"
    with engine.open(default, "memory://", EngineConfig()):
        assert bytes_on_disk(default) >= EngineConfig().store.wal_segment_bytes


def test_start_without_a_block_is_closed_by_its_caller() -> None:
    running = start(auto_create_topics=False)
    try:
        assert running.engine.config.auto_create_topics is False
        assert repr(running).startswith(f"TestBroker({running.bootstrap}, running")
    finally:
        running.close()
    running.close()  # a second close does nothing
    assert "closed" in repr(running)


def test_a_close_cut_short_is_finished_by_the_next() -> None:
    """A close cut short in the engine's close (docs/design/0113) leaves
    the data directory to the engine still open in it; the next close
    finishes the engine's close, then removes the directory, and the
    exit hook finds nothing left to close."""
    done = run_child(
        [sys.executable, str(Path(__file__).with_name("child_broker_closes_twice.py"))]
    )
    closes = json.loads(done.stdout)
    assert closes["first"] == {
        "raised": "the close was cut short",
        "directory": True,
        "engine_closed": False,
        "left_to_the_exit_hook": True,
    }
    assert closes["second"] == {
        "directory": False,
        "engine_closed": True,
        "left_to_the_exit_hook": False,
    }
    assert "WARNING" not in done.stderr


def test_a_server_stop_cut_short_is_finished_by_the_next() -> None:
    """The server's stop failing leaves its loop running, and the next
    close stops the server on it: no listening port, no thread, no
    directory."""
    before = set(threading.enumerate())
    running = start()
    stop = running._server.stop
    calls = 0

    async def cut_short_once() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the stop was cut short")
        await stop()

    running._server.stop = cut_short_once  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="cut short"):
        running.close()
    assert running.closed
    assert os.path.isdir(running.data_dir)  # the engine closed, the broker not yet
    running.close()
    assert calls == 2
    assert not listening(running.port)
    assert not os.path.exists(running.data_dir)
    assert set(threading.enumerate()) - before == set()


def test_a_server_stop_that_timed_out_is_cancelled_and_finished_by_the_next() -> None:
    """A stop still running on the loop when the close gave up on it is
    cancelled, so the next close resumes the stop rather than running a
    second one beside it."""
    running = start()
    stop = running._server.stop
    first_cancelled = threading.Event()
    calls = 0

    async def hangs_once() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            try:
                await asyncio.Event().wait()  # never set
            except asyncio.CancelledError:
                first_cancelled.set()
                raise
        await stop()

    running._server.stop = hangs_once  # type: ignore[method-assign]
    running._timeout = 0.2  # the wait given up on at once, the loop left running
    with pytest.raises(TimeoutError):
        running.close()
    assert first_cancelled.wait(10)
    running._timeout = 30.0
    running.close()
    assert calls == 2
    assert not listening(running.port)
    assert not os.path.exists(running.data_dir)
