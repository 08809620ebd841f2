"""Engine.submit_async: appends from an event loop, answered through an
asyncio future the store's call settles (no task or coroutine per append),
give the answers the thread-side submit gives, in flight or not; and so
does Engine.submit_then, which answers through the caller's call."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

import engine
import native
from engine import AppendResult, Engine
from native import RecordSpec
from s3stream import StreamStoreConfig

TS = 1_700_000_000_000
QUIET = engine.EngineConfig(
    checkpoint_interval_s=3600,
    cleaner_interval_s=3600,
    # Small segments: a close uploads, trims and has the WAL zero-fill a spare
    # segment, and waits for it; at the default size that wait was most of
    # an example's time.
    store=StreamStoreConfig(
        upload_interval_s=3600, compaction_interval_s=3600, wal_segment_bytes=256 * 1024
    ),
)
PARTITIONS = 2
TIMEOUT = 30

Answer = tuple[str, object]
"""("appended", AppendResult), or where it was refused and with what:
("raised", name) at the call, ("failed", name) through the future."""

# One append: (partition, kind). "plain" has no producer; "next" is the
# partition's idempotent producer's next batch, "retry" its last one again
# (a duplicate, answered with the original's offsets), "gap" a batch a
# sequence number ahead (refused: out of order), "bad" a batch whose CRC is
# wrong (refused at the call).
Step = tuple[int, str]
steps = st.lists(
    st.tuples(
        st.integers(0, PARTITIONS - 1), st.sampled_from(["plain", "next", "retry", "gap", "bad"])
    ),
    min_size=1,
    max_size=24,
)


class Batches:
    """The batches a run of steps sends, made the same for either engine."""

    def __init__(self, producer_id: int) -> None:
        self.producer_id = producer_id
        self.sent = [0] * PARTITIONS
        """The next sequence number of each partition's producer."""

    def make(self, partition: int, kind: str, step: int) -> bytes:
        spec = [RecordSpec(TS + step, b"k", b"value %d" % step)] * (1 + step % 3)
        if kind == "plain":
            return native.encode_batch(spec)
        if kind == "bad":
            broken = bytearray(native.encode_batch(spec))
            broken[-1] ^= 0xFF  # a record's byte: the CRC no longer matches
            return bytes(broken)
        sequence = self.sent[partition]
        if kind == "retry":
            sequence = max(sequence - 1, 0)
            spec = [RecordSpec(TS, b"k", b"retried %d" % sequence)]
        elif kind == "gap":
            sequence += 2
            spec = [RecordSpec(TS, b"k", b"gap")]
        else:
            spec = [RecordSpec(TS, b"k", b"retried %d" % sequence)]
            self.sent[partition] += 1
        return native.encode_batch(
            spec, producer_id=self.producer_id, producer_epoch=0, base_sequence=sequence
        )


def _open(directory: Path) -> Engine:
    opened = engine.open(directory, config=QUIET)
    opened.create_topic("t", PARTITIONS)
    return opened


def _through_submit(opened: Engine, batches: list[tuple[int, bytes]]) -> list[Answer]:
    answers: list[Answer] = []
    for partition, data in batches:
        try:
            future = opened.submit("t", partition, data)
        except engine.EngineError as error:
            answers.append(("raised", type(error).__name__))
            continue
        try:
            answers.append(("appended", future.result(timeout=TIMEOUT)))
        except engine.EngineError as error:
            answers.append(("failed", type(error).__name__))
    return answers


def _through_submit_async(
    opened: Engine, batches: list[tuple[int, bytes]], in_flight: bool
) -> list[Answer]:
    async def main() -> list[Answer]:
        answers: list[Answer | asyncio.Future[AppendResult]] = []
        for partition, data in batches:
            try:
                future = opened.submit_async("t", partition, data)
            except engine.EngineError as error:
                answers.append(("raised", type(error).__name__))
                continue
            if in_flight:
                answers.append(future)  # awaited once every step is sent
            else:
                answers.append(await _answer(future))
        return [
            await _answer(answer) if isinstance(answer, asyncio.Future) else answer
            for answer in answers
        ]

    return asyncio.run(main())


def _through_submit_then(opened: Engine, batches: list[tuple[int, bytes]]) -> list[Answer]:
    """Every step sent before any is answered; a call that came before
    submit_then returned, or off the loop's thread, is answered "early"."""

    async def main() -> list[Answer]:
        loop = asyncio.get_running_loop()
        answers: list[Answer | asyncio.Future[Answer]] = []
        for partition, data in batches:
            answered: asyncio.Future[Answer] = loop.create_future()
            returned = [False]

            def then(
                result: AppendResult,
                error: BaseException | None,
                answered: asyncio.Future[Answer] = answered,
                returned: list[bool] = returned,
            ) -> None:
                if not returned[0] or asyncio.get_running_loop() is not loop:
                    answered.set_result(("early", result))
                elif error is None:
                    answered.set_result(("appended", result))
                else:
                    answered.set_result(("failed", type(error).__name__))

            try:
                opened.submit_then("t", partition, data, then)
            except engine.EngineError as error:
                answers.append(("raised", type(error).__name__))
                continue
            returned[0] = True
            answers.append(answered)
        return [
            await asyncio.wait_for(answer, TIMEOUT)
            if isinstance(answer, asyncio.Future)
            else answer
            for answer in answers
        ]

    return asyncio.run(main())


async def _answer(future: asyncio.Future[AppendResult]) -> Answer:
    try:
        return ("appended", await asyncio.wait_for(future, TIMEOUT))
    except engine.EngineError as error:
        return ("failed", type(error).__name__)


def _run(
    directory: Path, run: list[Step], through: Callable[[Engine, list[tuple[int, bytes]]], object]
) -> tuple[object, list[tuple[int, int]]]:
    opened = _open(directory)
    try:
        made = Batches(opened.init_producer_id()[0])
        batches = [(p, made.make(p, kind, i)) for i, (p, kind) in enumerate(run)]
        answers = through(opened, batches)
        return answers, [opened.offsets("t", p) for p in range(PARTITIONS)]
    finally:
        opened.close()


@settings(max_examples=20, deadline=None)
@given(run=steps, in_flight=st.booleans())
def test_submit_async_answers_as_submit_does(run: list[Step], in_flight: bool) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        expected = _run(Path(scratch) / "threads", run, _through_submit)
        found = _run(
            Path(scratch) / "loop",
            run,
            lambda opened, batches: _through_submit_async(opened, batches, in_flight),
        )
    assert found == expected


@settings(max_examples=20, deadline=None)
@given(run=steps)
def test_submit_then_answers_as_submit_does(run: list[Step]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        expected = _run(Path(scratch) / "threads", run, _through_submit)
        found = _run(Path(scratch) / "loop", run, _through_submit_then)
    assert found == expected


def test_a_cancelled_wait_leaves_the_append(tmp_path: Path) -> None:
    opened = _open(tmp_path / "node")
    try:

        async def main() -> AppendResult:
            first = opened.submit_async("t", 0, native.encode_batch([RecordSpec(TS, b"k", b"a")]))
            first.cancel()  # the wait, not the append
            second = opened.submit_async("t", 0, native.encode_batch([RecordSpec(TS, b"k", b"b")]))
            return await asyncio.wait_for(second, TIMEOUT)

        assert asyncio.run(main()).base_offset == 1
        assert opened.offsets("t", 0) == (0, 2)
        stored = opened.fetch("t", 0, 0).records
        values = [r.value for batch in stored for r in native.decode_records(batch)]
        assert values == [b"a", b"b"]
    finally:
        opened.close()
