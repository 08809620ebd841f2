"""The settings of table topics: the topic configs' names and the
engine-wide ``[tables]`` section (catalog, budgets, snapshot expiry)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from engine.config_ranges import TABLES_RANGES, TABLES_TEXTS
from s3stream.errors import ConfigOutOfRange
from s3stream.ranges import check_ranges, check_texts

TABLE_ENABLE = "tidelog.table.enable"
"""Topic config: keep an Iceberg table of the topic's records."""

TABLE_COMMIT_INTERVAL = "tidelog.table.commit.interval.ms"
"""Topic config: the most time between two table commits while records wait."""

TABLE_PARTITION = "tidelog.table.partition"
"""Topic config: how a new table is partitioned: by the ``day`` or ``hour``
of the record's timestamp, or ``none`` (engine/tables/partitions.py)."""

TABLE_PARTITIONS = ("day", "hour", "none")

WAREHOUSE_PREFIX = "tables"
"""The warehouse's place in the engine's object store (no s3stream prefix
starts with it, so the store never lists or collects its files), and the
SQLite catalog's directory in the data directory."""


@dataclass(frozen=True)
class TablesConfig:
    """Where table topics' tables are kept and how much one commit may do."""

    catalog: str = "sql"
    """``sql``: a SQLite catalog in the data directory (``uri`` overrides it
    with any SQLAlchemy URL); ``rest``: an Iceberg REST catalog at ``uri``."""
    uri: str = ""
    """The catalog's URL (rest: required; sql: default
    ``sqlite:///<data_dir>/tables/catalog.db``)."""
    warehouse: str = ""
    """sql: where new tables' files go (default: ``tables/`` in the engine's
    object store, ``file://`` or ``s3://`` with the store's endpoint and
    credentials); rest: the server's warehouse to use (default: none named)."""
    namespace: str = "tidelog"
    """The catalog namespace tables are created in."""
    properties: Mapping[str, str] = field(default_factory=dict)
    """More catalog properties, passed to pyiceberg as given (a REST catalog's
    ``credential`` or ``token``, ``s3.*`` FileIO settings, ...)."""
    commit_records: int = 100_000
    """A topic commits early once this many records wait (the size trigger)."""
    commit_bytes: int = 16 * 1024 * 1024
    """The most stored batch bytes one read takes (bounds the writer's memory);
    a commit is up to writer.CHUNKS_PER_COMMIT reads."""
    poll_interval_s: float = 1.0
    """How often the table thread looks for due commits."""
    keep_snapshots_s: float = 3600.0
    """Snapshots of a table older than this are expired after its commits
    (expiry.py); 0: none are (an outside job's business)."""
    keep_snapshots: int = 1
    """The newest this many snapshots are kept whatever their age."""
    expire_interval_s: float = 600.0
    """The least time between two expiries of one table (each is a commit)."""

    def __post_init__(self) -> None:
        check_texts(self, TABLES_TEXTS)
        if self.catalog == "rest" and not self.uri:
            raise ValueError("a rest tables catalog needs its uri")
        if "." in self.namespace:
            # pyiceberg reads a dotted name as a nested namespace.
            raise ConfigOutOfRange("namespace", self.namespace, "one name, without '.'")
        check_ranges(self, TABLES_RANGES)


def tables_settings(table: Mapping[str, object]) -> TablesConfig:
    """A serve config file's ``[tables]`` section as a TablesConfig; its
    ``properties`` is a table of strings."""
    known = set(TablesConfig.__dataclass_fields__)
    unknown = set(table) - known
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    settings = dict(table)
    properties = settings.pop("properties", {})
    if not isinstance(properties, Mapping):
        raise ValueError("properties must be a table of strings")
    for name in ("commit_records", "commit_bytes", "keep_snapshots"):
        if name in settings and type(settings[name]) is not int:
            raise ValueError(f"{name} must be an integer")
    for name in ("poll_interval_s", "keep_snapshots_s", "expire_interval_s"):
        if name in settings and type(settings[name]) not in (int, float):
            raise ValueError(f"{name} must be a number")
    return TablesConfig(
        properties={str(k): str(v) for k, v in properties.items()},
        **settings,  # type: ignore[arg-type]
    )
