"""Topic administration: creating, deleting, growing and configuring topics
by Kafka's rules for names, partition counts and configs.

Each change, however many topics it names, is one catalog record (and one
manifest commit for the streams it creates or deletes), so after a crash it
happened whole or not at all.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from typing import Any, NamedTuple

from engine.catalog import Catalog, TopicMeta
from engine.catalog_snapshot import waited_after
from engine.clock import Clock
from engine.config import (
    PROVENANCE,
    TopicConfig,
    check_combination,
    normalize,
    normalize_all,
)
from engine.errors import (
    EngineError,
    InvalidPartitions,
    InvalidReplicationFactor,
    InvalidTopic,
    ResourceNamedTwice,
    TopicExists,
    UnknownTopic,
)
from engine.gc_pause import CollectorPaused
from engine.governance_gate import (
    DEFAULTS_CHANGED,
    OWNER,
    STAMPING_UNRECORDED,
    Actor,
    GovernanceChangeRefused,
    changed,
    check,
    effective,
    set_at_creation,
)
from engine.governance_log import ALTERED, CREATED, DELETED, GovernanceChange
from engine.internal_topics import is_internal_topic
from engine.masking.rules import MASKING_RULES
from engine.store_errors import store_errors, store_writes, translate
from engine.topic_names import is_legal_topic_name
from engine.topics import Topic, TopicRegistry, unify_collision_chars
from engine.types import NewTopic, PartitionInfo, TopicDescription
from s3stream import Fenced as StoreFenced
from s3stream import ObjectStoreError, S3StreamError, StreamStore

log = logging.getLogger("tidelog.engine")

_MANY_TOPICS = 64
"""Changes of this many topics pause the garbage collector (gc_pause.py)."""


class TopicAdmin:
    """Changes the registry's topics under the engine's lock, recording each
    change in the catalog before it takes effect."""

    def __init__(
        self,
        registry: TopicRegistry,
        catalog: Catalog,
        store: StreamStore,
        lock: threading.RLock,
        *,
        default_partitions: Callable[[], int],
        clock: Clock,
        check_open: Callable[[], None],
        on_deleted: Callable[[Topic], None],
    ) -> None:
        self.registry = registry
        self.catalog = catalog
        self.store = store
        self.lock = lock
        self.default_partitions = default_partitions
        """The broker's num.partitions now (a dynamic broker config)."""
        self.clock = clock
        self.check_open = check_open
        self.on_deleted = on_deleted
        """Told each deleted topic: the group coordinator forgets its offsets,
        and whoever waits for its data stops waiting."""

    def create_topics(
        self,
        topics: Sequence[NewTopic],
        *,
        validate_only: bool = False,
        actor: Actor = OWNER,
        deadline: float | None = None,
    ) -> list[TopicDescription | EngineError]:
        """Creates many topics at once: one manifest commit for all their
        streams and one catalog record naming them all, so after a crash
        either every one of them exists or none does. Per topic, in order:
        its description, or the error that refused it (the others are
        created regardless). A name given twice is refused the second time
        (TopicExists). A store failure raises, and then none was created.
        A topic whose configs weaken the governance the broker's defaults
        give is refused unless ``actor`` may govern (engine/governance_gate.py).
        ``deadline`` (engine.clock.monotonic() seconds): the streams' commit
        not made by then raises AdminTimedOut, and none was created."""
        registry = self.registry
        results: list[TopicDescription | EngineError | None] = [None] * len(topics)
        checked: list[tuple[int, str, int, dict[str, str]]] = []
        for i, topic in enumerate(topics):
            try:
                count, overrides = self.check_new_topic(topic)
                weakened = set_at_creation(overrides, self.registry.topic_config({}))
                check(actor, topic.name, weakened, "override the broker's default of")
                checked.append((i, topic.name, count, overrides))
            except EngineError as error:
                results[i] = error
        created: list[tuple[int, Topic]] = []
        with waited_after(), self.lock, CollectorPaused(len(checked) >= _MANY_TOPICS):
            self.check_open()
            fresh: list[tuple[int, str, int, dict[str, str]]] = []
            taken: set[str] = set()
            unified_taken: dict[str, str] = {}
            for i, name, count, overrides in checked:
                if name in registry.topics or name in taken:
                    results[i] = TopicExists(name)
                    continue
                try:
                    registry.check_no_collision(name)
                    _check_no_collision_among(name, unified_taken)
                except InvalidTopic as error:
                    results[i] = error
                    continue
                if validate_only:
                    results[i] = self._describe_new(name, count, overrides)
                else:
                    taken.add(name)
                    fresh.append((i, name, count, overrides))
                unified_taken.setdefault(unify_collision_chars(name), name)
            if fresh:
                ids = iter(
                    self._create_streams(2 * sum(count for _, _, count, _ in fresh), deadline)
                )
                created_ms = self.clock.time_ms()
                metas = [
                    TopicMeta(
                        name,
                        uuid.uuid4().bytes,
                        overrides,
                        [(next(ids), next(ids)) for _ in range(count)],
                        created_ms,
                    )
                    for _, name, count, overrides in fresh
                ]
                keys = [
                    key
                    for meta in metas
                    for key in self.masking_key_records(meta.name, meta.configs, new_topic=True)
                ]
                wire = [meta.to_wire() for meta in metas]
                record: list[Any] = (
                    ["create_topic", wire[0]] if len(wire) == 1 else ["create_topics", wire]
                )
                self.append_catalog_all([*keys, record + self.created_history(metas, actor)])
                topics_now = self.catalog.state.topics
                created = [(i, registry.load_topic(topics_now[name])) for i, name, _, _ in fresh]
        with CollectorPaused(len(created) >= _MANY_TOPICS):
            for i, loaded in created:
                results[i] = registry.describe(loaded)
        if created:
            if len(created) == 1:
                log.info("created topic %s", created[0][1].name)
            else:
                log.info("created %d topics", len(created))
        return [r for r in results if r is not None]

    def check_new_topic(self, topic: NewTopic) -> tuple[int, dict[str, str]]:
        """The topic's partition count and config overrides, by Kafka's rules."""
        count = self.default_partitions() if topic.partitions in (None, -1) else topic.partitions
        assert count is not None
        _check_topic_name(topic.name)
        if is_internal_topic(topic.name):
            raise TopicExists(topic.name)  # Kafka's: it exists, as Metadata says
        if count < 1:
            raise InvalidPartitions(f"a topic needs at least 1 partition, not {count}")
        if topic.replication_factor not in (1, -1):
            raise InvalidReplicationFactor(
                f"replication factor {topic.replication_factor}: this engine is one node, "
                "its durability comes from the WAL and object storage"
            )
        overrides = normalize_all(topic.configs or {})
        check_combination(self.registry.topic_config(overrides))
        return count, overrides

    def _describe_new(self, name: str, count: int, overrides: dict[str, str]) -> TopicDescription:
        config = self.registry.topic_config(overrides)
        parts = [PartitionInfo(i, 0, 0, self.registry.leader_epoch) for i in range(count)]
        return TopicDescription(name, bytes(16), parts, config.describe())

    def delete_topics(
        self, names: Sequence[str], *, actor: Actor = OWNER, deadline: float | None = None
    ) -> list[EngineError | None]:
        """Deletes many topics at once: one catalog record naming them all,
        then one manifest commit deleting all their streams. Per name, in
        order: None, or the error that refused it (UnknownTopic; a name given
        twice is unknown the second time; GovernanceChangeRefused for a topic
        governed beyond what a re-creation would get, unless ``actor`` may
        govern: a delete and re-create would drop it). A store failure raises."""
        results: list[EngineError | None] = []
        deleted: list[Topic] = []
        with waited_after(), self.lock:
            self.check_open()
            recreated = effective(self.registry.topic_config({}))
            for name in names:
                topic = self.registry.topics.get(name)
                if topic is None or topic in deleted:
                    results.append(UnknownTopic(name))
                elif not actor.may_govern and (
                    dropped := changed(effective(topic.config), recreated)
                ):
                    results.append(GovernanceChangeRefused(actor, name, dropped, "delete"))
                else:
                    results.append(None)
                    deleted.append(topic)
            if not deleted:
                return results
            gone = [topic.name for topic in deleted]
            history = [
                self._change(DELETED, topic, actor, effective(topic.config), {}).to_wire()
                for topic in deleted
                if changed(effective(topic.config), effective(TopicConfig({}, {})))
            ]
            deletion: list[Any] = (
                ["delete_topic", gone[0]] if len(gone) == 1 else ["delete_topics", gone]
            )
            self.append_catalog(deletion + ([history] if history else []))
            for topic in deleted:
                self.registry.remove(topic)
        for topic in deleted:
            self.on_deleted(topic)
        streams = [
            stream_id
            for topic in deleted
            for partition in topic.partitions
            for stream_id in (partition.stream_id, partition.state_stream_id)
        ]
        # The topics are gone once the catalog says so; streams left behind
        # by a failure here are deleted at the next open (no topic names them).
        # Unless another engine has opened the store: the catalog record is
        # then replayed nowhere, and the topics live on there.
        try:
            # By the deadline: past it the deletion is still done, its
            # streams left to the next open as after a refused commit.
            self.store.delete_streams(streams, deadline)
        except StoreFenced as error:
            raise translate(error) from error
        except (S3StreamError, ObjectStoreError):
            pass
        if len(gone) == 1:
            log.info("deleted topic %s", gone[0])
        else:
            log.info("deleted %d topics", len(gone))
        return results

    def create_partitions_many(
        self,
        totals: Sequence[tuple[str, int]],
        *,
        validate_only: bool = False,
        deadline: float | None = None,
    ) -> list[EngineError | None]:
        """Grows many topics at once, each to its total: one manifest commit
        for all the new streams and one catalog record (all or nothing after
        a crash). Per topic, in order: None, or the error that refused it
        (UnknownTopic; InvalidPartitions for a total that does not grow the
        topic, or a topic given twice). A store failure raises."""
        results: list[EngineError | None] = []
        growing: list[tuple[Topic, int]] = []
        with waited_after(), self.lock, CollectorPaused(len(totals) >= _MANY_TOPICS):
            self.check_open()
            for name, total in totals:
                topic = self.registry.topics.get(name)
                current = 0 if topic is None else len(topic.partitions)
                if topic is None:
                    results.append(UnknownTopic(name))
                elif any(grown is topic for grown, _ in growing):
                    results.append(InvalidPartitions(f"topic {name} is given twice"))
                elif total <= current:
                    results.append(
                        InvalidPartitions(
                            f"topic {name} has {current} partitions; it can only grow, "
                            f"not to {total}"
                        )
                    )
                else:
                    results.append(None)
                    growing.append((topic, total - current))
            if validate_only or not growing:
                return results
            ids = iter(self._create_streams(2 * sum(count for _, count in growing), deadline))
            added = [
                (topic, [(next(ids), next(ids)) for _ in range(count)]) for topic, count in growing
            ]
            wire = [[topic.name, [list(pair) for pair in pairs]] for topic, pairs in added]
            self.append_catalog(
                ["add_partitions", *wire[0]] if len(wire) == 1 else ["add_partitions_many", wire]
            )
            for topic, pairs in added:
                for pair in pairs:
                    topic.partitions.append(self.registry.load_partition(topic, pair))
        return results

    def alter_configs(
        self,
        name: str,
        configs: Mapping[str, object | None],
        incremental: bool,
        validate_only: bool,
        actor: Actor = OWNER,
    ) -> None:
        """Records the topic's new overrides (None removes one; not
        ``incremental``, any override not given is removed) and applies them.
        A change of a governance config needs an ``actor`` that may govern
        (GovernanceChangeRefused, also when only validating), and goes into
        the governance history in the same catalog record."""
        with waited_after(), self.lock:
            prepared = self._prepare_alteration(name, configs, incremental, actor)
            if not validate_only:
                self.alter_configs_many([prepared], actor)

    def alter_configs_many(
        self,
        alterations: Sequence[TopicAlteration],
        actor: Actor = OWNER,
        broker_records: Sequence[list[Any]] = (),
    ) -> None:
        """Alters several topics' overrides, checked first (raising before
        anything is written), as one catalog record with ``broker_records``
        (the same request's broker configs): Kafka's controller commits one
        request's config records in one atomic batch."""
        _check_named_once(
            a.topic.meta.name if isinstance(a, PreparedAlteration) else a[0] for a in alterations
        )
        with waited_after(), self.lock:
            prepared = [
                alteration
                if isinstance(alteration, PreparedAlteration)
                else self._prepare_alteration(*alteration, actor)
                for alteration in alterations
            ]
            keys = [
                key
                for alteration in prepared
                for key in self.masking_key_records(
                    alteration.topic.meta.name, alteration.changes, new_topic=False
                )
            ]
            # Appends to a topic whose governance changes wait while the
            # change is recorded, so the offsets it records are exactly where
            # the new configs begin: a stamp range
            # (governance_log.stamped_ranges) never takes in an unstamped record.
            with ExitStack() as appends_held:
                records: list[list[Any]] = []
                changes: list[GovernanceChange] = []
                for alteration in prepared:
                    topic, name = alteration.topic, alteration.topic.meta.name
                    if alteration.governed is None:
                        records.append(["alter_configs", name, alteration.changes])
                        continue
                    for partition in topic.partitions:
                        appends_held.enter_context(partition.lock)
                    before, after = alteration.governed
                    change = self._change(ALTERED, topic, actor, before, after)
                    changes.append(change)
                    records.append(["alter_configs", name, alteration.changes, [change.to_wire()]])
                records += broker_records
                if records:
                    self.append_catalog_all([*keys, many_configs_record(records)])
                for alteration in prepared:
                    self._configure(alteration.topic)
            for change in changes:
                log.info("governance of topic %s changed: %s", change.topic, change.describe())

    def _prepare_alteration(
        self, name: str, configs: Mapping[str, object | None], incremental: bool, actor: Actor
    ) -> PreparedAlteration:
        """A topic's alteration, checked: what to record, and the governance
        configs' effective values before and after when it changes them."""
        changes: dict[str, str | None] = {
            key: None if value is None else normalize(key, value) for key, value in configs.items()
        }
        self.check_open()
        topic = self.registry.topic(name)
        if not incremental:
            for key in topic.meta.configs:
                changes.setdefault(key, None)
        after = {**topic.meta.configs, **changes}
        config = self.registry.topic_config({k: v for k, v in after.items() if v is not None})
        check_combination(config)
        governed = changed(effective(topic.config), effective(config))
        check(actor, name, governed, "change")
        return PreparedAlteration(
            topic,
            changes,
            (effective(topic.config), effective(config)) if governed else None,
        )

    def record_changes_at_open(self) -> None:
        """Records, as the engine opens, each topic whose governance the
        broker's ``[topic_defaults]`` changed since its last history entry:
        a topic inheriting stamping from a default removed between two runs
        stops stamping, and its stamped range must end where it did. And
        each stamping topic whose stamping no entry records (created before
        the history existed): its range begins here, since what came before
        cannot be proven the broker's. No append runs yet, so the
        partitions' next offsets are where the configs in force begin."""
        with waited_after(), self.lock:
            last = {change.topic_id: change for change in self.catalog.state.governance}
            for topic in list(self.registry.topics.values()):
                previous = last.get(topic.meta.topic_id)
                now = effective(topic.config)
                if now.get(PROVENANCE) == "stamp" and (
                    previous is None or PROVENANCE not in previous.after
                ):
                    actor, why = STAMPING_UNRECORDED, "stamps and no history entry said so"
                # Only the configs the entry names: one may name fewer.
                elif previous is not None and any(
                    now.get(k) != v for k, v in previous.after.items()
                ):
                    actor, why = DEFAULTS_CHANGED, "changed by the broker's defaults"
                else:
                    continue
                before = {} if previous is None else previous.after
                change = self._change(ALTERED, topic, actor, before, now)
                self.append_catalog(["alter_configs", topic.name, {}, [change.to_wire()]])
                log.warning("topic %s %s: %s", topic.name, why, change.describe())

    def _configure(self, topic: Topic) -> None:
        topic.config = self.registry.topic_config(topic.meta.configs)
        for partition in topic.partitions:
            partition.configure(topic.config)

    def _change(
        self,
        action: str,
        topic: Topic,
        actor: Actor,
        before: dict[str, str],
        after: dict[str, str],
    ) -> GovernanceChange:
        """A history entry for ``topic`` now: its partitions' next offsets."""
        return GovernanceChange(
            self.clock.time_ms(),
            action,
            topic.name,
            topic.meta.topic_id,
            actor.principal,
            actor.listener,
            before,
            after,
            [p.store.next_offset(p.stream_id) for p in topic.partitions],
        )

    def created_history(
        self,
        metas: Sequence[TopicMeta],
        actor: Actor,
        starts: Sequence[list[int]] | None = None,
    ) -> list[Any]:
        """The catalog record's history entries for new topics that hold any
        governance config ([] when none does: the record keeps its old form).
        ``starts``: per topic, each partition's first offset under its
        configs (a fork's: its fork points); else 0."""
        ungoverned = effective(TopicConfig({}, {}))
        history = []
        for i, meta in enumerate(metas):
            governance = effective(self.registry.topic_config(meta.configs))
            if changed(governance, ungoverned):
                history.append(
                    GovernanceChange(
                        self.clock.time_ms(),
                        CREATED,
                        meta.name,
                        meta.topic_id,
                        actor.principal,
                        actor.listener,
                        {},
                        governance,
                        [0] * len(meta.streams) if starts is None else starts[i],
                    ).to_wire()
                )
        return [history] if history else []

    def masking_key_records(
        self, name: str, configs: Mapping[str, str | None], *, new_topic: bool
    ) -> list[list[Any]]:
        """The record of the topic's key for hashing masked values, when its
        configs first ask for masking: written in one catalog write with, and
        before, the record that asks (:meth:`append_catalog_all`), so a hash
        rule never meets a topic without one, and a refused record leaves no
        key behind. The key outlives rule changes, so hashes stay stable. A
        new topic always gets a new key: one already under its name belongs
        to no topic (a creation whose record a crash lost after its key), and
        must not hash the new topic's values."""
        if not configs.get(MASKING_RULES):
            return []
        if not new_topic and name in self.catalog.state.masking_keys:
            return []
        return [["masking_key", name, os.urandom(32)]]

    def _create_streams(self, count: int, deadline: float | None = None) -> list[int]:
        with store_writes():
            return self.store.create_streams(count, deadline)

    def append_catalog(self, record: list[Any]) -> None:
        with store_errors():
            self.catalog.append(record)

    def append_catalog_all(self, records: list[list[Any]]) -> None:
        """Records written together: refused whole (too large for a record,
        or no room) before any is, so none outlives another's refusal."""
        with store_errors():
            self.catalog.append_all(records)


class PreparedAlteration(NamedTuple):
    """A topic's config alteration, checked and ready to record."""

    topic: Topic
    changes: dict[str, str | None]
    governed: tuple[dict[str, str], dict[str, str]] | None
    """The governance configs' effective values before and after, when
    the alteration changes them."""


TopicAlteration = tuple[str, Mapping[str, object | None], bool] | PreparedAlteration
"""A topic, its configs to set (None: to remove), and whether incrementally;
or one already prepared."""


def _check_named_once(names: Iterable[str]) -> None:
    """Raises ResourceNamedTwice for the first name seen twice."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ResourceNamedTwice(name)
        seen.add(name)


def many_configs_record(records: Sequence[list[Any]]) -> list[Any]:
    """One request's ``alter_configs`` and ``broker_configs`` records as one
    catalog record (docs/engine-format.md): the record itself for one,
    ``configs_many`` for more."""
    return list(records[0]) if len(records) == 1 else ["configs_many", list(records)]


def _check_no_collision_among(name: str, unified_taken: Mapping[str, str]) -> None:
    """Refuses a name colliding with one created by the same request: Kafka
    checks only against topics that exist before the request, so it would
    create both of 'a.b' and 'a_b' asked for together."""
    other = unified_taken.get(unify_collision_chars(name))
    if other is not None and other != name:
        raise InvalidTopic(f"Topic '{name}' collides with topic {other}, created with it")


def _check_topic_name(name: str) -> None:
    if not is_legal_topic_name(name):
        raise InvalidTopic(
            f"invalid topic name {name!r}: 1-249 characters of ASCII letters, digits, "
            "'.', '_' and '-', and not '.' or '..'"
        )
