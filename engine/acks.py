"""When a produce is acknowledged: the future an append hands back, which
resolves once its batches are as durable as the topic promises (in the
local WAL, or in an object committed to the object store), and the answer
to a producer's retry of a batch already appended."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any

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
    ) -> Coroutine[Any, Any, AppendResult]:
        """Appends to ``leader`` now; the coroutine finishes once durable."""
        with store_errors():
            result, stored = leader.submit_async(records, remote, provenance, one_batch)
        return self._durable_async(leader, result, stored, remote)

    async def _durable_async(
        self,
        leader: Partition,
        result: AppendResult,
        stored: Coroutine[Any, Any, int] | None,
        remote: bool | None,
    ) -> AppendResult:
        if stored is not None:
            with store_errors():
                await stored
            return result
        return await asyncio.wrap_future(self._retry_durable(leader, result, remote))

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
