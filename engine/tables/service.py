"""The table thread: commits each table topic's settled records to its
Iceberg table on the topic's cadence, or sooner when many wait.

Started by the engine when some topic has ``tidelog.table.enable=true``
(never otherwise: pyiceberg and pyarrow are imported by its first pass).
Runs off the event loop on a thread of its own; a failing table is logged
and tried again on its next due pass, and never stops the others.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from engine import clock
from engine.masking.documents import Masking
from engine.schemas.types import SchemaLookup
from engine.tables.settings import TablesConfig
from engine.topics import Topic
from s3stream import ObjectStore

if TYPE_CHECKING:
    from engine.tables.writer import TableWriter

log = logging.getLogger("tidelog.tables")

STOP_TIMEOUT_S = 30.0
"""How long close waits for a commit in flight to finish."""


@dataclass
class TableStats:
    """One table topic's counters since the engine opened."""

    table: str = ""
    records: int = 0
    files: int = 0
    commits: int = 0
    conflicts: int = 0
    skipped: int = 0
    lag: int = 0
    last_error: str = ""
    last_commit_s: float | None = None
    """The monotonic time of the last pass that found the table current or moved it."""
    expired: int = 0
    """Snapshots expired (expiry.py)."""
    last_expiry_s: float | None = None
    """The monotonic time of the last expiry tried."""


class TableStatus(NamedTuple):
    topic: str
    table: str
    """namespace.name in the catalog."""
    records: int
    files: int
    commits: int
    conflicts: int
    skipped: int
    lag: int
    """Settled records not in the table yet."""
    positions: dict[int, int]
    """The next offset per partition the table holds (as last read)."""
    last_error: str
    expired_snapshots: int = 0
    """Snapshots of the table expired since open ([tables] keep_snapshots_s)."""


class TableService:
    """Every table topic's writer, on one thread."""

    def __init__(
        self,
        config: TablesConfig,
        data_dir: str,
        store: ObjectStore,
        topics: Callable[[], Sequence[Topic]],
        schemas: Callable[[], SchemaLookup],
        fenced: Callable[[], bool],
        masking: Callable[[str], Masking | None],
    ) -> None:
        """``masking``: a topic's masking by its name (Engine.masking), asked
        at each read so a table follows the topic's rules as they are now."""
        self.config = config
        self._data_dir = data_dir
        self._store = store
        self._topics = topics
        self._schemas = schemas
        self._fenced = fenced
        self._masking = masking
        self._catalog: Any = None
        self._writers: dict[str, TableWriter] = {}
        self._stats: dict[str, TableStats] = {}
        self._work = threading.Lock()
        """Held by a pass: the thread's and a caller's commit never overlap."""
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------

    def table_topics(self) -> list[Topic]:
        return [t for t in self._topics() if t.config.table]

    def notice(self) -> None:
        """Starts the thread once some topic has a table (a no-op after)."""
        if self._thread is not None or self._stopping.is_set() or not self.table_topics():
            return
        self._thread = threading.Thread(target=self._run, name="tidelog-tables", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S)
            if self._thread.is_alive():
                log.warning("table thread still committing after %.0f s", STOP_TIMEOUT_S)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                with self._work:
                    self._pass(force=False)
            except Exception:  # the thread outlives any one failure
                log.exception("table pass failed")
            self._wake.wait(self.config.poll_interval_s)
            self._wake.clear()

    # -- commits -----------------------------------------------------------------

    def commit(self, topic: str | None = None) -> dict[str, int]:
        """Commits every table topic (or ``topic``) now, until nothing
        settled waits; returns the rows added per topic. Errors are raised."""
        with self._work:
            return self._pass(force=True, only=topic, raise_errors=True)

    def _pass(
        self, *, force: bool, only: str | None = None, raise_errors: bool = False
    ) -> dict[str, int]:
        added: dict[str, int] = {}
        if self._fenced():
            return added
        topics = self.table_topics()
        live = {t.name for t in topics}
        for name in list(self._writers):
            if name not in live:  # deleted, or its table turned off: the table stays
                del self._writers[name]
        for topic in topics:
            if only is not None and topic.name != only:
                continue
            if self._stopping.is_set() and not raise_errors:
                break
            try:
                added[topic.name] = self._commit_topic(topic, force)
            except Exception as error:
                stats = self._stats.setdefault(topic.name, TableStats())
                stats.last_error = f"{type(error).__name__}: {error}"
                stats.last_commit_s = clock.monotonic()  # tried again a commit interval later
                if raise_errors:
                    raise
                log.warning("table of topic %s: %s", topic.name, stats.last_error)
        return added

    def _commit_topic(self, topic: Topic, force: bool) -> int:
        writer = self._writer(topic)
        stats = self._stats.setdefault(topic.name, TableStats(".".join(writer.identifier)))
        now = clock.monotonic()
        if writer.positions is None:
            writer.positions = writer.table_positions(writer.load())
        stats.lag = writer.lag()
        interval_s = topic.config.table_commit_interval_ms / 1000
        due = (
            force
            or stats.last_commit_s is None
            or now - stats.last_commit_s >= interval_s
            or stats.lag >= self.config.commit_records
        )
        if not due or (stats.lag == 0 and stats.last_commit_s is not None):
            return 0
        added = 0
        while True:
            result = writer.commit()
            added += result.records
            stats.records += result.records
            stats.files += result.files
            stats.conflicts += result.conflicts
            stats.skipped += result.skipped
            stats.commits += 1 if result.records or result.skipped or result.files else 0
            if not result.more or (self._stopping.is_set() and not force):
                break
        stats.last_commit_s = now
        stats.last_error = ""
        stats.lag = writer.lag()
        self._expire(writer, stats, now)
        return added

    def _expire(self, writer: TableWriter, stats: TableStats, now: float) -> None:
        """Expires the table's old snapshots, at most every expire_interval_s.
        A failure is logged and leaves the commits alone (tried again later)."""
        config = self.config
        if config.keep_snapshots_s <= 0:
            return
        if stats.last_expiry_s is not None and now - stats.last_expiry_s < config.expire_interval_s:
            return
        stats.last_expiry_s = now
        from engine.tables.expiry import ExpiryPolicy, expire_snapshots  # noqa: PLC0415

        policy = ExpiryPolicy(round(config.keep_snapshots_s * 1000), config.keep_snapshots)
        try:
            stats.expired += expire_snapshots(writer.load(), clock.time_ms(), policy)
        except Exception as error:  # a conflict, an unreachable catalog: next time
            log.warning(
                "table of topic %s: expiring snapshots: %s: %s",
                writer.topic,
                type(error).__name__,
                error,
            )

    def _writer(self, topic: Topic) -> TableWriter:
        writer = self._writers.get(topic.name)
        if writer is not None and writer.topic_id == topic.meta.topic_id.hex():
            return writer
        from engine.tables.catalogs import (  # noqa: PLC0415  (pyiceberg: see module doc)
            newest_metadata,
            open_catalog,
            table_directory,
            warehouse_url,
        )
        from engine.tables.writer import TableWriter, table_name  # noqa: PLC0415

        if self._catalog is None:
            self._catalog = open_catalog(self.config, self._data_dir, self._store)
        namespace = self.config.namespace
        directory = table_directory(table_name(topic.name), topic.meta.topic_id.hex())
        location = None  # a REST catalog places its tables itself
        if self.config.catalog == "sql":
            warehouse = self.config.warehouse or warehouse_url(self._store, self._data_dir)
            location = f"{warehouse.rstrip('/')}/{namespace}/{directory}"

        def find_metadata() -> str | None:
            if self.config.warehouse or self.config.catalog != "sql":  # the catalog's business
                return None
            return newest_metadata(self._store, self._data_dir, namespace, directory)

        writer = TableWriter(
            self._catalog,
            namespace,
            topic.name,
            topic.meta.topic_id,
            lambda: topic.partitions,
            self._schemas(),
            self.config.commit_bytes,
            find_metadata,
            # The topic's own value subject when it names one (raw validation's), as configured now.
            lambda: topic.config.value_schema[1] or f"{topic.name}-value",
            location,
            lambda: topic.config.table_partition,
            lambda: self._masking(topic.name),
        )
        self._writers[topic.name] = writer
        return writer

    # -- what it did -----------------------------------------------------------------

    def status(self) -> list[TableStatus]:
        """Each table topic's table, counters and lag (as of the last pass)."""
        out = []
        for topic in self.table_topics():
            stats = self._stats.get(topic.name, TableStats())
            writer = self._writers.get(topic.name)
            out.append(
                TableStatus(
                    topic.name,
                    stats.table,
                    stats.records,
                    stats.files,
                    stats.commits,
                    stats.conflicts,
                    stats.skipped,
                    stats.lag,
                    dict(writer.positions or {}) if writer is not None else {},
                    stats.last_error,
                    stats.expired,
                )
            )
        return out
