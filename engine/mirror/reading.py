"""Reading a Kafka-compatible cluster one partition range at a time, with
confluent-kafka (the ``mirror`` extra, imported when a reader opens).

A :class:`ClusterReader` streams the records of a partition between two
offsets in order and then stops: at the end offset, or where the broker
says the partition ends (its high watermark; read committed: its last
stable offset). It holds no more than the client's fetch buffers, never a
partition. Every wait has a timeout: a read that gets nothing for
``timeout`` seconds while records are owed raises :class:`ReadStalled`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Generator, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

from engine.clock import monotonic
from engine.errors import EngineError
from engine.mirror.masked import masked_topics
from engine.protocol.kafka_code import KafkaCode

READ_COMMITTED = "read_committed"
READ_UNCOMMITTED = "read_uncommitted"
DEFAULT_TIMEOUT_S = 30.0
_BATCH = 500
"""Messages taken from the client per call: enough to keep the loop off
the per-call overhead, few enough to bound what one call holds."""


class ClusterReadError(EngineError):
    """The cluster answered a read with an error (its Kafka code in
    ``kafka_code``), or the client could not reach it."""

    code = KafkaCode.NETWORK_EXCEPTION

    def __init__(self, message: str, kafka_code: int = -1) -> None:
        super().__init__(message)
        self.kafka_code = kafka_code


class ReadStalled(ClusterReadError):
    """No record came for ``timeout`` seconds while some were owed."""

    code = KafkaCode.REQUEST_TIMED_OUT


def kafka() -> Any:
    """The confluent_kafka module; ImportError naming the extra without it."""
    try:
        import confluent_kafka  # noqa: PLC0415 - an optional extra
    except ImportError as error:  # pragma: no cover - depends on the installed extras
        raise ImportError(
            "reading another cluster needs confluent-kafka: pip install 'tidelog[mirror]'"
        ) from error
    return confluent_kafka


@dataclass(frozen=True)
class Cluster:
    """A cluster to read: its bootstrap servers and client properties
    (``security.protocol``, ``sasl.*``, ``ssl.*``, ...), passed to
    librdkafka as given. Its repr shows the bootstrap only: the
    properties may hold secrets."""

    bootstrap: str
    properties: Mapping[str, str] = field(default_factory=dict, repr=False)

    def client_config(self) -> dict[str, str]:
        return {**self.properties, "bootstrap.servers": self.bootstrap}


@dataclass(frozen=True, slots=True)
class Record:
    """A record as read: where it is and what a copy must keep."""

    offset: int
    leader_epoch: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]


def _record(message: Any) -> Record:
    epoch = message.leader_epoch()
    return Record(
        message.offset(),
        -1 if epoch is None else epoch,
        message.timestamp()[1],
        message.key(),
        message.value(),
        tuple(message.headers() or ()),
    )


class ClusterReader:
    """A consumer outside any group that reads ranges of partitions."""

    def __init__(
        self,
        cluster: Cluster,
        *,
        isolation_level: str = READ_COMMITTED,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.cluster = cluster
        self.timeout = timeout
        module = kafka()
        self._kafka = module
        config: dict[str, Any] = {
            "log_level": 3,
            **cluster.client_config(),
            # Assigned partitions only: the id is needed by the client, and
            # nothing is ever committed under it.
            "group.id": f"tidelog-mirror-read-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": isolation_level,
            # A start below the log start is an error, never a silent skip.
            "auto.offset.reset": "error",
            # A fetch left waiting at a partition's end holds the connection
            # until it returns: the next range's first fetch waits behind it.
            "fetch.wait.max.ms": 20,
        }
        try:
            self._consumer = module.Consumer(config)
        except module.KafkaException as error:
            raise ClusterReadError(f"{cluster.bootstrap}: {_reason(error)}") from error

    def topics(self, pattern: str | None = None) -> dict[str, int]:
        """Topic -> partition count, for the topics whose whole name matches
        ``pattern`` (all when None; internal ``__`` topics never)."""
        metadata = self._call(lambda: self._consumer.list_topics(timeout=self.timeout))
        matcher = re.compile(pattern) if pattern is not None else None
        found: dict[str, int] = {}
        for name, topic in metadata.topics.items():
            if topic.error is not None or name.startswith("__"):
                continue
            if matcher is None or matcher.fullmatch(name):
                found[name] = len(topic.partitions)
        return dict(sorted(found.items()))

    def masked_topics(self, names: list[str]) -> list[str]:
        """The topics among ``names`` the cluster masks for this reader's
        principal (engine/mirror/masked.py); none on a cluster without a
        controller to describe configs (librdkafka's mock cluster)."""
        admin = self._kafka.admin.AdminClient({"log_level": 3, **self.cluster.client_config()})
        metadata = self._call(lambda: admin.list_topics(timeout=self.timeout))
        if metadata.controller_id not in metadata.brokers:
            return []
        return masked_topics(self._kafka, admin, names, self.timeout)

    def partition_count(self, topic: str) -> int | None:
        """The topic's partition count; None if the cluster has no such topic."""
        metadata = self._call(lambda: self._consumer.list_topics(topic, timeout=self.timeout))
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            return None
        return len(found.partitions)

    def watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        """(log start offset, high watermark)."""
        tp = self._kafka.TopicPartition(topic, partition)
        low, high = self._call(
            lambda: self._consumer.get_watermark_offsets(tp, timeout=self.timeout)
        )
        return int(low), int(high)

    def records(
        self, topic: str, partition: int, start: int, end: int | None = None
    ) -> Generator[Record, None, None]:
        """The records of the partition from ``start`` (inclusive) up to
        ``end`` (exclusive) or the partition's end, in offset order."""
        if end is not None and end <= start:
            return
        start_at = self._kafka.TopicPartition(topic, partition, start)
        self._call(lambda: self._consumer.assign([start_at]))
        try:
            deadline = monotonic() + self.timeout
            while True:
                messages: list[Any] = self._call(self._next_messages)
                if not messages and monotonic() > deadline:
                    raise ReadStalled(
                        f"{self.cluster.bootstrap} {topic}:{partition}: nothing read in "
                        f"{self.timeout:g} s from offset {start}"
                    )
                for message in messages:
                    if message.topic() != topic or message.partition() != partition:
                        continue
                    error = message.error()
                    if error is not None:
                        if error.code() == self._kafka.KafkaError._PARTITION_EOF:
                            return
                        raise ClusterReadError(
                            f"{self.cluster.bootstrap} {topic}:{partition}: {error.str()}",
                            error.code(),
                        )
                    if end is not None and message.offset() >= end:
                        return
                    deadline = monotonic() + self.timeout
                    yield _record(message)
        finally:
            self._consumer.unassign()

    def _next_messages(self) -> list[Any]:
        """What the client has ready, waiting up to half a second for the
        first (consume() alone would wait its whole timeout for a full batch)."""
        first = self._consumer.poll(min(0.5, self.timeout))
        if first is None:
            return []
        return [first, *self._consumer.consume(_BATCH, timeout=0)]

    def record_at(self, topic: str, partition: int, offset: int) -> Record | None:
        """The record at exactly ``offset``; None if the partition holds
        none there (a marker, a removed record, or past its end)."""
        with closing(self.records(topic, partition, offset, offset + 1)) as records:
            for record in records:
                return record if record.offset == offset else None
        return None

    def _call(self, call: Any) -> Any:
        try:
            return call()
        except self._kafka.KafkaException as error:
            raise ClusterReadError(
                f"{self.cluster.bootstrap}: {_reason(error)}", _code(error)
            ) from error

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> ClusterReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _reason(error: Any) -> str:
    inner = error.args[0] if error.args else None
    if inner is not None and hasattr(inner, "str"):
        return str(inner.str())
    return str(error)


def _code(error: Any) -> int:
    inner = error.args[0] if error.args else None
    if inner is not None and hasattr(inner, "code"):
        return int(inner.code())
    return -1
