"""A consumer's offsets in its group: committing them (as a member of the
group's generation when subscribed, else from outside the group) and
reading the committed ones back."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from engine.client.membership import group_error
from engine.client.poll_steps import RETRY_BACKOFF_S
from engine.errors import EngineError, GroupCoordinatorClosed, UnknownPartition, UnknownTopic
from engine.protocol.kafka_code import KafkaCode
from engine.types import OffsetAndMetadata, TopicPartition

if TYPE_CHECKING:
    from engine.client.group_member import GroupMember
    from engine.client.host import ClientHost

log = logging.getLogger("tidelog.consumer")

Offsets = (
    Mapping[TopicPartition, int | OffsetAndMetadata]
    | Mapping[tuple[str, int], int | OffsetAndMetadata]
)


class OffsetCommits:
    """The offsets of one consumer in group ``group_id``."""

    def __init__(
        self, host: ClientHost, group_id: str, member: GroupMember | None, read_committed: bool
    ) -> None:
        self._host = host
        self.group_id = group_id
        self._member = member
        self._read_committed = read_committed
        self.last_committed: dict[TopicPartition, int] = {}
        """What this consumer last committed per partition (auto-commit skips
        a position that has not moved)."""

    def commit(self, offsets: Offsets) -> Future[dict[TopicPartition, OffsetAndMetadata]]:
        """Commits as a member of the group's generation when subscribed,
        else from outside the group (accepted while it has no members)."""
        wanted = {
            TopicPartition(*tp): om if isinstance(om, OffsetAndMetadata) else OffsetAndMetadata(om)
            for tp, om in offsets.items()
        }
        result: Future[dict[TopicPartition, OffsetAndMetadata]] = Future()
        result.set_running_or_notify_cancel()
        if not wanted:
            result.set_result({})
            return result
        member = self._member
        if member is not None and member.subscribed:
            generation, member_id, instance_id = member.commit_identity()
        else:
            generation, member_id, instance_id = -1, "", None
        answer = self._host.groups.commit_offsets(
            self.group_id, generation, member_id, instance_id, wanted
        )

        def done(answered: Future[dict[TopicPartition, KafkaCode]]) -> None:
            try:
                codes = answered.result()
            except BaseException as error:
                result.set_exception(error)
                return
            failed = {tp: code for tp, code in codes.items() if code != KafkaCode.NONE}
            for tp, om in wanted.items():
                if tp not in failed:
                    self.last_committed[tp] = om.offset
            if failed:
                result.set_exception(self._commit_error(failed))
            else:
                result.set_result(wanted)

        answer.add_done_callback(done)
        return result

    def _commit_error(self, failed: Mapping[TopicPartition, KafkaCode]) -> EngineError:
        tp, code = next(iter(sorted(failed.items())))
        if code == KafkaCode.COORDINATOR_NOT_AVAILABLE and self._host.closed:
            # The engine closed after the commit found it open: the group
            # coordinator answered what it answers a wire client, which
            # retries elsewhere; an embedded caller stops (docs/design/0109).
            return GroupCoordinatorClosed()
        if code == KafkaCode.UNKNOWN_TOPIC_OR_PARTITION:
            count = len(self._host.topic_partitions([tp.topic]))
            if count == 0:
                return UnknownTopic(tp.topic)
            return UnknownPartition(tp.topic, tp.partition, count)
        names = ", ".join(f"{t.topic}-{t.partition}" for t in sorted(failed))
        return group_error(code, f"group {self.group_id}: committing {names} failed")

    def auto_commit(
        self, positions: Mapping[TopicPartition, int]
    ) -> Future[dict[TopicPartition, OffsetAndMetadata]] | None:
        """Commits the positions that changed since the last commit
        (failures are logged); None if there is nothing to commit."""
        offsets = {
            tp: offset for tp, offset in positions.items() if self.last_committed.get(tp) != offset
        }
        if not offsets:
            return None
        try:
            future = self.commit(offsets)
        except EngineError as error:
            log.info("group %s: auto-commit skipped: %s", self.group_id, error)
            return None
        future.add_done_callback(self._log_commit_failure)
        return future

    def _log_commit_failure(self, future: Future[Any]) -> None:
        error = future.exception()
        if error is not None:
            log.warning("group %s: auto-commit failed: %s", self.group_id, error)

    def committed(
        self, partitions: Iterable[TopicPartition | tuple[str, int]], timeout: float
    ) -> dict[TopicPartition, OffsetAndMetadata | None]:
        """The committed offset of each partition (None: none). Read
        committed, an offset a transaction has pending is waited for (up to
        ``timeout``, then UnstableOffsetCommit)."""
        wanted = [TopicPartition(*tp) for tp in partitions]
        clock = self._host.clock
        deadline = clock.monotonic() + timeout
        while True:
            answer = self._host.groups.fetch_offsets(
                self.group_id, wanted, require_stable=self._read_committed
            )
            unstable = any(code == KafkaCode.UNSTABLE_OFFSET_COMMIT for _, code in answer.values())
            if not unstable or clock.monotonic() >= deadline:
                break
            time.sleep(RETRY_BACKOFF_S)
        found: dict[TopicPartition, OffsetAndMetadata | None] = {}
        for tp, (offset, code) in answer.items():
            if code != KafkaCode.NONE:
                raise group_error(code, f"{tp.topic}-{tp.partition}: no committed offset")
            found[tp] = offset
        return found

    def committed_offset(self, tp: TopicPartition) -> int | None:
        """Where the group has ``tp`` (None: nowhere); raises
        UnstableOffsetCommit, read committed, while a transaction holds it."""
        found, code = self._host.groups.fetch_offsets(
            self.group_id, [tp], require_stable=self._read_committed
        )[tp]
        if code != KafkaCode.NONE:
            raise group_error(code, f"{tp.topic}-{tp.partition}: reading the committed offset")
        return None if found is None else found.offset
