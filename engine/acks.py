"""When a produce is acknowledged: the future an append hands back, which
resolves once its batches are as durable as the topic promises (in the
local WAL, or in an object committed to the object store), and the answer
to a producer's retry of a batch already appended."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial

from engine.append_settle import AppendSettle, engine_error
from engine.data_waiters import DataWaiters
from engine.partition import AppendResult, Partition
from engine.provenance import Provenance
from engine.store_errors import refused_append
from s3stream import S3StreamError, StreamStore


class Acks:
    def __init__(self, store: StreamStore, waiters: DataWaiters) -> None:
        self.store = store
        self.waiters = waiters

    def submit(
        self,
        leader: Partition,
        records: bytes | bytearray | memoryview,
        remote: bool | None,
        provenance: Provenance | None = None,
        one_batch: bool = False,
    ) -> Future[AppendResult]:
        """Appends to ``leader``; the future resolves once durable."""
        try:
            result, stored = leader.submit(records, remote, provenance, one_batch)
        except S3StreamError as error:  # store_errors(), with a deletion's answer
            raise refused_append(leader, error) from error
        if stored is None:  # a retry: answered once the original is durable
            return self._retry_durable(leader, result, remote)
        done: Future[AppendResult] = Future()
        done.set_running_or_notify_cancel()

        def durable(future: Future[int]) -> None:
            _settle(done, result, _failure(leader, future.exception()))

        stored.add_done_callback(durable)
        return done

    def submit_async(
        self,
        leader: Partition,
        records: bytes | bytearray | memoryview,
        remote: bool | None,
        provenance: Provenance | None = None,
        one_batch: bool = False,
    ) -> asyncio.Future[AppendResult]:
        """Appends to ``leader`` now; the asyncio future resolves once the
        append is durable. It is settled by the store's call (no task, no
        coroutine per append); cancelling it stops the wait, not the append."""
        done: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        settle = _SettleAsync(done, leader)
        try:
            result = leader.submit_then(records, settle, remote, provenance, one_batch)
        except S3StreamError as error:  # store_errors(), as submit_then spells it
            raise refused_append(leader, error) from error
        if result.duplicate:  # a retry: answered once the original is durable
            return asyncio.wrap_future(self._retry_durable(leader, result, remote))
        settle.result = result
        return done

    def submit_then(
        self,
        leader: Partition,
        records: bytes | bytearray | memoryview,
        settle: AppendSettle,
        remote: bool | None,
        provenance: Provenance | None = None,
        one_batch: bool = False,
    ) -> None:
        """submit_async for a caller that wants a call, not a future: its
        ``settle.result`` is set to the append's result, and
        ``settle.settle(None)`` is called on the loop once the append is
        durable, ``settle.settle(error)`` if it failed, never before this
        returns; a retry of a batch already appended is settled once the
        original is durable. Validation errors raise here. The Produce
        handler's one-partition path: its answer is the settle itself, and
        the store's and the WAL's waiter too (a DurableCall), with no
        future or object between the WAL and it."""
        settle.leader = leader  # for the answer to a failure (engine_error)
        try:
            result = leader.submit_then(records, settle, remote, provenance, one_batch)
        except S3StreamError as error:
            # store_errors() spelled out: its __enter__ and __exit__ are two
            # Python calls a Produce, and a try costs nothing until it catches.
            raise refused_append(leader, error) from error
        settle.result = result  # before any call: the store's comes on a later turn
        if result.duplicate:  # a retry: answered once the original is durable
            retried = asyncio.wrap_future(self._retry_durable(leader, result, remote))
            retried.add_done_callback(partial(_call_retried, settle))

    def _retry_durable(
        self, leader: Partition, result: AppendResult, remote: bool | None
    ) -> Future[AppendResult]:
        """A producer's retry of a batch already appended: answered once the
        original is as durable as the topic's acknowledgements promise."""
        done: Future[AppendResult] = Future()
        done.set_running_or_notify_cancel()
        wait_remote = leader.config.remote_acks if remote is None else remote

        def locally_durable(error: BaseException | None) -> None:
            if error is not None or not wait_remote:
                # The engine's error, as the original's: UnknownTopic over
                # its topic's deletion, a store's failure a storage error.
                _settle(done, result, _failure(leader, error))
                return
            try:
                uploaded = self.store.when_remote(leader.stream_id, result.last_offset + 1)
            except S3StreamError as failure:
                _settle(done, result, engine_error(leader, failure))
                return
            uploaded.add_done_callback(
                lambda f: _settle(done, result, _failure(leader, f.exception()))
            )

        self.waiters.when_durable(leader, result.last_offset, locally_durable)
        return done


class _SettleAsync(AppendSettle):
    """Settles an append's asyncio future from the store's call on the loop,
    with the engine's error for a store's (engine_error: UnknownTopic over
    the deletion of ``leader``'s topic)."""

    __slots__ = ("_done",)

    def __init__(self, done: asyncio.Future[AppendResult], leader: Partition) -> None:
        self._done = done
        self.leader = leader

    def settle(self, error: BaseException | None) -> None:
        if self._done.cancelled():
            return  # the caller stopped waiting; the append itself stays
        if error is None:
            self._done.set_result(self.result)
        else:
            self._done.set_exception(engine_error(self.leader, error))


AppendCall = Callable[[AppendResult, BaseException | None], None]
"""Called once an append is durable (``None``) or failed (its error)."""


class CallThen(AppendSettle):
    """An AppendSettle calling ``then(result, error)`` with the engine's
    error (Engine.submit_then's)."""

    __slots__ = ("_then",)

    def __init__(self, then: AppendCall) -> None:
        self._then = then

    def settle(self, error: BaseException | None) -> None:
        self._then(self.result, None if error is None else engine_error(self.leader, error))


def _call_retried(settle: AppendSettle, retried: asyncio.Future[AppendResult]) -> None:
    # Never cancelled: nothing else holds the wrapped future.
    settle.settle(retried.exception())


def _failure(leader: Partition, error: BaseException | None) -> BaseException | None:
    return None if error is None else engine_error(leader, error)


def _settle(done: Future[AppendResult], result: AppendResult, error: BaseException | None) -> None:
    if error is None:
        done.set_result(result)
    else:
        done.set_exception(error)
