"""The topics the engine serves and their partition leaders: loading them
from their catalog entries, and finding them by name or by stream.

Reads of the maps take no lock: they are changed only under the engine's
lock, a topic goes in whole (partitions loaded) and a lookup or a list() of
one is one step under the GIL. So produce, fetch and Metadata never wait
behind a long change, such as creating thousands of topics.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from engine.catalog import TopicMeta
from engine.clock import Clock
from engine.config import ConfigSource, TopicConfig
from engine.errors import InvalidTopic, UnknownPartition, UnknownTopic
from engine.internal_topics import INTERNAL_TOPICS
from engine.partition import Partition
from engine.schemas.compiled import CompiledSchemas
from engine.schemas.record_check import SchemaSource
from engine.schemas.types import SchemaLookup
from engine.types import PartitionInfo, TopicDescription
from s3stream import StreamStore


class Topic:
    def __init__(self, meta: TopicMeta, config: TopicConfig, partitions: list[Partition]) -> None:
        self.meta = meta
        self.config = config
        self.partitions = partitions

    @property
    def name(self) -> str:
        return self.meta.name


class TopicRegistry:
    """Every loaded topic by name, and its partitions' leaders by stream."""

    def __init__(
        self,
        store: StreamStore,
        leader_epoch: int,
        topic_defaults: tuple[dict[str, str], dict[str, ConfigSource]],
        clock: Clock,
        verify_transaction: Callable[[str, int, int, int], None],
        schemas: Callable[[], SchemaLookup | None] = lambda: None,
    ) -> None:
        self.store = store
        self.leader_epoch = leader_epoch
        self.topic_defaults, self.topic_default_sources = topic_defaults
        """The broker's topic defaults in force, and where each came from."""
        self.clock = clock
        self.verify_transaction = verify_transaction
        self.schema_source = SchemaSource(schemas, CompiledSchemas())
        """The registry the topics' schema checks ask, and their compiled schemas."""
        self.topics: dict[str, Topic] = {}
        self.by_stream: dict[int, Partition] = {}
        self.with_collision_chars: dict[str, set[str]] = {}
        """The names holding '.' or '_', by their form with '_' for '.'
        (Kafka's ReplicationControlManager.topicsWithCollisionChars)."""
        for internal in INTERNAL_TOPICS:
            self._add_collision_chars(internal)

    def topic_config(self, overrides: Mapping[str, str]) -> TopicConfig:
        """A topic's config: its overrides over the broker's defaults."""
        return TopicConfig(overrides, self.topic_defaults, self.topic_default_sources)

    def set_defaults(self, defaults: dict[str, str], sources: dict[str, ConfigSource]) -> None:
        """The broker's topic defaults changed (under the engine's lock):
        topics without an override of their own take them at once."""
        if (defaults, sources) == (self.topic_defaults, self.topic_default_sources):
            return
        self.topic_defaults, self.topic_default_sources = defaults, sources
        for topic in list(self.topics.values()):
            topic.config = self.topic_config(topic.meta.configs)
            for partition in topic.partitions:
                partition.configure(topic.config)

    def load_topic(self, meta: TopicMeta) -> Topic:
        return self.add_topic(self.open_topic(meta))

    def add_topic(self, topic: Topic) -> Topic:
        """Lists a topic whose partitions are open (:meth:`open_topic`): a
        fork's, whose state they rebuilt before the catalog recorded it."""
        for partition in topic.partitions:
            self.by_stream[partition.stream_id] = partition
        self.topics[topic.name] = topic
        self._add_collision_chars(topic.name)
        return topic

    def open_topic(self, meta: TopicMeta) -> Topic:
        """The topic's partitions over its streams, listed nowhere: a fork
        writes its own state through them before the catalog records it."""
        config = self.topic_config(meta.configs)
        topic = Topic(meta, config, [])
        for streams in meta.streams:
            topic.partitions.append(self._open_partition(topic, streams))
        return topic

    def load_partition(self, topic: Topic, streams: tuple[int, int]) -> Partition:
        partition = self._open_partition(topic, streams)
        self.by_stream[partition.stream_id] = partition
        return partition

    def _open_partition(self, topic: Topic, streams: tuple[int, int]) -> Partition:
        for stream_id in streams:
            self.store.open_stream(stream_id, 0)
        partition = Partition(
            self.store,
            topic.name,
            len(topic.partitions),
            streams,
            topic.config,
            self.leader_epoch,
            clock=self.clock,
            topic_id=topic.meta.topic_id,
        )
        partition.verify_transaction = self.verify_transaction
        partition.schema_source = self.schema_source
        return partition

    def remove(self, topic: Topic) -> None:
        del self.topics[topic.name]
        named = self.with_collision_chars.get(unify_collision_chars(topic.name))
        if named is not None:
            named.discard(topic.name)
            if not named:
                del self.with_collision_chars[unify_collision_chars(topic.name)]
        for partition in topic.partitions:
            partition.deleted = True
            self.by_stream.pop(partition.stream_id, None)

    def check_no_collision(self, name: str) -> None:
        """Refuses a new topic whose name differs from an existing one's
        only by '.' against '_': the metrics names Kafka derives from topic
        names would be one (Kafka's ReplicationControlManager.
        validateNewTopicNames). Raises InvalidTopic."""
        if not _has_collision_chars(name):
            return
        named = self.with_collision_chars.get(unify_collision_chars(name))
        others = sorted(named - {name}) if named else []
        if others:
            raise InvalidTopic(f"Topic '{name}' collides with existing topic: {others[0]}")

    def _add_collision_chars(self, name: str) -> None:
        if _has_collision_chars(name):
            self.with_collision_chars.setdefault(unify_collision_chars(name), set()).add(name)

    def topic(self, name: str) -> Topic:
        topic = self.topics.get(name)
        if topic is None:
            raise UnknownTopic(name)
        return topic

    def partition(self, topic: str, partition: int) -> Partition:
        """The partition's leader; UnknownTopic or UnknownPartition if there is none."""
        found = self.topics.get(topic)  # topic()'s look, without its call: twice a Produce
        if found is None:
            raise UnknownTopic(topic)
        partitions = found.partitions
        if not 0 <= partition < len(partitions):
            raise UnknownPartition(topic, partition, len(partitions))
        return partitions[partition]

    def describe(self, topic: Topic) -> TopicDescription:
        parts = [
            PartitionInfo(p.index, p.log_start_offset, p.high_watermark, self.leader_epoch)
            for p in topic.partitions
        ]
        return TopicDescription(topic.name, topic.meta.topic_id, parts, topic.config.describe())


def _has_collision_chars(name: str) -> bool:
    return "." in name or "_" in name


def unify_collision_chars(name: str) -> str:
    """Kafka's Topic.unifyCollisionChars: '.' read as '_'."""
    return name.replace(".", "_")
