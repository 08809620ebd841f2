"""One topic's table: where it stands (the positions in its newest
snapshot's summary) and the commit that moves it forward, exactly once.

A commit reads each partition's settled records from the table's own
positions (reader.py), appends them as Parquet data files with the new
positions in the snapshot summary, and lets the catalog's compare-and-swap
decide: another writer's commit in between fails ours, and the next attempt
starts again from the table's state. pyiceberg's own retry, which would
re-apply the same rows on top of the other commit, is switched off on
tidelog's tables (``commit.retry.num-retries = 0``).

Appends merge manifests (Iceberg's merge append, ``commit.manifest-merge.enabled``):
a fast append adds one manifest per commit to the manifest list, which
every later commit copies and every scan plans from, so a long-lived
table's list would grow without bound. docs/tables.md, "Manifests".
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from typing import NamedTuple

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NoSuchTableError,
    TableAlreadyExistsError,
)
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table

from engine.errors import EngineError
from engine.masking.documents import Masking
from engine.partition import Partition
from engine.protocol.kafka_code import KafkaCode
from engine.schemas.types import RegisteredSchema, SchemaLookup
from engine.tables.columns import PartitionRead, arrow_rows, table_schema
from engine.tables.partitions import (
    append_by_pyiceberg,
    append_data_files,
    partition_spec,
    write_data_files,
)
from engine.tables.reader import read_settled, settled_end
from engine.tables.typed_values import TypedField, ValueDecoder, value_decoder

log = logging.getLogger("tidelog.tables")

OFFSETS = "tidelog.offsets"
"""Snapshot summary: the JSON object of the next offset per partition."""
TOPIC_ID = "tidelog.topic-id"
"""Snapshot summary and table property: the topic's id (hex) the rows and
offsets are of."""
TOPIC = "tidelog.topic"
"""Table property: the topic the table holds."""
NO_PYICEBERG_RETRY = {"commit.retry.num-retries": "0"}
MERGE_MANIFESTS_AT = 16
"""Manifests of recent commits the list holds before an append merges them
into one (``commit.manifest.min-count-to-merge``): a scan plans from at most
this many small manifests, and one commit in 15 pays for the merge."""
MANIFEST_MERGE = {
    "commit.manifest-merge.enabled": "true",
    "commit.manifest.min-count-to-merge": str(MERGE_MANIFESTS_AT),
}
"""Set on a table that says nothing of merging (a table's own setting, a
maintenance job's or its owner's, is left as it is)."""
CHUNKS_PER_COMMIT = 8
"""Reads of ``commit_bytes`` one commit may write before its append: a
table behind by much commits once per 8 of them (128 MiB of stored
batches at the default), so the fixed cost of a commit (manifests, table
metadata, the catalog's swap) and the snapshots it adds are paid an eighth
as often, while memory still holds one read."""
COMMIT_ATTEMPTS = 5
"""Commits tried against other writers' before a pass gives up (the next
pass starts again)."""

_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


class TableNameTaken(EngineError):
    """The table a topic's name maps to holds another topic."""

    code = KafkaCode.INVALID_CONFIG


class CommitConflicts(EngineError):
    """Other writers committed first on every attempt of one pass (the next
    pass starts again: nothing is lost, the table is only later)."""


class PositionsExpired(EngineError):
    """The snapshot whose summary holds the table's positions was expired
    while a later one (another writer's) was kept: which records the table
    holds cannot be told, so nothing is written (starting over would write
    them twice)."""


class _Chunk(NamedTuple):
    """One read of a commit: what it read and where the next one starts."""

    reads: list[PartitionRead]
    positions: dict[int, int]
    skipped: int
    more: bool
    """Settled records are still waiting after it."""


class CommitResult(NamedTuple):
    records: int
    """Rows added."""
    files: int
    """Data files added."""
    skipped: int
    """Records the log lost before the table got them (retention)."""
    more: bool
    """Settled records are still waiting (the commit's read budget ran out)."""
    conflicts: int
    """Attempts another writer's commit failed."""


def table_name(topic: str) -> str:
    """The table a topic's records go to: its name with every character
    outside ``[A-Za-z0-9_]`` as ``_`` (query engines read ``.`` and ``-``)."""
    return _UNSAFE.sub("_", topic)


class TableWriter:
    """Writes one topic's settled records into its table."""

    def __init__(
        self,
        catalog: Catalog,
        namespace: str,
        topic: str,
        topic_id: bytes,
        partitions: Callable[[], Sequence[Partition]],
        schemas: SchemaLookup,
        commit_bytes: int,
        find_metadata: Callable[[], str | None] = lambda: None,
        value_subject: Callable[[], str] | None = None,
        location: str | None = None,
        partition: Callable[[], str] = lambda: "day",
        masking: Callable[[], Masking | None] = lambda: None,
    ) -> None:
        self.catalog = catalog
        self.identifier = (namespace, table_name(topic))
        self.topic = topic
        self.topic_id = topic_id.hex()
        self._partitions = partitions
        self._schemas = schemas
        self.commit_bytes = commit_bytes
        self._find_metadata = find_metadata
        self._value_subject = value_subject or (lambda: f"{topic}-value")
        """The subject whose latest schema gives the typed columns."""
        self.location = location
        """Where a new table's files go (None: where the catalog puts them)."""
        """The newest metadata file of this table in the warehouse, for a
        catalog that has no entry for it (None: start a new table)."""
        self._partition = partition
        """How a new table is partitioned (settings.TABLE_PARTITIONS), as
        configured when it is created; a table keeps its spec."""
        self._masking = masking
        """The topic's masking as configured now (None: not masked): rows are
        written as a reader without unmask reads the records."""
        self.positions: dict[int, int] | None = None
        """The positions of the table's newest snapshot, as last read or committed."""
        self._decoder: tuple[RegisteredSchema | None, ValueDecoder | None] = (None, None)

    # -- where the table stands --------------------------------------------------

    def load(self) -> Table:
        """The table (created, with its namespace, if absent)."""
        try:
            table = self.catalog.load_table(self.identifier)
        except NoSuchTableError:
            table = self._create()
        name = ".".join(self.identifier)
        owner = table.properties.get(TOPIC)
        if owner != self.topic:
            raise TableNameTaken(f"table {name} holds topic {owner!r}, not {self.topic!r}")
        if table.properties.get(TOPIC_ID, self.topic_id) != self.topic_id:
            # Its rows are of a deleted topic of this name: the same partitions
            # and offsets again would be two records under one (partition, offset).
            raise TableNameTaken(
                f"table {name} holds an earlier topic {self.topic!r} "
                f"(id {table.properties[TOPIC_ID]}); drop or rename it to keep a table of "
                f"this one (id {self.topic_id})"
            )
        missing: dict[str, str] = {}
        if table.properties.get("commit.retry.num-retries") != "0":
            log.warning("table %s: turning pyiceberg's commit retry off", table.name())
            missing.update(NO_PYICEBERG_RETRY)
        if "commit.manifest-merge.enabled" not in table.properties:
            log.info("table %s: turning manifest merging on", table.name())
            missing.update(MANIFEST_MERGE)
        if missing:
            with table.transaction() as txn:
                txn.set_properties(missing)
            table = self.catalog.load_table(self.identifier)
        return table

    def _create(self) -> Table:
        with contextlib.suppress(NamespaceAlreadyExistsError):
            self.catalog.create_namespace(self.identifier[0])
        found = self._find_metadata()
        if found is not None:
            log.warning(
                "table %s is not in the catalog; registering its files again from %s",
                ".".join(self.identifier),
                found,
            )
            try:
                return self.catalog.register_table(self.identifier, found)
            except TableAlreadyExistsError:
                return self.catalog.load_table(self.identifier)
        try:
            return self.catalog.create_table(
                self.identifier,
                schema=table_schema(self.decoder()),
                location=self.location,
                partition_spec=partition_spec(self._partition()),
                properties={
                    TOPIC: self.topic,
                    TOPIC_ID: self.topic_id,
                    "format-version": "2",
                    **NO_PYICEBERG_RETRY,
                    **MANIFEST_MERGE,
                },
            )
        except TableAlreadyExistsError:  # another writer created it first
            return self.catalog.load_table(self.identifier)

    def table_positions(self, table: Table) -> dict[int, int]:
        """The next offset per partition the table holds: from the newest
        snapshot with tidelog's summary (others' snapshots, e.g. a
        compaction, are passed over); empty for a new table. Raises
        PositionsExpired if the walk back reaches an expired snapshot first."""
        snapshot = table.current_snapshot()
        while snapshot is not None:
            summary = snapshot.summary
            text = summary.get(OFFSETS) if summary is not None else None
            if text is not None:
                return {int(p): int(o) for p, o in json.loads(text).items()}
            parent = snapshot.parent_snapshot_id
            found = table.snapshot_by_id(parent) if parent is not None else None
            # The first snapshot of a table has sequence number 1 (format 2): a
            # walk that ends at a later one ends where snapshots were expired.
            if found is None and (snapshot.sequence_number or 0) > 1:
                raise PositionsExpired(
                    f"table {'.'.join(self.identifier)}: the snapshots before "
                    f"{snapshot.snapshot_id} were expired and none kept has {OFFSETS}; "
                    "the table's positions are lost, so nothing is written (drop or "
                    "rename the table to write the topic again from its log start)"
                )
            snapshot = found
        return {}

    def decoder(self) -> ValueDecoder | None:
        """The decoder of the topic's values by its value subject's latest
        schema (rebuilt when a new version is registered)."""
        latest = self._schemas.latest(self._value_subject())
        if latest != self._decoder[0]:
            self._decoder = (latest, value_decoder(latest, self._schemas))
        return self._decoder[1]

    def lag(self) -> int:
        """Settled records (offsets) not in the table yet, by the positions last known."""
        positions = self.positions or {}
        return sum(
            max(0, settled_end(p) - max(positions.get(p.index, 0), p.log_start_offset))
            for p in self._partitions()
        )

    # -- moving it forward ---------------------------------------------------------

    def commit(self) -> CommitResult:
        """Writes what is settled from the table's positions (up to the read
        budget) in one commit; retried from the table's new state when
        another writer commits first."""
        conflicts = 0
        for _ in range(COMMIT_ATTEMPTS):
            # Loaded afresh each time: a schema or spec another engine changed
            # is followed at once (the catalog refuses only a stale snapshot).
            table = self.load()
            positions = self.table_positions(table)
            self.positions = positions
            try:
                result = self._commit_once(table, positions)
            except CommitFailedException as conflict:
                conflicts += 1
                log.info("table %s: %s; starting again from its state", table.name(), conflict)
                continue
            return result._replace(conflicts=conflicts)
        raise CommitConflicts(
            f"table {'.'.join(self.identifier)}: other writers committed first "
            f"{COMMIT_ATTEMPTS} times in a row"
        )

    def _commit_once(self, table: Table, positions: dict[int, int]) -> CommitResult:
        """One commit: up to CHUNKS_PER_COMMIT reads of ``commit_bytes``, each
        written as Parquet data files as soon as it is read (memory holds one
        read), all added in one append with the positions after the last."""
        first = self._read(table, positions)
        if first.positions == positions:  # nothing to read now: no use asking again at once
            return CommitResult(0, 0, 0, False, 0)
        read_at = _snapshot_id(table)
        table, typed = self._evolve(table)
        if _snapshot_id(table) != read_at:
            # Another writer committed while the schema was updated: the append
            # would be checked against its snapshot, not the one the positions
            # came from.
            raise CommitFailedException("the table moved on while its schema was updated")
        schema, decoder = table.schema().as_arrow(), self.decoder()
        write_uuid = uuid.uuid4()
        data_files: list[DataFile] = []
        chunk, records, skipped = first, 0, 0
        for number in range(1, CHUNKS_PER_COMMIT + 1):
            skipped += chunk.skipped
            rows = arrow_rows(chunk.reads, schema, decoder, typed)
            records += rows.num_rows
            written = write_data_files(table, rows, write_uuid, len(data_files))
            if written is None:  # a transform only pyiceberg's append computes
                return self._append_by_pyiceberg(table, rows, chunk, skipped)
            data_files += written
            if not chunk.more or number == CHUNKS_PER_COMMIT:
                break
            chunk = self._read(table, chunk.positions)
        append_data_files(table, data_files, self._summary(chunk.positions))
        self.positions = chunk.positions
        return CommitResult(records, len(data_files), skipped, chunk.more, 0)

    def _append_by_pyiceberg(
        self, table: Table, rows: pa.Table, chunk: _Chunk, skipped: int
    ) -> CommitResult:
        """A chunk's rows through pyiceberg's own append, alone: the spec is
        checked before a chunk with rows writes anything, so no earlier chunk
        of this commit wrote a file."""
        append_by_pyiceberg(table, rows, self._summary(chunk.positions))
        self.positions = chunk.positions
        added = table.current_snapshot()
        files = 0
        if added is not None and added.summary is not None:
            files = int(added.summary.get("added-data-files") or 0)
        return CommitResult(rows.num_rows, files, skipped, chunk.more, 0)

    def _read(self, table: Table, positions: dict[int, int]) -> _Chunk:
        """What is settled from ``positions``, up to ``commit_bytes`` across
        the topic's partitions."""
        reads: list[PartitionRead] = []
        new_positions = dict(positions)
        budget, skipped, more = self.commit_bytes, 0, False
        masking = self._masking()
        for partition in self._partitions():
            start = positions.get(partition.index, 0)
            if budget <= 0:
                more = more or settled_end(partition) > start
                continue
            read = read_settled(partition, start, budget, masking)
            budget -= read.bytes_read
            skipped += read.skipped
            reads.append(PartitionRead(partition.index, read))
            new_positions[partition.index] = read.next_offset
            more = more or settled_end(partition) > read.next_offset
        if skipped:
            log.warning(
                "table %s: %d records of topic %s were removed from the log before "
                "the table got them",
                table.name(),
                skipped,
                self.topic,
            )
        return _Chunk(reads, new_positions, skipped, more)

    def _summary(self, positions: dict[int, int]) -> dict[str, str]:
        return {
            OFFSETS: json.dumps({str(p): o for p, o in sorted(positions.items())}),
            TOPIC_ID: self.topic_id,
        }

    def _evolve(self, table: Table) -> tuple[Table, list[TypedField]]:
        """The table with the decoder's columns added if some are new, and
        the typed fields whose columns the table has with their types."""
        decoder = self.decoder()
        if decoder is None:
            return table, []
        wanted = table_schema(decoder)
        have = {field.name: field.field_type for field in table.schema().fields}
        if any(field.name not in have for field in wanted.fields):
            try:
                with table.update_schema() as update:
                    update.union_by_name(wanted)
                table = self.catalog.load_table(self.identifier)
                have = {field.name: field.field_type for field in table.schema().fields}
            except CommitFailedException:
                raise
            except Exception as error:  # a type change Iceberg cannot widen
                log.warning("table %s: its schema cannot follow: %s", table.name(), error)
        columns = {field.name: field.field_type for field in wanted.fields}
        typed = [f for f in decoder.fields if have.get(f.column) == columns[f.column]]
        return table, typed


def _snapshot_id(table: Table) -> int | None:
    snapshot = table.current_snapshot()
    return snapshot.snapshot_id if snapshot is not None else None
