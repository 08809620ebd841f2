"""The engine's background work: checkpointing the partitions whose
checkpoint is due (producer state, time index; docs/design/0128),
running the log cleaner over compacted topics and removing expired
delegation tokens, each on its interval, on one daemon thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import NamedTuple

from engine import clock
from engine.clock import SYSTEM, Clock
from engine.errors import EngineError
from engine.log_cleaner import LogCleaner
from engine.partition import CHECKPOINT_NEEDED, Partition
from engine.topics import TopicRegistry
from s3stream import AppendTooLarge, S3StreamError, StreamStore

log = logging.getLogger("tidelog.engine")

EXPIRY_CHECK_INTERVAL_MS = 600_000
"""How often every partition is looked at for expired producers (Kafka's
producer.id.expiration.check.interval.ms); a checkpoint written expires
them too, but one of a partition nothing changed is not written."""


class CheckpointCadence(NamedTuple):
    """When a partition's checkpoint is due (docs/design/0128): what a
    checkpoint buys is a recovery that replays only the batches after it,
    so it follows the bytes appended, not the clock."""

    partition_bytes: int
    """A partition with this many bytes appended since its last checkpoint
    is checkpointed at the next look."""
    replay_bytes: int
    """Past this many bytes appended since their last checkpoints over all
    partitions, the ones with the most are checkpointed until half of it
    is left: a recovery's replay is bounded by this, however many
    partitions share it."""
    max_interval_ms: int
    """A partition appended to is checkpointed at least this often."""


class Maintenance:
    def __init__(
        self,
        registry: TopicRegistry,
        lock: threading.RLock,
        store: StreamStore,
        cleaner: LogCleaner,
        *,
        checkpoint_interval_s: float,
        checkpoint_cadence: CheckpointCadence,
        cleaner_interval_s: float,
        producer_id_expiration_ms: int,
        token_sweep: Callable[[], object] = lambda: None,
        token_sweep_interval_s: float = 3600.0,
        engine_clock: Clock = SYSTEM,
    ) -> None:
        self.registry = registry
        self.lock = lock
        self.store = store
        self.cleaner = cleaner
        self.checkpoint_interval_s = checkpoint_interval_s
        """How often partitions are looked at for a checkpoint due."""
        self.cadence = checkpoint_cadence
        self.cleaner_interval_s = cleaner_interval_s
        self.producer_id_expiration_ms = producer_id_expiration_ms
        self._engine_clock = engine_clock
        """The partitions' clock, which producers' idle times are counted by."""
        self._next_expiry_check_ms = 0
        self.token_sweep = token_sweep
        self.token_sweep_interval_s = token_sweep_interval_s
        self._stop = threading.Event()
        # A daemon thread, so a script that raises with the engine open still
        # exits; engine/exit_close.py closes what is left open.
        self._thread = threading.Thread(target=self._loop, name="tidelog-engine", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stops the thread and waits for the work under way to finish."""
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        next_checkpoint = clock.monotonic() + self.checkpoint_interval_s
        next_clean = clock.monotonic() + self.cleaner_interval_s
        next_sweep = clock.monotonic() + self.token_sweep_interval_s
        while not self._stop.wait(0.2):
            now = clock.monotonic()
            try:
                if now >= next_checkpoint:
                    self.checkpoint_due()
                    next_checkpoint = now + self.checkpoint_interval_s
                if now >= next_clean:
                    self.clean()
                    next_clean = clock.monotonic() + self.cleaner_interval_s
                if now >= next_sweep:
                    next_sweep = now + self.token_sweep_interval_s
                    self.token_sweep()
            except (S3StreamError, EngineError) as error:
                if self.store.fenced:
                    log.error("engine fenced by a newer owner of the storage: %s", error)
                    return
                log.warning("background work failed, will retry: %s", error)
            except Exception:
                log.exception("background work failed, will retry")

    def checkpoint(self) -> None:
        """Checkpoints every partition that changed (producer state, time
        index), after forgetting expired producers if a look is due: what a
        flush and a close ask for."""
        self._checkpoint_all(self._partitions())

    def checkpoint_due(self) -> int:
        """Checkpoints the partitions whose checkpoint is due by the cadence
        (docs/design/0128), after forgetting expired producers if a look is
        due; returns how many were due."""
        partitions = self._partitions()
        now = self._engine_clock.time_ms()
        cadence = self.cadence
        due: list[Partition] = []
        waiting: list[tuple[int, Partition]] = []
        unsaved_total = 0
        for partition in partitions:
            unsaved = partition.checkpoint_pending(now, cadence.max_interval_ms)
            if unsaved == CHECKPOINT_NEEDED or unsaved >= cadence.partition_bytes:
                due.append(partition)
            elif unsaved > 0:
                waiting.append((unsaved, partition))
                unsaved_total += unsaved
        if unsaved_total > cadence.replay_bytes:
            # Down to half, not just under: else every look past the budget
            # would checkpoint a few partitions, each for a few bytes.
            waiting.sort(key=lambda item: item[0], reverse=True)
            for unsaved, partition in waiting:
                if unsaved_total <= cadence.replay_bytes // 2:
                    break
                due.append(partition)
                unsaved_total -= unsaved
        self._checkpoint_all(due)
        return len(due)

    def _partitions(self) -> list[Partition]:
        """Every partition, after forgetting expired producers if a look is
        due (what they forgot is then due for a checkpoint)."""
        with self.lock:
            partitions = list(self.registry.by_stream.values())
        now = self._engine_clock.time_ms()
        if now >= self._next_expiry_check_ms:
            self._next_expiry_check_ms = now + EXPIRY_CHECK_INTERVAL_MS
            for partition in partitions:
                partition.expire_producers(self.producer_id_expiration_ms)
        return partitions

    def _checkpoint_all(self, partitions: list[Partition]) -> None:
        pending = [self._checkpoint(p) for p in partitions]
        for future in pending:
            if future is not None:
                future.result()

    def _checkpoint(self, partition: Partition) -> Future[int] | None:
        """One partition's checkpoint: one the store refuses as too large
        (past one record it is written in parts, so only when not even a
        part's framing fits) is that partition's to miss (logged), not the
        checkpoints after it."""
        try:
            return partition.checkpoint(self.producer_id_expiration_ms)
        except AppendTooLarge as error:
            log.warning("%s: its checkpoint was not written: %s", partition, error)
            return None

    def clean(self) -> int:
        """Runs the log cleaner over compacted topics; returns partitions cleaned."""
        with self.lock:
            partitions = [
                p for t in self.registry.topics.values() if t.config.compact for p in t.partitions
            ]
        return sum(1 for p in partitions if self._clean(p))

    def _clean(self, partition: Partition) -> bool:
        """One partition's cleaning: one whose checkpoint (written before
        its rewrite) the store refuses as too large is left uncleaned
        (logged), not the partitions after it."""
        try:
            return self.cleaner.clean(partition)
        except AppendTooLarge as error:
            log.warning("%s: not cleaned, its checkpoint was not written: %s", partition, error)
            return False
