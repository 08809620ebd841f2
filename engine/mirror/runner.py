"""The mirror's loop: one session copies every matching topic from the
source to the target, partition for partition, until told to stop (or, with
``once``, until every partition reached the end it had when the session
began); a session that loses the target starts over from what the target
holds (docs/design/0008-mirror.md).

A cycle reads up to a batch of committed source records and sends them;
while the target acknowledges them, the next cycle reads and sends its own.
Cycles finish in order: a cycle waits for the target to acknowledge all of
its records, writes the offset syncs their runs need and waits for those,
and only then saves the progress that depends on them. A crash anywhere
leaves progress at or behind the target; the next session reads the
target's tail back (engine/mirror/tail.py).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from engine import clock
from engine.mirror import checkpoints, topics
from engine.mirror.checkpoints import Mirrored
from engine.mirror.errors import ClusterUnavailable, MaskedSource
from engine.mirror.kafka import (
    REQUEST_TIMEOUT_S,
    broker_error,
    client_config,
    confluent,
    reader_config,
)
from engine.mirror.masked import masked_topics
from engine.mirror.offset_sync import OffsetSync
from engine.mirror.progress import PartitionProgress, ProgressStore
from engine.mirror.reading import Cluster, ClusterReadError
from engine.mirror.settings import MirrorSettings
from engine.mirror.sync_log import load_syncs, syncs_for, translation_of
from engine.mirror.tail import Sides, recover_partition, watermarks
from engine.mirror.target import Delivery, Target
from engine.types import TopicPartition

log = logging.getLogger("tidelog.mirror")

BATCH_RECORDS = 10_000
"""Records read from the source per cycle."""
PIPELINE_CYCLES = 2
"""Cycles whose records may be on their way to the target at once: the
next cycle's records are read and sent while the target acknowledges the
previous cycle's. So a crash leaves at most PIPELINE_CYCLES * BATCH_RECORDS
records for the next session to read back from the target."""
_POLL_S = 0.2
_SOURCE_READS = {"fetch.wait.max.ms": "100"}
"""The longest a source broker holds a fetch with nothing new: it is also
how long the mirror takes to learn a partition reached its end (librdkafka
reports the end with a fetch's answer; 500 ms by default), which ends
``once`` and moves progress past trailing markers. The source's own
properties may set it otherwise."""
_RETRY_FIRST_S = 0.5
_RETRY_MOST_S = 15.0
GIVE_UP_S = 300.0
MASKING_RECHECK_TOPICS = 64
"""Copied topics whose masking is checked again at each topic refresh."""
"""How long ``once`` keeps retrying a target that copies nothing."""
_PARTITION_EOF = -191


@dataclass
class MirrorReport:
    """What a mirror did, for the command line and tests."""

    copied: int = 0
    syncs: int = 0
    matched: int = 0
    """Records found on the target past saved progress (not sent again)."""
    sessions: int = 0
    checkpoints: dict[str, dict[TopicPartition, int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Cycle:
    """Records sent to the target and not yet finished, and the source ends
    read with them (progress moves past those only after the records)."""

    delivery: Delivery | None
    ends: dict[TopicPartition, int]

    @property
    def acknowledged(self) -> bool:
        return self.delivery is None or self.delivery.complete


@dataclass(slots=True)
class _Partition:
    mirrored: Mirrored
    delta: int | None
    written: set[tuple[int, int]]
    """Syncs already on the target, as (source, target) offsets."""


class MirrorRunner:
    """Runs sessions until stopped; ``stop`` may be set from any thread."""

    def __init__(self, settings: MirrorSettings, *, once: bool = False) -> None:
        self.settings = settings
        self.once = once
        self.stop = threading.Event()
        self.report = MirrorReport()
        self._kafka: Any = None

    def run(self) -> MirrorReport:
        self._kafka = confluent()
        s = self.settings
        log.info("mirroring %s from %s to %s", s.topics, s.source, s.target)
        wait_s = _RETRY_FIRST_S
        last_progress = clock.monotonic()
        while not self.stop.is_set():
            before = self.report.copied + self.report.matched
            try:
                self.report.sessions += 1
                try:
                    if _Session(self).run():
                        return self.report
                except (self._kafka.KafkaException, TimeoutError) as error:
                    # A client call's own failure (no answer, a broker gone):
                    # the session starts over, as when the target is lost.
                    raise ClusterUnavailable(broker_error(error) or "no answer") from error
                except ClusterReadError as error:  # reading the target's syncs
                    raise ClusterUnavailable(str(error)) from error
            except ClusterUnavailable as error:
                if self.report.copied + self.report.matched > before:
                    last_progress = clock.monotonic()
                    wait_s = _RETRY_FIRST_S
                if self.once and clock.monotonic() - last_progress > GIVE_UP_S:
                    raise
                log.warning("mirror: %s; starting over from the target in %.1f s", error, wait_s)
                self.stop.wait(wait_s)
                wait_s = min(wait_s * 2, _RETRY_MOST_S)
        return self.report


class _Session:
    def __init__(self, runner: MirrorRunner) -> None:
        self.runner = runner
        self.settings = runner.settings
        self.kafka = runner._kafka
        self.report = runner.report
        s = self.settings
        self.sides = Sides(self.kafka, s.source, s.source_config, s.target, s.target_config)
        self.partitions: dict[TopicPartition, _Partition] = {}
        self.target_topics: dict[str, int] = {}
        self.syncs: dict[TopicPartition, list[OffsetSync]] = {}
        self._recheck_from = 0
        """Where the next check of copied topics' masking starts."""
        self._describes: bool | None = None

    def run(self) -> bool:
        """True when ``once`` is done; False when stopped."""
        kafka, s = self.kafka, self.settings
        self.source_admin = kafka.admin.AdminClient(client_config(s.source, s.source_config))
        self.target_admin = kafka.admin.AdminClient(client_config(s.target, s.target_config))
        self.consumer = kafka.Consumer(
            reader_config(s.source, {**_SOURCE_READS, **s.source_config}, "tidelog.mirror")
        )
        self.target_reader = kafka.Consumer(
            reader_config(s.target, s.target_config, "tidelog.mirror")
        )
        self.store = ProgressStore(kafka, s.target, s.target_config)
        self.target = Target(kafka, s.target, s.target_config)
        try:
            return self._copy()
        finally:
            self.target.close()
            self.store.close()
            self.consumer.close()
            self.target_reader.close()

    def _copy(self) -> bool:
        self.target_topics = topics.target_partitions(self.kafka, self.target_admin)
        topics.ensure_target_topics(self.kafka, self.target_admin, [], self.target_topics)
        self.syncs = load_syncs(
            Cluster(self.settings.target, self.settings.target_config), timeout=REQUEST_TIMEOUT_S
        )
        self._add_topics()
        at_end: set[TopicPartition] = set()
        pending: deque[_Cycle] = deque()
        next_refresh = clock.monotonic() + self.settings.topic_refresh_s
        next_checkpoint = clock.monotonic() + self.settings.checkpoint_interval_s
        while not self.runner.stop.is_set():
            # The next records are read while the target acknowledges the
            # previous cycle's (sent, not yet waited for).
            records, ends = self._poll()
            if records or ends:
                pending.append(_Cycle(self.target.start(records) if records else None, ends))
            self.target.serve()
            # Cycles finish in order; the oldest is waited for once the
            # pipeline is full, and all of them when the source had nothing
            # new (there is nothing to read meanwhile).
            while pending and (
                not records or len(pending) >= PIPELINE_CYCLES or pending[0].acknowledged
            ):
                self._finish(pending.popleft(), at_end)
            now = clock.monotonic()
            if self.runner.once:
                if not pending and at_end >= set(self.partitions):
                    self._checkpoint()
                    return True
                continue
            if now >= next_refresh:
                self._drain(pending, at_end)
                self._add_topics()
                next_refresh = now + self.settings.topic_refresh_s
            if now >= next_checkpoint:
                self._drain(pending, at_end)
                self._checkpoint()
                next_checkpoint = now + self.settings.checkpoint_interval_s
        # Stopped: what was sent is finished, so the next session has no
        # tail to read back.
        self._drain(pending, at_end)
        return False

    def _drain(self, pending: deque[_Cycle], at_end: set[TopicPartition]) -> None:
        while pending:
            self._finish(pending.popleft(), at_end)

    def _finish(self, cycle: _Cycle, at_end: set[TopicPartition]) -> None:
        """Waits for a cycle's records, writes the syncs they need and waits
        for those, then saves the progress they cover."""
        changed = self._copied(self.target.copied(cycle.delivery)) if cycle.delivery else set()
        for tp, end in cycle.ends.items():
            at_end.add(tp)
            part = self.partitions[tp]
            if end > part.mirrored.progress.source_position:
                part.mirrored.progress = _moved(part.mirrored.progress, end)
                changed.add(tp)
        if changed:
            self.store.save({tp: self.partitions[tp].mirrored.progress for tp in changed})

    def _check_copied_unmasked(self) -> None:
        """Raises MaskedSource when the source now masks a topic this
        session copies in clear (masking rules set after the topic was
        first seen), unless masked copies are meant: its next records would
        be masks. Up to MASKING_RECHECK_TOPICS topics a refresh, in turn,
        so that a mirror of many topics does not describe them all every
        few seconds."""
        if self.settings.masked_copies:
            return
        copied = sorted({tp.topic for tp in self.partitions})
        if not copied or not self._source_describes():
            return
        start = self._recheck_from % len(copied)
        batch = (copied[start:] + copied[:start])[:MASKING_RECHECK_TOPICS]
        self._recheck_from = start + len(batch)
        masked = masked_topics(self.kafka, self.source_admin, batch, REQUEST_TIMEOUT_S)
        if masked:
            raise MaskedSource(masked)

    def _source_describes(self) -> bool:
        """Whether the source describes configs (one without a controller,
        as librdkafka's mock cluster, does not: nothing is masked there)."""
        if self._describes is None:
            metadata = self.source_admin.list_topics(timeout=REQUEST_TIMEOUT_S)
            self._describes = metadata.controller_id in metadata.brokers
        return self._describes

    def _add_topics(self) -> None:
        """Recovers and assigns the partitions of matching topics not yet
        copied (all of them, the first time)."""
        found = topics.source_topics(self.kafka, self.source_admin, self.settings)
        self._check_copied_unmasked()
        unseen = {
            name: count
            for name, count in found.items()
            if any(TopicPartition(name, p) not in self.partitions for p in range(count))
        }
        if not unseen:
            return
        new = topics.with_configs(self.kafka, self.source_admin, unseen)
        masked = [t.name for t in new if t.masked]
        if masked and not self.settings.masked_copies:
            raise MaskedSource(masked)
        for name in masked:
            log.warning("%s: copying it masked, as the source serves it (masked copies)", name)
        grown = topics.ensure_target_topics(self.kafka, self.target_admin, new, self.target_topics)
        for name in grown:
            # Every client of the session learns of the new partitions now,
            # not at its next periodic metadata refresh.
            self.target.learn(name)
            self.target_reader.list_topics(name, timeout=REQUEST_TIMEOUT_S)
            self.consumer.list_topics(name, timeout=REQUEST_TIMEOUT_S)
        tps = [TopicPartition(t.name, p) for t in new for p in range(t.partitions)]
        tps = [tp for tp in tps if tp not in self.partitions]
        saved = self.store.load(tps)
        assignment = []
        recovered_progress = {}
        recovered_syncs = {}
        for tp in tps:
            syncs = self.syncs.get(tp, [])
            translation = translation_of(syncs)
            progress = saved.get(tp) or self._fresh(tp)
            delta = _delta_at(syncs, progress.last_source)
            _, target_high = watermarks(self.kafka, self.target_reader, tp)
            recovered = recover_partition(self.sides, tp, progress, target_high, delta)
            written = {(x.source_offset, x.target_offset) for x in syncs}
            fresh_syncs = [
                x for x in recovered.syncs if (x.source_offset, x.target_offset) not in written
            ]
            part = _Partition(
                Mirrored(
                    recovered.progress, translation, syncs[0].target_offset if syncs else None
                ),
                recovered.delta,
                written,
            )
            self.partitions[tp] = part
            recovered_syncs[tp] = fresh_syncs
            if recovered.progress != progress or tp not in saved:
                recovered_progress[tp] = recovered.progress
            self.report.matched += recovered.matched
            if recovered.matched:
                log.info("%s: %d records were on the target already", tp, recovered.matched)
            assignment.append(
                self.kafka.TopicPartition(
                    tp.topic, tp.partition, recovered.progress.source_position
                )
            )
        self._record_syncs(recovered_syncs)
        self.store.save(recovered_progress)
        self.consumer.incremental_assign(assignment)

    def _fresh(self, tp: TopicPartition) -> PartitionProgress:
        """Progress of a partition never copied: from the source's log start
        to the target's."""
        source_low, _ = watermarks(self.kafka, self.consumer, tp)
        target_low, _ = watermarks(self.kafka, self.target_reader, tp)
        return PartitionProgress(source_low, -1, target_low)

    def _poll(self) -> tuple[list[Any], dict[TopicPartition, int]]:
        """Up to a batch of the source's records, and the partitions whose
        end was reached (with that end). Waits up to _POLL_S for the first
        record only, then takes what the consumer already holds: a batch
        never waits for records still to come while some are at hand."""
        first = self.consumer.poll(_POLL_S)
        if first is None:
            return [], {}
        messages = [first, *self.consumer.consume(BATCH_RECORDS - 1, 0)]
        records = [message for message in messages if message.error() is None]
        ends: dict[TopicPartition, int] = {}
        if len(records) == len(messages):
            return records, ends
        for message in messages:
            error = message.error()
            if error is None:
                continue
            if error.code() == _PARTITION_EOF:
                ends[TopicPartition(message.topic(), message.partition())] = message.offset()
            elif error.fatal():
                raise ClusterUnavailable(f"reading the source: {error.str()}")
            else:
                log.debug("source: %s", error.str())
        return records, ends

    def _copied(self, copied: dict[TopicPartition, list[tuple[int, int]]]) -> set[TopicPartition]:
        """Writes the syncs of records the target acknowledged and moves
        their partitions' progress past them (not yet saved)."""
        syncs = {}
        for tp, pairs in copied.items():
            part = self.partitions[tp]
            syncs[tp], part.delta = syncs_for(tp, part.delta, pairs)
        self._record_syncs(syncs)
        for tp, pairs in copied.items():
            part = self.partitions[tp]
            last_source, last_target = pairs[-1]
            progress = part.mirrored.progress
            part.mirrored.progress = PartitionProgress(
                max(progress.source_position, last_source + 1), last_source, last_target + 1
            )
            self.report.copied += len(pairs)
        return set(copied)

    def _record_syncs(self, syncs: dict[TopicPartition, list[OffsetSync]]) -> None:
        """Writes syncs to the target (waiting for them), then adds them to
        what the mirror knows."""
        every = [sync for part_syncs in syncs.values() for sync in part_syncs]
        if not every:
            return
        self.target.send_syncs(every)
        for tp, part_syncs in syncs.items():
            part = self.partitions[tp]
            for sync in part_syncs:
                part.mirrored.translation.add(sync)
                part.written.add((sync.source_offset, sync.target_offset))
                if part.mirrored.first_target is None:
                    part.mirrored.first_target = sync.target_offset
        self.report.syncs += len(every)

    def _checkpoint(self) -> None:
        try:
            done = checkpoints.checkpoint(
                self.kafka,
                self.source_admin,
                self.settings,
                {tp: part.mirrored for tp, part in self.partitions.items()},
            )
        except ClusterUnavailable as error:
            if self.runner.once:
                # The last checkpoint, the one a move to the target relies
                # on: the run starts over (copying nothing twice) rather
                # than end with the groups' offsets left behind.
                raise
            # Copying goes on; the next checkpoint tries again.
            log.warning("checkpoint failed: %s", error)
            return
        for group, offsets in done.items():
            self.report.checkpoints.setdefault(group, {}).update(offsets)


def _moved(progress: PartitionProgress, end: int) -> PartitionProgress:
    """Progress past markers and aborted records up to the source's end."""
    return PartitionProgress(end, progress.last_source, progress.target_next)


def _delta_at(syncs: list[OffsetSync], source_offset: int) -> int | None:
    """Target minus source offset of the mirrored record at
    ``source_offset``: that of the last sync at or below it."""
    delta = None
    for sync in syncs:
        if sync.source_offset <= source_offset:
            delta = sync.target_offset - sync.source_offset
    return delta
