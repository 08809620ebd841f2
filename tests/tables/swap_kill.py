"""The scaffolding of the table tests that kill a writer with kill -9: an
engine in a child process killed at the Iceberg catalog's swap, and what
an engine opened again on its files finds in the log and in the table."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from engine.engine import Engine, EngineConfig
from tests.tables.conftest import catalog_of, committed_records

SWAP_KILLS = ["before-swap", "after-swap"]
"""The kill comes with the commit's data files written and the catalog
still naming the old ones, or right after the swap."""

TOPIC = "steps"

_CHILD = """
import json, os, signal, sys
from dataclasses import replace
from pyiceberg.catalog.sql import SqlCatalog
from engine.engine import Engine, EngineConfig
from engine.tables import TablesConfig

data_dir, when, records = sys.argv[1], sys.argv[2], int(sys.argv[3])
first_timestamp, table_configs = json.loads(sys.argv[4]), json.loads(sys.argv[5])
config = replace(EngineConfig.small(), tables=TablesConfig(poll_interval_s=60))
engine = Engine.open(data_dir + "/data", "file://" + data_dir + "/objects", config)
engine.create_topic("steps", 2)
producer = engine.producer()
for i in range(records):
    # With a first timestamp: three days of records, a third of them on each.
    timestamp = None if first_timestamp is None else first_timestamp + (i % 3) * 86400000 + i
    producer.send("steps", ("%s-%d" % (when, i)).encode(), partition=i % 2, timestamp=timestamp)
producer.flush()
assert engine.flush(30)
swap = SqlCatalog.commit_table

def commit_table(self, table, requirements, updates):
    if when == "before-swap":  # the data files are written, the catalog still names the old ones
        os.kill(os.getpid(), signal.SIGKILL)
    response = swap(self, table, requirements, updates)
    os.kill(os.getpid(), signal.SIGKILL)  # after-swap: the commit is in, nothing after it ran
    return response

SqlCatalog.commit_table = commit_table
# Whichever commits first, the table thread or this call, is killed at the swap.
engine.alter_configs("steps", table_configs)
engine.commit_tables()
"""


def kill_at_the_swap(
    root: Path,
    when: str,
    records: int,
    table_configs: dict[str, str],
    first_timestamp: int | None = None,
) -> None:
    """Runs a child engine on ``root`` that writes ``records`` records to the
    two partitions of topic ``steps``, makes it a table topic with
    ``table_configs`` and commits: kill -9 at the catalog's swap (``when``)."""
    command = [
        sys.executable,
        "-c",
        _CHILD,
        str(root),
        when,
        str(records),
        json.dumps(first_timestamp),
        json.dumps(table_configs),
    ]
    killed_child = subprocess.run(command, check=False, timeout=120)
    assert killed_child.returncode == -signal.SIGKILL


def table_of(root: Path, name: str = "steps") -> Any:
    """The Iceberg table of the table topic ``name`` ("." becomes "_")."""
    return catalog_of(root).load_table(("tidelog", name))


def log_after_restart(data_dir: Path, objects: Path, topic: str = TOPIC) -> list[Any]:
    """Opens an engine again on what a killed one left, lets it commit its
    tables, and returns the topic's committed records as (partition, offset,
    value), in order."""
    with Engine.open(data_dir, f"file://{objects}", EngineConfig.small()) as engine:
        engine.commit_tables()
        records = committed_records(engine, topic)
    return sorted((r.partition, r.offset, r.value) for r in records)


def table_records(table: Any) -> list[Any]:
    """The table's rows as (partition, offset, value), in order: as
    log_after_restart gives the log's."""
    rows = table.scan().to_arrow().to_pylist()
    return sorted((row["partition"], row["offset"], row["value"]) for row in rows)
