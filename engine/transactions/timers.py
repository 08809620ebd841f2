"""The coordinator's two timers, on one thread: open transactions past
their transaction.timeout.ms are aborted (Kafka's
abortTimedOutTransactions, every
transaction.abort.timed.out.transaction.cleanup.interval.ms, which also
retries completions that failed), and transactional ids unused for
transactional.id.expiration.ms are forgotten (every
transaction.remove.expired.transaction.cleanup.interval.ms).

Time comes from the injected clock; a ManualClock that jumps wakes the
thread, so tests drive the timers without sleeping.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from engine.clock import Clock
from engine.errors import EngineError
from engine.transactions.completion import TransactionCompleter
from engine.transactions.config import TransactionConfig
from engine.transactions.metadata import ENDABLE, TransactionMetadata, TxnState, fence
from engine.transactions.table import TransactionTable

log = logging.getLogger("tidelog.transactions")


class TransactionTimers:
    def __init__(
        self,
        config: TransactionConfig,
        clock: Clock,
        table: TransactionTable,
        completer: TransactionCompleter,
    ) -> None:
        self._clock = clock
        self._table = table
        self._completer = completer
        self.expiration_ms = config.transactional_id_expiration_ms
        self.abort_interval_s = (
            config.transaction_abort_timed_out_transaction_cleanup_interval_ms / 1000
        )
        self.expire_interval_s = (
            config.transaction_remove_expired_transaction_cleanup_interval_ms / 1000
        )
        self._stop = threading.Event()
        self._wake = threading.Event()
        """Set when the clock jumps (a ManualClock), so the timers re-read it."""
        clock.on_advance(self._wake.set)
        self._thread = threading.Thread(target=self._run, name="tidelog-txn-timer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        clock = self._clock
        next_abort = clock.monotonic() + self.abort_interval_s
        next_expire = clock.monotonic() + self.expire_interval_s
        while not self._stop.is_set():
            self._wake.wait(max(0.01, min(next_abort, next_expire) - clock.monotonic()))
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                if clock.monotonic() >= next_abort:
                    self.abort_timed_out()
                    self._completer.retry_incomplete()
                    next_abort = clock.monotonic() + self.abort_interval_s
                if clock.monotonic() >= next_expire:
                    self.remove_expired()
                    next_expire = clock.monotonic() + self.expire_interval_s
            except EngineError as error:
                log.warning("transaction timers: %s", error)
            except Exception:
                log.exception("transaction timers failed, will retry")

    def abort_timed_out(self) -> int:
        """Aborts every Ongoing transaction older than its timeout, bumping
        the epoch so its producer is fenced (as Kafka does); returns how many."""
        now = self._clock.time_ms()
        table = self._table
        aborting = []
        with table.lock:
            if table.closed:
                return 0
            for meta in table.states():
                if (
                    meta.state is TxnState.ONGOING
                    and not table.is_pending(meta.transactional_id)
                    and meta.start_ms + meta.timeout_ms < now
                ):
                    table.hold(meta.transactional_id)
                    aborting.append(fence(meta, now))
        for fenced in aborting:
            log.info(
                "aborting the transaction of %r (producer %d): it passed its timeout of %d ms",
                fenced.transactional_id,
                fenced.producer_id,
                fenced.timeout_ms,
            )
            table.write(fenced, self._after_abort(fenced), keep_pending=True)
        return len(aborting)

    def _after_abort(self, fenced: TransactionMetadata) -> Callable[[BaseException | None], None]:
        def then(error: BaseException | None) -> None:
            if error is None:
                self._completer.complete_later(fenced)
            else:
                log.warning("aborting %r failed, will retry: %s", fenced.transactional_id, error)

        return then

    def remove_expired(self) -> int:
        """Forgets transactional ids with no transaction in progress that
        were not used for ``transactional_id_expiration_ms``; returns how many."""
        cutoff = self._clock.time_ms() - self.expiration_ms
        table = self._table
        with table.lock:
            if table.closed:
                return 0
            expired = [
                meta
                for meta in table.states()
                if meta.state in ENDABLE
                and meta.update_ms <= cutoff
                and not table.is_pending(meta.transactional_id)
            ]
            for meta in expired:
                table.hold(meta.transactional_id)
        for meta in expired:
            table.remove(meta)
            log.info("transactional id %r expired", meta.transactional_id)
        return len(expired)
