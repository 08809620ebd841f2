"""Reading one partition's committed records in order until its end, with
a bound on how long it may go without news."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

from engine import clock
from engine.mirror.errors import ClusterUnavailable, named
from engine.types import TopicPartition

_BATCH = 500
_POLL_S = 0.2


def same_record(source: Any, target: Any) -> bool:
    """Whether a mirrored record on the target is the source's: key, value,
    headers, and the timestamp unless the target stamps its own
    (LogAppendTime), in order."""
    if source.key() != target.key() or source.value() != target.value():
        return False
    if (source.headers() or []) != (target.headers() or []):
        return False
    target_type, target_time = target.timestamp()
    return bool(target_type == _LOG_APPEND_TIME or source.timestamp()[1] == target_time)


_LOG_APPEND_TIME = 2  # confluent_kafka.TIMESTAMP_LOG_APPEND_TIME


class PartitionReader:
    """Committed records of one partition from an offset, through a consumer
    of its own (reader_config)."""

    def __init__(
        self, kafka: Any, config: dict[str, Any], tp: TopicPartition, start: int, stall_s: float
    ) -> None:
        self.tp = tp
        self._consumer = kafka.Consumer(config)
        self._consumer.assign([kafka.TopicPartition(tp.topic, tp.partition, start)])
        self._stall_s = stall_s
        self._buffered: deque[Any] = deque()
        self.end: int | None = None
        """The offset of the last end of partition seen (past markers)."""

    def records(self, until_end_at: int | None = None) -> Iterator[Any]:
        """Records until the partition's end: the first end of partition at
        or past ``until_end_at`` (or the first one at all)."""
        while True:
            record = self.next(until_end_at)
            if record is None:
                return
            yield record

    def next(self, until_end_at: int | None = None) -> Any:
        """The next record, or None at the partition's end."""
        deadline = clock.monotonic() + self._stall_s
        while True:
            while self._buffered:
                item = self._buffered.popleft()
                if isinstance(item, int):  # an end of partition, at that offset
                    self.end = item
                    if until_end_at is None or item >= until_end_at:
                        return None
                    continue
                return item
            if clock.monotonic() > deadline:
                raise ClusterUnavailable(
                    f"{named(self.tp)}: no records nor end in {self._stall_s:g} s"
                )
            for message in self._consumer.consume(_BATCH, _POLL_S):
                error = message.error()
                if error is None:
                    self._buffered.append(message)
                elif error.code() == _PARTITION_EOF:
                    self._buffered.append(int(message.offset()))
                elif error.fatal():
                    raise ClusterUnavailable(f"{named(self.tp)}: {error.str()}")

    def close(self) -> None:
        self._consumer.close()


_PARTITION_EOF = -191  # confluent_kafka.KafkaError._PARTITION_EOF
