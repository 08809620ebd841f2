"""A close cut short at any of its steps, called again, finishes: the data
directory opens again in the same process with every acknowledged record
(docs/design/0113).

The steps are found by running a close and recording every step it passes
(wal/closing.py's ``run_step``), not listed here: a step added to any layer
is interrupted in turn too. The interrupt is the one mock: raised where
the step would start, or once it has run but before it is marked done (a
step that is not atomic may be cut short anywhere in it, and is run again).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple
from unittest import mock

import pytest

import engine
from tests.engine.helpers_records import read_partition
from tests.server.in_process import InProcessServer
from wal import closing
from wal.directory_lock import lock_directory
from wal.errors import LogLocked

TIMEOUT = 30.0
EMBEDDED = [f"embedded-{i}".encode() for i in range(40)]
WIRE = [f"wire-{i}".encode() for i in range(40)]


class Step(NamedTuple):
    name: str
    """``owner.step``, as wal/closing.py's run_step is told it."""
    atomic: bool


class Served(NamedTuple):
    engine: engine.Engine
    server: InProcessServer


def _open(root: Path) -> engine.Engine:
    return engine.open(root / "node", f"file://{root / 'bucket'}")


def _close(served: Served) -> None:
    """The close an embedding process makes: the server's stop, then the engine's."""
    asyncio.run_coroutine_threadsafe(served.server.server.stop(), served.server.loop).result(
        TIMEOUT
    )
    served.engine.close()


@contextmanager
def _steps_seen(
    interrupt: Callable[[Step, Callable[[], None]], Callable[[], None]] | None = None,
) -> Iterator[tuple[list[Step], set[str]]]:
    """Records every step run (and those marked done); ``interrupt`` may
    replace a step's marking of itself done."""
    run, run_async = closing.run_step, closing.run_step_async
    seen: list[Step] = []
    done: set[str] = set()

    def recording(
        owner: str,
        name: str,
        action: Callable[[], object],
        mark_done: Callable[[], None],
        atomic: bool,
    ) -> None:
        step = Step(f"{owner}.{name}", atomic)
        seen.append(step)

        def marked() -> None:
            mark_done()
            done.add(step.name)

        run(owner, name, action, interrupt(step, marked) if interrupt else marked, atomic)

    async def recording_async(
        owner: str, name: str, action: Callable[[], Awaitable[object]]
    ) -> None:
        step = Step(f"{owner}.{name}", False)
        seen.append(step)
        marking = interrupt(step, lambda: None) if interrupt else (lambda: None)
        await run_async(owner, name, action)
        marking()
        done.add(step.name)

    with (
        mock.patch.object(closing, "run_step", recording),
        mock.patch.object(closing, "run_step_async", recording_async),
    ):
        yield seen, done


def _close_order() -> list[Step]:
    """The steps of a served engine's close, in order, as a close runs them."""
    with tempfile.TemporaryDirectory() as root:
        opened = _open(Path(root))
        served = Served(opened, InProcessServer(opened))
        with _steps_seen() as (seen, _):
            _close(served)
        _stop_loop(served.server)
    return seen


def _stop_loop(server: InProcessServer) -> None:
    server.loop.call_soon_threadsafe(server.loop.stop)
    server.thread.join(TIMEOUT)
    server.loop.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "step" in metafunc.fixturenames:
        steps = _close_order_cached()
        assert len({s.name for s in steps}) == len(steps), "a step's name is used twice"
        cases = [(s, "before") for s in steps] + [(s, "after") for s in steps if not s.atomic]
        metafunc.parametrize(
            ("step", "where"), cases, ids=[f"{s.name}-{where}" for s, where in cases]
        )


def _produce(served: Served) -> None:
    """Both kinds of producer, each record acknowledged before the close."""
    from kafka import KafkaProducer

    served.engine.create_topic("t", 1)
    with served.engine.producer() as producer:
        for value in EMBEDDED:
            producer.send("t", value).result(TIMEOUT)
    wire = KafkaProducer(acks="all", bootstrap_servers=served.server.bootstrap)
    try:
        for value in WIRE:
            wire.send("t", value).get(TIMEOUT)
    finally:
        wire.close()


def _interrupt_at(
    step: Step, where: str
) -> Callable[[Step, Callable[[], None]], Callable[[], None]]:
    """Raises at ``step`` (once): KeyboardInterrupt in the engine's layers,
    a cancellation in the server's stop (an event loop's task is cancelled
    by asyncio.run's first Ctrl-C)."""
    raised = False
    error: type[BaseException] = (
        asyncio.CancelledError if step.name.startswith("Server.") else KeyboardInterrupt
    )

    def interrupt(seen: Step, mark_done: Callable[[], None]) -> Callable[[], None]:
        def marking() -> None:
            nonlocal raised
            if seen == step and not raised:
                raised = True
                raise error
            mark_done()

        return marking

    if where == "before":

        def before(seen: Step, mark_done: Callable[[], None]) -> Callable[[], None]:
            nonlocal raised
            if seen == step and not raised:
                raised = True
                raise error
            return mark_done

        return before
    return interrupt


def test_a_close_cut_short_at_any_step_is_finished_by_the_next(
    tmp_path: Path, step: Step, where: str
) -> None:
    opened = _open(tmp_path)
    served = Served(opened, InProcessServer(opened))
    _produce(served)
    wal_directory = opened.store.wal.directory
    with (
        _steps_seen(_interrupt_at(step, where)) as (first, done_first),
        pytest.raises(
            (KeyboardInterrupt, asyncio.CancelledError, concurrent.futures.CancelledError)
        ),
    ):
        _close(served)
    assert step in first
    # The engine's close began unless the server's stop was cut short.
    assert opened.closed is (not step.name.startswith("Server."))
    if "WriteAheadLog.directory lock" not in done_first:
        # The WAL is not closed yet: its directory is still this engine's.
        with pytest.raises(LogLocked):
            lock_directory(wal_directory)
    with _steps_seen() as (second, _):
        _close(served)
    names_second = [s.name for s in second]
    # The parts closed are not closed again; the parts left are closed.
    assert not done_first & set(names_second), done_first & set(names_second)
    assert done_first | set(names_second) == {s.name for s in _close_order_cached()}
    assert step.name in names_second
    _stop_loop(served.server)
    opened.close()  # a third close has nothing left to do

    reopened = _open(tmp_path)
    try:
        values = [r.value for r in read_partition(reopened, "t", 0)]
        offsets = [r.offset for r in read_partition(reopened, "t", 0)]
    finally:
        reopened.close()
    assert values == EMBEDDED + WIRE
    assert offsets == list(range(len(EMBEDDED) + len(WIRE)))


_ORDER: list[Step] = []


def _close_order_cached() -> list[Step]:
    if not _ORDER:
        _ORDER.extend(_close_order())
    return _ORDER


def test_a_close_without_upload_cut_short_and_finished_by_a_plain_close_uploads_nothing(
    tmp_path: Path,
) -> None:
    """``close(flush=False)`` says the cache is not to be uploaded (the WAL
    keeps it): the close that finishes it, the exit hook's plain ``close()``
    among them, neither uploads nor checkpoints."""
    opened = _open(tmp_path)
    opened.create_topic("t", 1)
    with opened.producer() as producer:
        for value in EMBEDDED:
            producer.send("t", value).result(TIMEOUT)
    with (
        _steps_seen(_interrupt_at(Step("Engine.groups", False), "before")),
        pytest.raises(KeyboardInterrupt),
    ):
        opened.close(flush=False)
    with _steps_seen() as (second, _):
        opened.close()
    names = [s.name for s in second]
    assert "StreamStore.upload" not in names
    assert "Engine.checkpoint" not in names
    report = opened.close_report
    assert report is not None
    assert not report.uploaded
    assert report.reason == "closed without uploading"

    reopened = _open(tmp_path)
    try:
        assert [r.value for r in read_partition(reopened, "t", 0)] == EMBEDDED
    finally:
        reopened.close()
