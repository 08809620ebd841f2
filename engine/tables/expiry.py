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

After the expiry's commit, the files only expired snapshots named go:
their manifest lists, and the manifests a merge append replaced
(writer.MANIFEST_MERGE) that no kept snapshot names. Data files are never
deleted here: tidelog's commits only append, so every data file is still
named by the current snapshot, and those another engine's rewrite replaced
are that engine's (or Iceberg's orphan-file removal's). The deletion comes
after the swap, so the newest metadata file of the warehouse (the one a
catalog that lost the table registers again, catalogs.newest_metadata) is
the expiry's own or a later one, which names none of them.

Imported by the table thread only: it needs pyiceberg.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import NamedTuple

from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot
from pyiceberg.table.update.snapshot import ExpireSnapshots

from engine.tables.transaction import ViewOnceTransaction
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
    gone = [s for s in table.metadata.snapshots if s.snapshot_id in set(expired)]
    expiry = ExpireSnapshots(transaction=ViewOnceTransaction(table, autocommit=True))
    expiry.by_ids(expired).commit()
    log.info("table %s: expired %d snapshots", table.name(), len(expired))
    try:
        deleted = delete_unreferenced(table, gone)
    except Exception as error:  # the snapshots are gone all the same: orphans, not damage
        log.warning(
            "table %s: files of expired snapshots left for orphan removal: %s: %s",
            table.name(),
            type(error).__name__,
            error,
        )
    else:
        log.info("table %s: deleted %d files of expired snapshots", table.name(), deleted)
    return len(expired)


def unreferenced_files(table: Table, expired: Sequence[Snapshot]) -> list[str]:
    """The manifest lists of ``expired`` and the manifests they name that no
    snapshot of ``table`` (as committed after the expiry) names, in the
    table's own metadata directory."""
    kept: set[str] = set()
    for snapshot in table.metadata.snapshots:  # one that cannot be read stops it all
        kept.add(snapshot.manifest_list)
        kept.update(_LISTS.manifests(table, snapshot))
    candidates: set[str] = set()
    for snapshot in expired:
        candidates.add(snapshot.manifest_list)
        try:
            candidates.update(_LISTS.manifests(table, snapshot))
        except FileNotFoundError:  # deleted already (a cleanup cut short): its manifests too
            continue
    own = table.location_provider().new_metadata_location("")
    return sorted(path for path in candidates - kept if path.startswith(own))


class _ManifestLists:
    """The manifests each manifest list names, kept for the lists read last:
    a list is never rewritten, and each expiry reads every kept snapshot's."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._named: OrderedDict[str, tuple[str, ...]] = OrderedDict()

    def manifests(self, table: Table, snapshot: Snapshot) -> tuple[str, ...]:
        manifest_list = snapshot.manifest_list
        named = self._named.get(manifest_list)
        if named is None:
            files = snapshot.manifests(table.io)
            named = tuple(manifest.manifest_path for manifest in files)
            self._named[manifest_list] = named
            while len(self._named) > self._capacity:
                self._named.popitem(last=False)
        self._named.move_to_end(manifest_list)
        return named


_LISTS = _ManifestLists(capacity=4096)
"""Shared by the table thread's expiries (one thread: no lock)."""


def delete_unreferenced(table: Table, expired: Sequence[Snapshot]) -> int:
    """Deletes unreferenced_files(table, expired); how many were there."""
    deleted = 0
    for path in unreferenced_files(table, expired):
        try:
            table.io.delete(path)
        except FileNotFoundError:
            continue
        deleted += 1
    return deleted
