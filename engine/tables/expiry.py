"""Expiring old snapshots of a table topic's table, so that its commits
do not slow down as snapshots add up (docs/tables.md, "Snapshot expiry").

Every commit adds a snapshot, and each commit rewrites metadata that lists
every snapshot so far. After its commits, the table thread expires the
snapshots older than ``[tables] keep_snapshots_s``, with pyiceberg's own
``ExpireSnapshots``, always keeping:

- the newest snapshot whose summary has the writer's positions
  (``tidelog.offsets``) and every snapshot after it: the next commit starts
  from those positions, and the writer stops with PositionsExpired rather
  than write the log again if they are gone;
- the newest ``keep_snapshots`` snapshots, and the head of every branch and
  tag (pyiceberg refuses to expire those).

Files are left where they are. tidelog's commits only append, so every data
file and manifest an expired snapshot names is still named by the current
one; what expiry leaves unreferenced is each expired snapshot's manifest
list, and the files of another engine's rewrite. Both are left for
Iceberg's orphan-file removal: a query planned on an expired snapshot, and
the metadata file of a writer killed before its swap (which the SQL
catalog's recovery may register again), may still read them.

Imported by the table thread only: it needs pyiceberg.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot

from engine.tables.writer import OFFSETS

log = logging.getLogger("tidelog.tables")


class ExpiryPolicy(NamedTuple):
    keep_ms: int
    """Snapshots at least this old (by their timestamp) may be expired."""
    keep_count: int
    """The newest this many are kept whatever their age (at least 1)."""


def newest_positions(table: Table) -> Snapshot | None:
    """The newest snapshot on the table's current line with the writer's
    positions in its summary (None: there is none, e.g. a new table)."""
    snapshot = table.current_snapshot()
    while snapshot is not None:
        if snapshot.summary is not None and snapshot.summary.get(OFFSETS) is not None:
            return snapshot
        parent = snapshot.parent_snapshot_id
        snapshot = table.snapshot_by_id(parent) if parent is not None else None
    return None


def snapshots_to_expire(table: Table, now_ms: int, policy: ExpiryPolicy) -> list[int]:
    """The ids of the table's snapshots the policy expires now (oldest first)."""
    anchor = newest_positions(table)
    if anchor is None:  # nothing of the writer's to keep safe: leave the table alone
        return []

    def order(snapshot: Snapshot) -> tuple[int, int]:
        # Sequence numbers order the commits of a format 2 table; a format 1
        # table has none, and its snapshots' timestamps order them.
        return (snapshot.sequence_number or 0, snapshot.timestamp_ms)

    snapshots = sorted(table.metadata.snapshots, key=order)
    newest = {s.snapshot_id for s in snapshots[-policy.keep_count :]}
    protected = {ref.snapshot_id for ref in table.metadata.refs.values()}
    return [
        s.snapshot_id
        for s in snapshots
        if order(s) < order(anchor)
        and s.timestamp_ms < now_ms - policy.keep_ms
        and s.snapshot_id not in newest
        and s.snapshot_id not in protected
    ]


def expire_snapshots(table: Table, now_ms: int, policy: ExpiryPolicy) -> int:
    """Expires what the policy expires now; the number of snapshots expired.

    A commit by another writer in between is harmless: the removal applies
    to the catalog's current metadata, the snapshots it names are all older
    than positions that metadata still holds, and one another writer
    expired first fails the removal (CommitFailedException or ValueError,
    tried again at the next expiry)."""
    expired = snapshots_to_expire(table, now_ms, policy)
    if not expired:
        return 0
    table.maintenance.expire_snapshots().by_ids(expired).commit()
    log.info("table %s: expired %d snapshots", table.name(), len(expired))
    return len(expired)
