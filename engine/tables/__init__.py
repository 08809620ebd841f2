"""Topics as Apache Iceberg tables (docs/tables.md, docs/design/0009).

A topic with ``tidelog.table.enable=true`` has its committed, remotely
durable records written as Parquet data files of an Iceberg table in the
engine's own object store, by a background thread (service.py). This
package's root imports nothing heavy: pyiceberg and pyarrow (the ``tables``
extra) are imported by the writer, once some topic has a table.
"""

from __future__ import annotations

from engine.tables.settings import (
    TABLE_COMMIT_INTERVAL,
    TABLE_ENABLE,
    TABLE_PARTITION,
    TablesConfig,
)

__all__ = ["TABLE_COMMIT_INTERVAL", "TABLE_ENABLE", "TABLE_PARTITION", "TablesConfig"]
