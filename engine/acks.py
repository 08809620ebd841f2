"""When a produce is acknowledged: the future an append hands back, which
resolves once its batches are as durable as the topic promises (in the
local WAL, or in an object committed to the object store), and the answer
to a producer's retry of a batch already appended."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future

from engine.data_waiters import DataWaiters
from engine.partition import AppendResult, Partition
from engine.provenance import Provenance
from engine.store_errors import store_errors, translate, translate_optional
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
        with store_errors():
            result, stored = leader.submit(records, remote, provenance, one_batch)
        if stored is None:  # a retry: answered once the original is durable
            return self._retry_durable(leader, result, remote)
        done: Future[AppendResult] = Future()
        done.set_running_or_notify_cancel()

        def durable(future: Future[int]) -> None:
            error = future.exception()
            _settle(done, result, None if error is None else translate(error))

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
        """Appends to ``leader`` now; the future resolves once durable.
        A future settled by the store's callback, not a coroutine: a
        Produce request would wrap a coroutine in a Task of its own."""
        with store_errors():
            result, stored = leader.submit_async(records, remote, provenance, one_batch)
        if stored is None:  # a retry: answered once the original is durable
            return asyncio.wrap_future(self._retry_durable(leader, result, remote))
        done: asyncio.Future[AppendResult] = stored.get_loop().create_future()

        def durable(future: asyncio.Future[int]) -> None:
            if done.cancelled():
                return
            if future.cancelled():
                done.cancel()
            elif (error := future.exception()) is not None:
                failure = translate(error)
                if failure is not error:
                    failure.__cause__ = error
                done.set_exception(failure)
            else:
                done.set_result(result)

        stored.add_done_callback(durable)
        return done

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
                _settle(done, result, error)
                return
            try:
                uploaded = self.store.when_remote(leader.stream_id, result.last_offset + 1)
            except S3StreamError as failure:
                _settle(done, result, translate(failure))
                return
            uploaded.add_done_callback(
                lambda f: _settle(done, result, translate_optional(f.exception()))
            )

        self.waiters.when_durable(leader, result.last_offset, locally_durable)
        return done


def _settle(done: Future[AppendResult], result: AppendResult, error: BaseException | None) -> None:
    if error is None:
        done.set_result(result)
    else:
        done.set_exception(error)
